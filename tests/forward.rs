//! The GPU forward pass against the CPU reference on tiny random-weight models of every
//! architecture: several weight types, GQA, a context longer than Gemma's sliding window,
//! prefill in several chunks (continuing at a non-zero position), then decode steps.

mod common;

use common::{argmax, assert_close, gpu, Config};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use hearth::kernels::KvType;
use hearth::model::tiny::TinySpec;
use hearth::model::Arch;
use hearth::quant::{GgmlType, Rng};
use hearth::reference::{RefCache, Reference};

/// Logits agree to this NMSE: both sides run f32 math on identically decoded weights and
/// an identically rounded KV cache; only accumulation order differs.
const BOUND: f64 = 1e-6;

fn check(spec: &TinySpec, cfg: Config) {
    check_kv(spec, cfg, None, BOUND);
}

/// `check` with a KV cache of `kv_type` (None: the device's default) on both sides, the
/// logits held to `bound`.
fn check_kv(spec: &TinySpec, cfg: Config, kv_type: Option<KvType>, bound: f64) {
    let f = GgufFile::from_bytes(spec.build()).unwrap();
    let g = gpu(cfg);
    let reference = Reference::load(&f).unwrap();
    let mut model = Model::load(
        g.clone(),
        &f,
        &LoadOptions {
            context: 64,
            batch: 8,
            all_logits: true,
            sequences: 1,
            kv_size: None,
            kv_type,
        },
    )
    .unwrap();
    let mut rng = Rng::new(spec.seed);
    let tokens: Vec<u32> = (0..24)
        .map(|_| rng.below(reference.cfg.vocab as u64) as u32)
        .collect();
    let kv = kv_type.unwrap_or(KvType::default_for(g.features.shader_f16));
    let mut cache = RefCache::typed(&reference.cfg, 64, kv);
    let want = reference.forward(&mut cache, &tokens, 0).unwrap();
    let name = format!("{:?} {} {cfg:?} KV {kv}", spec.arch, spec.weight_type);

    // Prefill 13 tokens: a full chunk of 8, then 5 at position 8.
    let mut pos = 0;
    for chunk in [&tokens[..8], &tokens[8..13]] {
        model.forward(chunk).unwrap();
        let got = pollster::block_on(model.all_logits()).unwrap();
        assert_eq!(got.len(), chunk.len());
        for (i, row) in got.iter().enumerate() {
            assert_close(
                &format!("{name} prefill position {}", pos + i),
                row,
                &want[pos + i],
                bound,
            );
        }
        let last = pollster::block_on(model.logits()).unwrap();
        assert_close(
            &format!("{name} prefill last logits"),
            &last,
            &want[pos + chunk.len() - 1],
            bound,
        );
        pos += chunk.len();
    }
    // Decode the rest one token at a time.
    for (i, &t) in tokens.iter().enumerate().skip(13) {
        model.forward(&[t]).unwrap();
        let got = pollster::block_on(model.logits()).unwrap();
        assert_close(
            &format!("{name} decode position {i}"),
            &got,
            &want[i],
            bound,
        );
        let got = pollster::block_on(model.argmax()).unwrap();
        assert_eq!(got, argmax(&want[i]), "{name} argmax at {i}");
    }
    assert_eq!(model.pos(), tokens.len());
}

fn spec(arch: Arch, ty: GgmlType, seed: u64) -> TinySpec {
    let mut s = TinySpec::new(arch).with_weight_type(ty);
    s.seed = seed;
    s
}

/// A q8_0 KV cache (`--kv-type q8_0`) on every architecture, with and without shader-f16
/// and subgroups: the reference quantizes K and V by llama.cpp's rule as it stores them.
/// The GPU's keys differ from the reference's by f32 rounding, so now and then one lands
/// on the other side of a quantization step (1/127 of its block's largest value); the
/// bound allows for those few flips (measured up to 3.4e-5, on Phi-3, whose RoPE factor
/// of 1.118 enlarges every score).
#[test]
fn q8_kv_cache_matches_reference() {
    for (i, arch) in Arch::ALL.into_iter().filter(|a| a.causal()).enumerate() {
        let mut s = spec(arch, GgmlType::Q8_0, 90 + i as u64);
        // Heads of 32: one q8_0 block each.
        (s.hidden, s.head_dim) = (128, 32);
        for cfg in [Config::Full, Config::Bare] {
            check_kv(&s, cfg, Some(KvType::Q8_0), 1e-4);
        }
    }
    // And a head of 64 (two blocks, one scale word) with K-quant weights.
    check_kv(
        &spec(Arch::Qwen3, GgmlType::Q4_K, 97),
        Config::Full,
        Some(KvType::Q8_0),
        1e-4,
    );
}

#[test]
fn gemma2_matches_reference() {
    // Soft-capped scores and logits, every other layer sliding.
    check(&spec(Arch::Gemma2, GgmlType::Q8_0, 15), Config::Full);
    check(&spec(Arch::Gemma2, GgmlType::Q4_K, 16), Config::Bare);
}

#[test]
fn mistral3_matches_reference() {
    // YaRN over 16 original positions and the attention temperature, past both.
    check(&spec(Arch::Mistral3, GgmlType::Q8_0, 17), Config::Full);
    check(&spec(Arch::Mistral3, GgmlType::F16, 18), Config::Bare);
}

#[test]
fn phi3_matches_reference() {
    // Fused q/k/v and gate/up matrices, split at load (K-quant rows too).
    check(&spec(Arch::Phi3, GgmlType::Q8_0, 19), Config::Full);
    check(&spec(Arch::Phi3, GgmlType::Q4_K, 20), Config::Bare);
}

