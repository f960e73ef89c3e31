//! The CPU reference forward pass on tiny random models of every architecture (prefill
//! equals decode, the sliding window is applied, the cache rewinds), the tensor check's
//! errors (ROBUSTNESS case 13), and one forward pass of the real Gemma 3 270M.

mod common;

use hearth::gguf::{GgufFile, Value};
use hearth::model::tiny::assemble;
use hearth::model::{check_tensors, Arch, ModelConfig, ModelError, TinySpec, TinyTensor};
use hearth::quant::{nmse, GgmlType};
use hearth::reference::{RefCache, Reference};

const ARCHS: [Arch; Arch::ALL.len()] = Arch::ALL;
const TOKENS: [u32; 12] = [1, 17, 299, 42, 0, 5, 5, 123, 250, 7, 88, 2];

fn reference(spec: &TinySpec) -> Reference {
    Reference::load(&GgufFile::from_bytes(spec.build()).unwrap()).unwrap()
}

fn run(r: &Reference, tokens: &[u32], kv_f16: bool) -> Vec<Vec<f32>> {
    let mut cache = RefCache::new(&r.cfg, 64, kv_f16);
    r.forward(&mut cache, tokens, 0).unwrap()
}

#[test]
fn prefill_equals_token_by_token_decode_for_every_architecture() {
    for arch in ARCHS.into_iter().filter(|a| a.causal()) {
        for ty in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_K] {
            let spec = TinySpec::new(arch).with_weight_type(ty);
            let r = reference(&spec);
            assert!(r.cfg.n_kv_heads < r.cfg.n_heads, "GQA is exercised");
            let batch = run(&r, &TOKENS, false);
            let mut cache = RefCache::new(&r.cfg, 64, false);
            for (i, &t) in TOKENS.iter().enumerate() {
                let one = r.forward(&mut cache, &[t], i).unwrap();
                let e = nmse(&batch[i], &one[0]);
                assert!(e < 1e-10, "{arch:?} {ty} position {i}: NMSE {e}");
            }
            assert_eq!(cache.len(), TOKENS.len());
            for (i, l) in batch.iter().enumerate() {
                assert_eq!(l.len(), spec.vocab);
                assert!(l.iter().all(|v| v.is_finite()), "{arch:?} {ty} {i}");
                // Random weights still give a spread of logits, not a constant.
                let (lo, hi) = l
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                assert!(hi - lo > 0.5, "{arch:?} {ty} {i}: logits span {lo}..{hi}");
            }
            // Different positions of the same token see different contexts.
            assert!(nmse(&batch[5], &batch[6]) > 1e-6, "{arch:?} {ty}");
        }
    }
}

#[test]
fn an_f16_cache_rounds_but_stays_close() {
    for arch in ARCHS.into_iter().filter(|a| a.causal()) {
        let r = reference(&TinySpec::new(arch));
        let (full, half) = (run(&r, &TOKENS, false), run(&r, &TOKENS, true));
        // Position 0 attends only to itself, so softmax hides K's rounding but not V's.
        for (i, (a, b)) in full.iter().zip(&half).enumerate() {
            let e = nmse(a, b);
            assert!(e > 0.0 && e < 1e-5, "{arch:?} position {i}: NMSE {e}");
        }
    }
}

#[test]
fn the_sliding_window_hides_old_positions_on_local_layers() {
    let spec = TinySpec::new(Arch::Gemma3);
    let windowed = reference(&spec);
    assert_eq!(windowed.cfg.sliding_window, Some(8));
    assert!((0..5).all(|il| windowed.cfg.is_sliding(il)) && !windowed.cfg.is_sliding(5));
    // Same model with a window too wide to matter; the layers stay local (same RoPE base),
    // so only the mask differs.
    let mut wide = reference(&spec);
    wide.cfg.sliding_window = Some(1 << 20);
    let (a, b) = (run(&windowed, &TOKENS, false), run(&wide, &TOKENS, false));
    for p in 0..TOKENS.len() {
        let e = nmse(&a[p], &b[p]);
        if p < 8 {
            // Position p sees p + 1 <= 8 keys either way.
            assert_eq!(a[p], b[p], "position {p}");
        } else {
            assert!(e > 1e-6, "position {p}: window had no effect (NMSE {e})");
        }
    }
    eprintln!(
        "position 10: NMSE windowed vs not {:.3e}",
        nmse(&a[10], &b[10])
    );
}

#[test]
fn the_cache_rewinds_to_an_earlier_position() {
    let r = reference(&TinySpec::new(Arch::Qwen2));
    let mut cache = RefCache::new(&r.cfg, 16, false);
    r.forward(&mut cache, &TOKENS[..6], 0).unwrap();
    let again = r.forward(&mut cache, &[9, 10], 3).unwrap();
    assert_eq!(cache.len(), 5);
    let fresh = run(&r, &[TOKENS[0], TOKENS[1], TOKENS[2], 9, 10], false);
    assert_eq!(again[0], fresh[3]);
    assert_eq!(again[1], fresh[4]);
}

#[test]
fn bad_tokens_and_positions_are_errors() {
    let r = reference(&TinySpec::new(Arch::Llama));
    let mut cache = RefCache::new(&r.cfg, 4, false);
    let e = r.forward(&mut cache, &[1, 300], 0).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::TokenOutOfRange {
                id: 300,
                vocab: 300
            }
        ),
        "{e}"
    );
    let e = r.forward(&mut cache, &[1; 5], 0).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ContextFull {
                needed: 5,
                capacity: 4
            }
        ),
        "{e}"
    );
    let e = r.forward(&mut cache, &[1], 1).unwrap_err();
    assert!(
        matches!(e, ModelError::PositionGap { pos: 1, cached: 0 }),
        "{e}"
    );
    assert!(cache.is_empty(), "a rejected call leaves the cache alone");
}

