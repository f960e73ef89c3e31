//! The kernels on the real Gemma 3 270M Q4_K_M weights: one tensor of every type the file
//! holds, plus the 178 MB token_embd that a 128 MiB binding must shard, against the CPU
//! dequantize-then-multiply. Skipped (with a note) when the model file is absent.

mod common;

use common::{assert_close, gpu, output, random_vec, read, storage, storage_u32, Config};
use hearth::gguf::{GgufFile, TensorInfo};
use hearth::gpu::GpuTensor;
use hearth::kernels::{self, GetRows, MatMul, MatVec, Rows, Step, StepBuffer, Tokens, View};
use hearth::quant::dequantize_to_vec;

const BOUND: f64 = 1e-7;

fn check(f: &GgufFile, t: &TensorInfo, tokens: usize) {
    let g = gpu(Config::Full);
    let (cols, rows) = (t.row_len() as usize, t.n_rows() as usize);
    let raw = f.tensor_data(t);
    let w = dequantize_to_vec(t.ty, raw).unwrap();
    let wt = GpuTensor::upload(&g, &t.name, t.ty, cols as u64, rows as u64, raw).unwrap();
    let case = format!(
        "{} {} [{cols}, {rows}] ({} shards)",
        t.name,
        t.ty,
        wt.shards.len()
    );

    let x = random_vec(cols * tokens, rows as u64);
    let xb = storage(&g, &x);
    let yb = output(&g, rows * tokens);
    let mv = MatVec::new(&g, &wt, View::of(&xb), View::of(&yb)).unwrap();
    kernels::run(&g, &mv.dispatches.iter().collect::<Vec<_>>());
    assert_close(
        &format!("matvec {case}"),
        &read(&g, &yb, rows),
        &kernels::matvec::cpu(&w, cols, &x[..cols]),
        BOUND,
    );

    let step = StepBuffer::new(&g, Step::new(0, tokens as u32));
    let tok = Tokens {
        max: tokens as u32,
        step: &step,
    };
    let (xr, yr) = (
        Rows::packed(&xb, cols as u32),
        Rows::packed(&yb, rows as u32),
    );
    let mm = MatMul::new(&g, &wt, xr, yr, tok).unwrap();
    kernels::run(&g, &mm.dispatches.iter().collect::<Vec<_>>());
    assert_close(
        &format!("matmul {case}"),
        &read(&g, &yb, rows * tokens),
        &kernels::matmul::cpu(&w, cols, &x),
        BOUND,
    );
    eprintln!("ok: {case}");
}

#[test]
fn kernels_match_cpu_on_every_tensor_type_of_the_real_model() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let mut seen = Vec::new();
    for t in &f.tensors {
        if !seen.contains(&t.ty) && t.name != "token_embd.weight" {
            seen.push(t.ty);
            check(&f, t, 5);
        }
    }
    let mut names: Vec<&str> = seen.iter().map(|t| t.name()).collect();
    names.sort();
    assert_eq!(names, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
}

#[test]
fn sharded_token_embd_matches_cpu() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let t = f.tensor("token_embd.weight").unwrap();
    let g = gpu(Config::Full);
    assert!(
        g.max_binding < 178 << 20,
        "this check needs an adapter whose largest binding is below 178 MB"
    );
    check(&f, t, 2);

    // Embedding lookups from both shards.
    let (cols, rows) = (t.row_len() as usize, t.n_rows() as usize);
    let raw = f.tensor_data(t);
    let wt = GpuTensor::upload(&g, &t.name, t.ty, cols as u64, rows as u64, raw).unwrap();
    assert_eq!(wt.shards.len(), 2);
    let ids = [
        2u32,
        262143,
        131072,
        200000,
        818,
        wt.shards[1].row_start as u32,
        wt.shards[1].row_start as u32 - 1,
    ];
    let ib = storage_u32(&g, &ids);
    let ob = output(&g, ids.len() * cols);
    let step = StepBuffer::new(&g, Step::new(0, ids.len() as u32));
    let tok = Tokens {
        max: ids.len() as u32,
        step: &step,
    };
    let op = GetRows::new(&g, &wt, &ib, Rows::packed(&ob, cols as u32), tok).unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| {
            let rb = t.row_bytes() as usize;
            dequantize_to_vec(t.ty, &raw[i as usize * rb..(i as usize + 1) * rb]).unwrap()
        })
        .collect();
    assert_close(
        "get_rows token_embd",
        &read(&g, &ob, ids.len() * cols),
        &want,
        0.0,
    );
}

#[test]
fn gemma3_config_from_metadata() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let c = hearth::model::ModelConfig::from_gguf(&f).unwrap();
    assert_eq!(
        (
            c.n_layers,
            c.hidden,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.ffn
        ),
        (18, 640, 4, 1, 256, 2048)
    );
    assert_eq!(
        (c.vocab, c.context, c.sliding_window),
        (262144, 32768, Some(512))
    );
    // Gemma 3's block (q/k norms, sandwich norms, GeGLU) and NeoX RoPE pairs.
    assert_eq!(c.arch, hearth::model::Arch::Gemma3);
    assert!(c.rope_neox);
    assert!((c.embed_scale - 640f32.sqrt()).abs() < 1e-4);
    assert!((c.rms_eps - 1e-6).abs() < 1e-12);
    let globals: Vec<usize> = (0..18).filter(|&il| !c.is_sliding(il)).collect();
    assert_eq!(globals, [5, 11, 17]);
    assert_eq!(c.rope(0), (10000.0, 1.0));
    assert_eq!(c.rope(5), (1_000_000.0, 1.0));
    assert_eq!(c.window(0), Some(512));
    assert_eq!(c.window(5), None);
}