#[test]
fn qwen3moe_matches_reference() {
    // Eight experts, two per token: prefill chunks route each token on its own.
    check(&spec(Arch::Qwen3Moe, GgmlType::Q8_0, 21), Config::Full);
    check(&spec(Arch::Qwen3Moe, GgmlType::Q4_K, 22), Config::Bare);
    check(
        &spec(Arch::Qwen3Moe, GgmlType::F16, 23),
        Config::SmallBinding,
    );
}

#[test]
fn gpt_oss_matches_reference() {
    // Sinks, biases, alternating windows, YaRN, top-k-softmax routing, clamped SwiGLU.
    check(&spec(Arch::GptOss, GgmlType::Q8_0, 24), Config::Full);
    check(&spec(Arch::GptOss, GgmlType::F32, 25), Config::Bare);
}

#[test]
fn qwen2moe_matches_reference() {
    // The shared expert and its sigmoid gate, next to the routed experts.
    check(&spec(Arch::Qwen2Moe, GgmlType::Q8_0, 26), Config::Full);
    check(&spec(Arch::Qwen2Moe, GgmlType::Q5_0, 27), Config::Bare);
}

#[test]
fn gemma3_matches_reference() {
    for (i, ty) in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F32]
        .into_iter()
        .enumerate()
    {
        check(&spec(Arch::Gemma3, ty, 10 + i as u64), Config::Full);
    }
    check(&spec(Arch::Gemma3, GgmlType::Q5_0, 20), Config::Bare);
}

#[test]
fn llama_matches_reference() {
    for (i, ty) in [GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16]
        .into_iter()
        .enumerate()
    {
        check(&spec(Arch::Llama, ty, 30 + i as u64), Config::Full);
    }
    check(&spec(Arch::Llama, GgmlType::Q8_0, 40), Config::Bare);
}

#[test]
fn qwen2_matches_reference() {
    check(&spec(Arch::Qwen2, GgmlType::Q8_0, 50), Config::Full);
    check(&spec(Arch::Qwen2, GgmlType::Q5_K, 51), Config::Bare);
}

#[test]
fn qwen3_matches_reference() {
    check(&spec(Arch::Qwen3, GgmlType::Q4_K, 60), Config::Full);
    check(&spec(Arch::Qwen3, GgmlType::Q8_0, 61), Config::Bare);
}

#[test]
fn rope_freqs_apply_to_every_architecture() {
    // One rule for the GPU plan, the reference and the tensor check: a file of any
    // architecture may carry RoPE frequency divisors, and all three use them.
    for (i, arch) in Arch::ALL.into_iter().filter(|a| a.causal()).enumerate() {
        let mut with = spec(arch, GgmlType::Q8_0, 70 + i as u64);
        with.rope_freqs = true;
        check(&with, Config::Full);
        // The divisors change the answer, so the check above could not pass by ignoring them.
        let without = spec(arch, GgmlType::Q8_0, 70 + i as u64);
        let logits = |s: &TinySpec| {
            let f = GgufFile::from_bytes(s.build()).unwrap();
            let r = Reference::load(&f).unwrap();
            let mut cache = RefCache::new(&r.cfg, 16, false);
            r.forward(&mut cache, &[1, 5, 9, 13, 17, 21], 0).unwrap()
        };
        let (a, b) = (logits(&with), logits(&without));
        let diff = a[5]
            .iter()
            .zip(&b[5])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff > 1e-3, "{arch:?}: rope_freqs changed nothing ({diff})");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let f = GgufFile::from_bytes(TinySpec::new(Arch::Llama).build()).unwrap();
    let mut model = Model::load(
        gpu(Config::Full),
        &f,
        &LoadOptions {
            context: 16,
            batch: 8,
            all_logits: false,
            sequences: 1,
            kv_size: None,
            kv_type: None,
        },
    )
    .unwrap();
    let vocab = model.cfg.vocab as u32;
    assert!(model
        .forward(&[vocab])
        .unwrap_err()
        .to_string()
        .contains("vocabulary"));
    assert!(model.forward(&[]).is_err());
    assert!(model
        .forward(&[1; 17])
        .unwrap_err()
        .to_string()
        .contains("do not fit a KV cache"));
    model.forward(&[1; 16]).unwrap();
    assert!(model
        .forward(&[1])
        .unwrap_err()
        .to_string()
        .contains("do not fit a KV cache"));
    model.reset();
    model.forward(&[1]).unwrap();
}

#[test]
fn a_kv_cache_beyond_the_binding_limit_is_refused_before_allocating() {
    let mut spec = TinySpec::new(Arch::Llama);
    spec.context = 4096;
    let f = GgufFile::from_bytes(spec.build()).unwrap();
    let cfg = hearth::model::ModelConfig::from_gguf(&f).unwrap();
    let plan = hearth::graph::MemoryPlan::new(&cfg, &f, 4096, 8, false, KvType::F32);
    assert!(plan.kv_cache > 0 && plan.total() > plan.weights);
    let small = gpu(Config::SmallBinding); // 64 KiB bindings
    let err = Model::load(
        small,
        &f,
        &LoadOptions {
            context: 4096,
            batch: 8,
            all_logits: false,
            sequences: 1,
            kv_size: None,
            kv_type: None,
        },
    )
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("KV cache") && msg.contains("lower the context"),
        "{msg}"
    );
    // A context that fits loads on the same adapter.
    assert!(Model::load(
        gpu(Config::SmallBinding),
        &f,
        &LoadOptions {
            context: 64,
            batch: 8,
            all_logits: false,
            sequences: 1,
            kv_size: None,
            kv_type: None,
        }
    )
    .is_ok());
}