#[test]
fn rope_freqs_divide_the_llama_frequencies() {
    let spec = TinySpec::new(Arch::Llama);
    let with_freqs = |f: f32, n: u64| {
        let mut tensors = spec.tensors();
        tensors.push(TinyTensor {
            name: "rope_freqs.weight".into(),
            dims: vec![n],
            ty: GgmlType::F32,
            data: vec![f; n as usize]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        });
        assemble(spec.metadata(), tensors)
    };
    let load = |b: Vec<u8>| Reference::load(&GgufFile::from_bytes(b).unwrap());
    let plain = run(&reference(&spec), &TOKENS, false);
    // Factors of 1 change nothing; factors of 4 slow every pair down.
    assert_eq!(
        run(&load(with_freqs(1.0, 8)).unwrap(), &TOKENS, false),
        plain
    );
    let slow = run(&load(with_freqs(4.0, 8)).unwrap(), &TOKENS, false);
    assert_eq!(slow[0], plain[0], "position 0 does not rotate");
    assert!(nmse(&plain[5], &slow[5]) > 1e-6);
    // One factor per rotated pair: head_dim 16 gives 8.
    match load(with_freqs(1.0, 16)) {
        Err(ModelError::BadShape { name, .. }) => assert_eq!(name, "rope_freqs.weight"),
        other => panic!("expected BadShape, got {:?}", other.err()),
    }
}

fn load_err(bytes: Vec<u8>) -> ModelError {
    match Reference::load(&GgufFile::from_bytes(bytes).unwrap()) {
        Ok(_) => panic!("loaded a broken model"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_tensor_is_named() {
    let spec = TinySpec::new(Arch::Qwen2);
    let mut tensors = spec.tensors();
    tensors.retain(|t| t.name != "blk.1.attn_k.bias");
    let e = load_err(assemble(spec.metadata(), tensors));
    assert!(
        matches!(&e, ModelError::MissingTensor(n) if n == "blk.1.attn_k.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("blk.1.attn_k.bias"));
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let spec = TinySpec::new(Arch::Gemma3).with_weight_type(GgmlType::F32);
    let mut tensors = spec.tensors();
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "blk.2.ffn_up.weight")
        .unwrap();
    t.dims = vec![64, 96];
    t.data = vec![0; 64 * 96 * 4];
    let e = load_err(assemble(spec.metadata(), tensors));
    let msg = e.to_string();
    match e {
        ModelError::BadShape { name, got, want } => {
            assert_eq!(name, "blk.2.ffn_up.weight");
            assert_eq!(got, [64, 96]);
            assert_eq!(want, [64, 128]);
        }
        other => panic!("expected BadShape, got {other}"),
    }
    assert!(
        msg.contains("[64, 96]") && msg.contains("[64, 128]"),
        "{msg}"
    );
}

#[test]
fn a_quantized_norm_is_rejected() {
    let spec = TinySpec::new(Arch::Qwen3);
    let mut tensors = spec.tensors();
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.ffn_norm.weight")
        .unwrap();
    t.ty = GgmlType::Q8_0;
    t.data = vec![0; 2 * 34];
    let e = load_err(assemble(spec.metadata(), tensors));
    assert!(
        matches!(&e, ModelError::BadTensor { name, .. } if name == "blk.0.ffn_norm.weight"),
        "{e}"
    );
}

#[test]
fn an_unsupported_architecture_is_named() {
    let spec = TinySpec::new(Arch::Llama);
    let mut meta = spec.metadata();
    meta[0].1 = Value::String("mamba".into());
    let e = load_err(assemble(meta, spec.tensors()));
    assert!(
        matches!(&e, ModelError::UnsupportedArch(a) if a == "mamba"),
        "{e}"
    );
}

#[test]
fn the_real_model_runs_and_passes_the_tensor_check() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let cfg = ModelConfig::from_gguf(f.header()).unwrap();
    check_tensors(&cfg, f.header()).unwrap();
    let t0 = std::time::Instant::now();
    let r = Reference::load(&f).unwrap();
    let t1 = std::time::Instant::now();
    // BOS + "The capital of France is" in Gemma 3's vocabulary.
    let tokens = [2u32, 818, 5279, 529, 7001, 563];
    let mut cache = RefCache::new(&r.cfg, tokens.len(), false);
    let logits = r.forward(&mut cache, &tokens, 0).unwrap();
    let t2 = std::time::Instant::now();
    let last = logits.last().unwrap();
    assert_eq!(last.len(), 262144);
    assert!(logits.iter().flatten().all(|v| v.is_finite()));
    let mut top: Vec<(usize, f32)> = last.iter().copied().enumerate().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!(
        "load {:.1}s, forward of {} tokens {:.1}s",
        (t1 - t0).as_secs_f32(),
        tokens.len(),
        (t2 - t1).as_secs_f32()
    );
    let vocab = f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    let named: Vec<_> = top[..5]
        .iter()
        .map(|&(id, l)| (id, vocab[id].as_str(), l))
        .collect();
    eprintln!("top-5 at the last position (id, piece, logit): {named:?}");
}
