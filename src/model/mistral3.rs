//! Mistral 3 text models (Ministral 3; llama.cpp `src/models/mistral3.cpp`).
//!
//! Llama's block (normal RoPE pairing, SwiGLU, GQA) with YaRN context extension
//! (`rope.scaling.type = yarn`, read for every architecture in `config.rs`) and Llama 4's
//! attention temperature: after RoPE, q at position p is multiplied by
//! `1 + temperature_scale * ln(floor(p / n) + 1)` with n the original context length
//! (`rope.scaling.original_context_length`), so attention sharpens as the context grows.

use super::config::{bad, ModelConfig, ModelError};
use super::{ArchDef, TinySpec};
use crate::gguf::{GgufHeader, Value};

pub(crate) const DEF: ArchDef = ArchDef {
    name: "mistral3",
    configure,
    // Llama's tensors and block; RoPE and the temperature come from the configuration.
    tensors: super::llama::tensors,
    block: super::llama::block,
    reference: crate::reference::llama::block,
    tiny,
    tiny_metadata,
};

/// Llama's defaults plus the attention temperature.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = false;
    let key = "mistral3.attention.temperature_scale";
    match h.get_f32(key)? {
        None => {}
        Some(0.0) => {}
        Some(s) if s.is_finite() => {
            if cfg.n_ctx_orig == 0 {
                return Err(bad(
                    "mistral3.rope.scaling.original_context_length",
                    0,
                    "the attention temperature needs it",
                ));
            }
            cfg.attn_temp = Some((s, cfg.n_ctx_orig as u32));
        }
        Some(s) => return Err(bad(key, s, "must be finite")),
    }
    Ok(())
}

/// YaRN over 16 original positions (factor 16) and the temperature, as the tiny golden.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 2;
}

fn tiny_metadata(_s: &TinySpec, m: &mut Vec<(String, Value)>) {
    let f = |k: &str, v: f32| (format!("mistral3.{k}"), Value::F32(v));
    m.push((
        "mistral3.rope.scaling.type".into(),
        Value::String("yarn".into()),
    ));
    m.push(f("rope.scaling.factor", 16.0));
    m.push((
        "mistral3.rope.scaling.original_context_length".into(),
        Value::U32(16),
    ));
    m.push(f("rope.scaling.yarn_beta_fast", 8.0));
    m.push(f("rope.scaling.yarn_beta_slow", 0.5));
    m.push(f("rope.scaling.yarn_log_multiplier", 1.0));
    m.push(f("attention.temperature_scale", 0.1));
}
