//! Hyperparameters from untrusted files: every value the new architectures read (experts,
//! YaRN, soft-caps, the attention temperature) is checked as it is read, and a bad one is
//! an error naming the key, never a panic or an allocation sized by it. A file whose
//! tensors disagree with its keys is refused by name before anything is uploaded.

use hearth::gguf::{GgufFile, Value};
use hearth::model::tiny::{assemble, TinySpec};
use hearth::model::{check_tensors, Arch, ModelConfig};

/// The tiny model of `arch` with `changes` applied to its metadata (replacing a key or
/// adding it), and the error its configuration gives (None: it loads).
fn config_error(arch: Arch, changes: &[(&str, Value)]) -> Option<String> {
    let spec = TinySpec::new(arch);
    let mut meta = spec.metadata();
    for (k, v) in changes {
        meta.retain(|(name, _)| name != k);
        meta.push((k.to_string(), v.clone()));
    }
    let f = GgufFile::from_bytes(assemble(meta, spec.tensors())).unwrap();
    match ModelConfig::from_gguf(f.header()) {
        Ok(cfg) => check_tensors(&cfg, f.header()).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

fn refused(arch: Arch, changes: &[(&str, Value)], want: &str) {
    let e = config_error(arch, changes).unwrap_or_else(|| panic!("{changes:?} accepted"));
    assert!(e.contains(want), "{changes:?}: {e}");
}

#[test]
fn bad_expert_counts_are_refused_by_name() {
    use Value::U32;
    assert_eq!(config_error(Arch::Qwen3Moe, &[]), None);
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_used_count", U32(0))],
        "expert_used_count",
    );
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_used_count", U32(9))],
        "expert_used_count",
    );
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_count", U32(0))],
        "needs experts",
    );
    refused(
        Arch::GptOss,
        &[("gpt-oss.expert_count", U32(0))],
        "needs experts",
    );
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_count", U32(4_000_000))],
        "expert_count",
    );
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_feed_forward_length", U32(0))],
        "expert_feed_forward_length",
    );
    // Keys that disagree with the tensors: the expert tensors' shapes no longer match.
    refused(
        Arch::Qwen3Moe,
        &[("qwen3moe.expert_feed_forward_length", U32(64))],
        "ffn_gate_exps",
    );
    refused(
        Arch::Qwen2Moe,
        &[("qwen2moe.expert_count", U32(4))],
        "ffn_gate_inp",
    );
}

#[test]
fn bad_rope_scaling_and_caps_are_refused_by_name() {
    use Value::{String as S, F32, U32};
    let yarn = ("mistral3.rope.scaling.type", S("yarn".into()));
    assert_eq!(config_error(Arch::Mistral3, &[]), None);
    refused(
        Arch::Mistral3,
        &[
            yarn.clone(),
            ("mistral3.rope.scaling.original_context_length", U32(0)),
        ],
        "original_context_length",
    );
    refused(
        Arch::Mistral3,
        &[yarn.clone(), ("mistral3.rope.scaling.factor", F32(-2.0))],
        "rope.scaling.factor",
    );
    refused(
        Arch::Mistral3,
        &[
            yarn,
            ("mistral3.rope.scaling.yarn_beta_fast", F32(f32::NAN)),
        ],
        "beta",
    );
    refused(
        Arch::Llama,
        &[("llama.rope.scaling.type", S("longrope".into()))],
        "unsupported RoPE scaling",
    );
    refused(
        Arch::Phi3,
        &[("phi3.rope.scaling.attn_factor", F32(0.0))],
        "attn_factor",
    );
    refused(
        Arch::Mistral3,
        &[("mistral3.attention.temperature_scale", F32(f32::INFINITY))],
        "temperature_scale",
    );
    refused(
        Arch::Gemma2,
        &[("gemma2.attn_logit_softcapping", F32(-1.0))],
        "attn_logit_softcapping",
    );
    refused(
        Arch::Gemma2,
        &[("gemma2.final_logit_softcapping", F32(f32::NAN))],
        "final_logit_softcapping",
    );
    // A cap of 0 means none, as llama.cpp reads it.
    assert_eq!(
        config_error(Arch::Gemma2, &[("gemma2.attn_logit_softcapping", F32(0.0))]),
        None
    );
}
