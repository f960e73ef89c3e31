//! Embeddings: the pooling and non-causal attention kernels against their CPU twins, and
//! whole models against llama.cpp. `tests/fixtures/embed/` holds tiny random-weight GGUFs
//! written as llama.cpp's converter writes them (a `qwen3` with last-token pooling, a
//! `llama` mean-pooled, an EmbeddingGemma with its symmetric sliding window and dense
//! projections, a `bert` and a `nomic-bert` with WordPiece vocabularies) and llama.cpp
//! 0.3.36's pooled vectors for four or five texts
//! (`scripts/gen-embed-goldens.py`). hearth's tokens must equal llama.cpp's, and its
//! vectors (GPU, with and without shader-f16 and subgroups, and the CPU reference) must
//! point the same way: cosine at least `MIN_COSINE`.

mod common;

use common::{assert_close, gpu, random_vec, read, storage, Config};
use hearth::engine::{EmbedOptions, Embedder, Engine, EngineOptions};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use hearth::kernels::{
    self, attention_prefill, pool, AttentionPrefill, AttnSpec, KvCache, KvType, Pool, PoolStep,
    Rows, Step, StepBuffer, Tokens, View,
};
use hearth::model::Pooling;
use hearth::reference::Reference;
use serde_json::Value;
use std::path::PathBuf;

/// Cosine of hearth's vector with llama.cpp's, at least.
const MIN_COSINE: f64 = 0.9999;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector widths");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn pool_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for (width, built) in [(1usize, 1usize), (63, 5), (64, 7), (200, 33)] {
            let x = random_vec(built * width, width as u64);
            let xb = storage(&g, &x);
            let out = storage(&g, &vec![0.5f32; width]);
            let step = StepBuffer::new(&g, Step::new(0, 1));
            let tok = Tokens {
                max: built as u32,
                step: &step,
            };
            let op = Pool::new(&g, Rows::packed(&xb, width as u32), &out, tok).unwrap();
            let mut prev = vec![0.5f32; width];
            // Mean over a full step, then over fewer tokens accumulated, one row, a row
            // past the step's tokens (nothing), and a count running past them.
            let steps = [
                (
                    built,
                    PoolStep {
                        first: 0,
                        count: built as u32,
                        scale: 0.25,
                        accumulate: false,
                    },
                ),
                (
                    built.div_ceil(2),
                    PoolStep {
                        first: 0,
                        count: built as u32,
                        scale: 0.5,
                        accumulate: true,
                    },
                ),
                (
                    built,
                    PoolStep {
                        first: built as u32 - 1,
                        count: 1,
                        scale: 1.0,
                        accumulate: false,
                    },
                ),
                (
                    1,
                    PoolStep {
                        first: 3,
                        count: 1,
                        scale: 1.0,
                        accumulate: true,
                    },
                ),
                (
                    built,
                    PoolStep {
                        first: 0,
                        count: 1000,
                        scale: 2.0,
                        accumulate: true,
                    },
                ),
            ];
            for (n, s) in steps {
                op.set(&g, s);
                step.write(&g, Step::new(0, n as u32));
                kernels::run(&g, &[&op.dispatches[0]]);
                let want = pool::cpu(&x[..n * width], width, s, &prev);
                let got = read(&g, &out, width);
                assert_close(
                    &format!("{cfg:?} pool {width}x{n} {s:?}"),
                    &got,
                    &want,
                    1e-12,
                );
                prev = got;
            }
        }
    }
}

#[test]
fn pool_refuses_bad_buffers() {
    let g = gpu(Config::Full);
    let x = storage(&g, &[0.0; 8]);
    let small = storage(&g, &[0.0; 2]);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = Tokens {
        max: 2,
        step: &step,
    };
    assert!(Pool::new(&g, Rows::packed(&x, 4), &x, tok).is_err());
    assert!(Pool::new(&g, Rows::packed(&x, 4), &small, tok).is_err());
    assert!(Pool::new(
        &g,
        Rows::packed(&x, 8),
        &small,
        Tokens {
            max: 2,
            step: &step
        }
    )
    .is_err());
}