#[test]
fn gpu_forward_matches_the_cpu_reference_on_gemma() {
    use hearth::graph::{LoadOptions, Model};
    use hearth::reference::{RefCache, Reference};
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let g = gpu(Config::Full);
    let reference = Reference::load(&f).unwrap();
    // <bos>The capital of France is, then a few continuation tokens.
    let tokens = [2u32, 818, 5279, 529, 7001, 563, 9079, 236761, 108, 818];
    let mut cache = RefCache::new(&reference.cfg, 32, g.features.shader_f16);
    let want = reference.forward(&mut cache, &tokens, 0).unwrap();
    let mut model = Model::load(
        g,
        &f,
        &LoadOptions {
            context: 32,
            batch: 8,
            all_logits: true,
            sequences: 1,
            kv_size: None,
            kv_type: None,
        },
    )
    .unwrap();
    model.forward(&tokens[..8]).unwrap();
    let got = pollster::block_on(model.all_logits()).unwrap();
    for (i, row) in got.iter().enumerate() {
        assert_close(&format!("gemma prefill position {i}"), row, &want[i], 1e-6);
    }
    for (i, &t) in tokens.iter().enumerate().skip(8) {
        model.forward(&[t]).unwrap();
        let row = pollster::block_on(model.logits()).unwrap();
        assert_close(&format!("gemma decode position {i}"), &row, &want[i], 1e-6);
    }
}

/// The prompt typed with Gemma's turn markers, and the tokens llama.cpp continued it with:
/// control-token embeddings and the flat logits after them, GPU against the f64 reference.
#[test]
fn gpu_forward_matches_the_cpu_reference_after_turn_markers() {
    use hearth::graph::{LoadOptions, Model};
    use hearth::reference::{RefCache, Reference};
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let g = gpu(Config::Full);
    let reference = Reference::load(&f).unwrap();
    let tokens = [
        2u32, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107,
        3689, 563, 506, 5279, 529, 7001, 236881, 187013,
    ];
    let mut cache = RefCache::new(&reference.cfg, 32, g.features.shader_f16);
    let want = reference.forward(&mut cache, &tokens, 0).unwrap();
    let opts = LoadOptions {
        context: 32,
        batch: 32,
        all_logits: true,
        sequences: 1,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(g, &f, &opts).unwrap();
    model.forward(&tokens).unwrap();
    let got = pollster::block_on(model.all_logits()).unwrap();
    for (i, row) in got.iter().enumerate() {
        // The last position (a rare token after the turn markers) is the ill-conditioned
        // one: NMSE 8.9e-7 with the shared-memory row sums of prefill attention, 1.04e-6
        // with the subgroup-shuffle ones (another summation order); every other position
        // stays near 1e-7 or below in both.
        assert_close(&format!("turn-marker position {i}"), row, &want[i], 2e-6);
    }
}

/// Every layer's q, k and v share one buffer back to back (one decode dispatch), also in
/// the layers whose file stores q and k as Q5_0 and v as Q8_0: those stack as Q8_0 (the
/// widening keeps every value: `quant::widen_to_q8_0`), and the memory plan counts them
/// as uploaded (`weights::upload_type`).
#[test]
fn gemma_attention_projections_stack_across_types() {
    use hearth::model::weights::upload_type;
    use hearth::model::{Attention, ModelConfig, Weights};
    use hearth::quant::GgmlType;
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let g = gpu(Config::Full);
    let cfg = ModelConfig::from_gguf(&f).unwrap();
    let w = Weights::upload(&g, &f, &cfg).unwrap();
    let mut mixed = 0;
    for (il, l) in w.layers.iter().enumerate() {
        let [q, k, v] = Attention::projections(l).unwrap().qkv;
        let joined = q.joined(k).and_then(|qk| qk.joined(v));
        assert!(joined.is_some(), "layer {il}: q, k and v apart");
        let name = |s: &str| format!("blk.{il}.attn_{s}.weight");
        let file: Vec<GgmlType> = ["q", "k", "v"]
            .iter()
            .map(|s| f.tensor(&name(s)).unwrap().ty)
            .collect();
        for (s, t) in ["q", "k", "v"].iter().zip([q, k, v]) {
            let n = name(s);
            assert_eq!(upload_type(&f, &n, f.tensor(&n).unwrap().ty), t.ty, "{n}");
        }
        if file.iter().any(|&t| t != file[0]) {
            mixed += 1;
            assert_eq!(
                (q.ty, k.ty, v.ty),
                (GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0)
            );
        } else {
            assert_eq!(q.ty, file[0], "layer {il}: a one-type stack keeps its type");
        }
    }
    // The file mixes them in some layers (the case this covers).
    assert!(mixed > 0, "no layer of this file mixes q/k and v types");
}