/// Non-causal prefill attention (every key of the input, or a symmetric window) against
/// its twin, over f32 and f16 caches, heads that are and are not multiples of 4.
#[test]
fn non_causal_attention_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for (n_heads, n_kv_heads, head_dim) in [(4usize, 2usize, 16usize), (2, 1, 18), (4, 4, 64)] {
            for kind in [KvType::F32, KvType::default_for(g.features.shader_f16)] {
                for window in [None, Some(8u32), Some(5)] {
                    for n in [1usize, 7, 20] {
                        let (qd, kvd) = (n_heads * head_dim, n_kv_heads * head_dim);
                        let spec = AttnSpec {
                            n_heads: n_heads as u32,
                            n_kv_heads: n_kv_heads as u32,
                            head_dim: head_dim as u32,
                            scale: 1.0 / (head_dim as f32).sqrt(),
                            window,
                            softcap: None,
                        };
                        let cap = 24usize;
                        let dims = (kvd as u32, head_dim as u32);
                        let cache = KvCache::typed(&g, kind, cap as u64, cap as u32, dims).unwrap();
                        let seed = (n * 100 + head_dim) as u64;
                        let fill = |buf: &wgpu::Buffer, s: u64| {
                            let data = random_vec(cap * kvd, s);
                            let bytes = kind.encode(&data, kvd, head_dim);
                            g.queue.write_buffer(buf, 0, &bytes);
                            kind.decode(&bytes, cap, kvd, head_dim)
                        };
                        let (k, v) = (fill(&cache.k, seed), fill(&cache.v, seed + 1));
                        let q = random_vec(24 * qd, seed + 2);
                        let (qb, ob) = (storage(&g, &q), storage(&g, &vec![f32::NAN; 24 * qd]));
                        let step = StepBuffer::new(&g, Step::new(0, n as u32));
                        let tok = Tokens {
                            max: 24,
                            step: &step,
                        };
                        let op = AttentionPrefill::non_causal(
                            &g,
                            &spec,
                            (View::of(&qb), View::of(&ob)),
                            &cache,
                            tok,
                        )
                        .unwrap();
                        kernels::run(&g, &[&op.dispatch]);
                        let got = read(&g, &ob, n * qd);
                        let want = attention_prefill::cpu_non_causal(
                            &spec,
                            &q[..n * qd],
                            &k[..n * kvd],
                            &v[..n * kvd],
                        );
                        let case = format!(
                            "{cfg:?} {kind:?} {n_heads}/{n_kv_heads}x{head_dim} window {window:?} n {n}"
                        );
                        assert_close(&case, &got, &want, 1e-9);
                    }
                }
            }
        }
    }
}

struct Golden {
    name: String,
    gguf: PathBuf,
    pooling: Pooling,
    inputs: Vec<(String, Vec<u32>, Vec<f32>)>,
}

fn golden(name: &str) -> Golden {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embed");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let inputs = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let e = i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (
                i["text"].as_str().unwrap().to_string(),
                common::ids(&i["tokens"]),
                e,
            )
        })
        .collect();
    Golden {
        name: name.to_string(),
        gguf: dir.join(v["gguf"].as_str().unwrap()),
        pooling: Pooling::from_name(v["pooling"].as_str().unwrap()).unwrap(),
        inputs,
    }
}

/// The CPU reference and the GPU (prefill chunks of `batch`, F32 cache) against
/// llama.cpp's vectors; the GPU against the reference by NMSE.
fn check_golden(name: &str, cfg: Config, batch: usize) -> f64 {
    let gd = golden(name);
    let f = GgufFile::open(&gd.gguf).unwrap();
    let r = Reference::load(&f).unwrap();
    let opts = LoadOptions {
        context: 256,
        batch,
        kv_type: Some(KvType::F32),
        ..LoadOptions::default()
    };
    let mut model = Model::load(gpu(cfg), &f, &opts).unwrap();
    let tok = hearth::tokenizer::Tokenizer::from_gguf(f.header()).unwrap();
    let mut worst = 1f64;
    for (text, ids, want) in &gd.inputs {
        assert_eq!(
            &tok.encode(text, true, true).unwrap(),
            ids,
            "{name}: tokens of {text:?}"
        );
        let cpu = r.embed(ids, gd.pooling).unwrap();
        let got = pollster::block_on(model.embed(ids, gd.pooling)).unwrap();
        let (c_ref, c_gpu) = (cosine(&cpu, want), cosine(&got, want));
        assert!(
            c_ref >= MIN_COSINE,
            "{}: reference cosine {c_ref} for {text:?}",
            gd.name
        );
        assert!(
            c_gpu >= MIN_COSINE,
            "{} {cfg:?}: GPU cosine {c_gpu} for {text:?}",
            gd.name
        );
        assert_close(
            &format!("{} {cfg:?} GPU vs reference {text:?}", gd.name),
            &got,
            &cpu,
            1e-9,
        );
        worst = worst.min(c_gpu).min(c_ref);
    }
    eprintln!("{name} {cfg:?} batch {batch}: worst cosine vs llama.cpp {worst:.9}");
    worst
}

#[test]
fn decoder_pooling_matches_llama_cpp() {
    for name in ["qwen3-last", "llama-mean"] {
        check_golden(name, Config::Full, 64);
        // Chunks of 8: mean and last-token pooling across prefill chunks.
        check_golden(name, Config::Bare, 8);
    }
}

#[test]
fn gemma_embedding_matches_llama_cpp() {
    check_golden("gemma-embedding", Config::Full, 128);
    check_golden("gemma-embedding", Config::Bare, 80);
}

#[test]
fn non_causal_model_refuses_input_longer_than_its_batch() {
    let gd = golden("gemma-embedding");
    let f = GgufFile::open(&gd.gguf).unwrap();
    let opts = LoadOptions {
        context: 256,
        batch: 8,
        ..LoadOptions::default()
    };
    let mut model = Model::load(gpu(Config::Full), &f, &opts).unwrap();
    let err = pollster::block_on(model.embed(&[1; 9], Pooling::Mean)).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
    assert!(pollster::block_on(model.embed(&[1; 8], Pooling::Mean)).is_ok());
    assert!(pollster::block_on(model.embed(&[], Pooling::Mean)).is_err());
    assert!(pollster::block_on(model.embed(&[100_000], Pooling::Mean)).is_err());
}

fn embedder(name: &str, context: usize, batch: usize) -> (Engine, Embedder) {
    let gd = golden(name);
    let f = GgufFile::open(&gd.gguf).unwrap();
    let opts = EngineOptions {
        context,
        batch,
        ..EngineOptions::default()
    };
    let engine = Engine::load(gpu(Config::Full), &f, opts, &mut |_, _| {}).unwrap();
    let e = engine.embedder().unwrap();
    (engine, e)
}

#[test]
fn engine_embeds_texts_normalized_truncated_and_cut() {
    let gd = golden("qwen3-last");
    let (_engine, mut e) = embedder("qwen3-last", 128, 64);
    let texts: Vec<String> = gd.inputs.iter().map(|i| i.0.clone()).collect();
    let out = pollster::block_on(e.embed(&texts, &EmbedOptions::default())).unwrap();
    assert_eq!(out.vectors.len(), texts.len());
    assert_eq!(
        out.prompt_tokens,
        gd.inputs.iter().map(|i| i.1.len()).sum::<usize>()
    );
    for (v, (_, _, want)) in out.vectors.iter().zip(&gd.inputs) {
        let norm: f64 = v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit norm, got {norm}");
        assert!(cosine(v, want) >= MIN_COSINE);
    }
    // dimensions: the first 16, normalized again.
    let cut = EmbedOptions {
        dimensions: Some(16),
        ..EmbedOptions::default()
    };
    let v = &pollster::block_on(e.embed(&texts[..1], &cut))
        .unwrap()
        .vectors[0];
    assert_eq!(v.len(), 16);
    assert!(cosine(v, &gd.inputs[0].2[..16]) >= MIN_COSINE);
    let bad = EmbedOptions {
        dimensions: Some(65),
        ..EmbedOptions::default()
    };
    assert!(pollster::block_on(e.embed(&texts[..1], &bad)).is_err());
    // Longer than the context (128): truncated by default, keeping the closing EOS.
    let long = vec!["word ".repeat(40)];
    let ids = e.tokenize(&long[0], true).unwrap();
    assert_eq!(ids.len(), 128);
    assert_eq!(*ids.last().unwrap(), 2, "the closing EOS stays");
    assert!(pollster::block_on(e.embed(&long, &EmbedOptions::default())).is_ok());
    let strict = EmbedOptions {
        truncate: false,
        ..EmbedOptions::default()
    };
    let err = pollster::block_on(e.embed(&long, &strict)).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
}

/// BERT and nomic-bert tiny models (Q8_0, random weights, `TinySpec`): the GPU's pooled
/// vector against the CPU reference's, for every pooling, with and without shader-f16 and
/// subgroups, over inputs of 1 to 21 tokens (positions and token types included).
#[test]
fn encoders_match_reference() {
    use hearth::model::{Arch, TinySpec};
    for arch in [Arch::Bert, Arch::NomicBert] {
        let f = GgufFile::from_bytes(TinySpec::new(arch).build()).unwrap();
        let r = Reference::load(&f).unwrap();
        assert!(!r.cfg.causal);
        for cfg in [Config::Full, Config::Bare] {
            let opts = LoadOptions {
                context: 64,
                batch: 32,
                kv_type: Some(KvType::F32),
                ..LoadOptions::default()
            };
            let mut model = Model::load(gpu(cfg), &f, &opts).unwrap();
            for (n, pooling) in [(1, Pooling::Cls), (7, Pooling::Mean), (21, Pooling::Last)] {
                let ids: Vec<u32> = (0..n).map(|i| (i * 37 + 5) % 300).collect();
                let want = r.embed(&ids, pooling).unwrap();
                let got = pollster::block_on(model.embed(&ids, pooling)).unwrap();
                let case = format!("{arch:?} {cfg:?} {n} tokens {pooling:?}");
                assert_close(&case, &got, &want, 1e-9);
            }
        }
    }
}

/// BERT ([CLS] pooling, absolute positions, token types, GELU FFN) and nomic-bert (RoPE,
/// fused q/k/v, SwiGLU, mean pooling) with WordPiece vocabularies: [CLS] ... [SEP] tokens
/// as llama.cpp feeds them, and its vectors.
#[test]
fn bert_encoders_match_llama_cpp() {
    for name in ["bert-cls", "nomic-bert"] {
        check_golden(name, Config::Full, 64);
        check_golden(name, Config::Bare, 32);
    }
}

/// An embedding-only model embeds through the engine ([CLS] ... [SEP], as llama.cpp) and
/// refuses to generate with an error that says so.
#[test]
fn bert_engine_embeds_and_refuses_to_generate() {
    let gd = golden("bert-cls");
    let (engine, mut e) = embedder("bert-cls", 256, 64);
    assert_eq!(e.pooling(), Pooling::Cls);
    let (text, ids, want) = &gd.inputs[1];
    assert_eq!(&e.tokenize(text, true).unwrap(), ids);
    assert_eq!(
        (ids[0], *ids.last().unwrap()),
        (101, 102),
        "[CLS] ... [SEP]"
    );
    let out =
        pollster::block_on(e.embed(std::slice::from_ref(text), &EmbedOptions::default())).unwrap();
    assert!(cosine(&out.vectors[0], want) >= MIN_COSINE);
    let mut s = engine.session().unwrap();
    let opts = hearth::engine::GenerateOptions::default();
    let err = s.generate_tokens(ids.clone(), opts).err().unwrap();
    assert!(err.to_string().contains("embedding model"), "{err}");
}
