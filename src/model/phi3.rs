//! Phi-3 and Phi-4-mini (Abdin et al., "Phi-3 Technical Report", 2024; llama.cpp
//! `src/models/phi3.cpp`).
//!
//! Llama's block with NeoX RoPE and two fused matrices: `attn_qkv` holds the q, k and v
//! projections' rows one after another, and `ffn_up` holds the gate's rows then the up
//! projection's (SwiGLU). The loader splits both into the usual parts. The 128k models use
//! LongRoPE: per-frequency divisors `rope_factors_long` when the context exceeds the
//! original one (`rope.scaling.original_context_length`), `rope_factors_short` otherwise,
//! and `rope.scaling.attn_factor` on cos and sin (both read for every architecture). A
//! `sliding_window` key is ignored, as llama.cpp does: every layer attends everything.

use super::blocks::attention_tensors;
use super::config::{ModelConfig, ModelError};
use super::{ArchDef, BlockTensor, TinySpec};
use crate::gguf::{GgufHeader, Value};

pub(crate) const DEF: ArchDef = ArchDef {
    name: "phi3",
    configure,
    tensors,
    // Llama's block over the split parts.
    block: super::llama::block,
    reference: crate::reference::llama::block,
    tiny,
    tiny_metadata,
};

/// NeoX pairing; no sliding window.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.sliding_window = None;
    Ok(())
}

/// The fused q/k/v and gate/up matrices, seen as their parts.
fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, q, kv, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
    let qkv = BlockTensor::fused(
        "attn_qkv.weight",
        h,
        &[
            ("attn_q.weight", q),
            ("attn_k.weight", kv),
            ("attn_v.weight", kv),
        ],
    );
    // Llama's attention tensors with the fused matrix in place of q, k and v.
    let mut v: Vec<BlockTensor> = attention_tensors(cfg, &[])
        .into_iter()
        .filter(|t| !matches!(t.name, "attn_q.weight" | "attn_k.weight" | "attn_v.weight"))
        .collect();
    v.insert(1, qkv);
    v.extend([
        BlockTensor::vector("ffn_norm.weight", h),
        BlockTensor::fused(
            "ffn_up.weight",
            h,
            &[("ffn_gate.weight", ff), ("ffn_up.weight", ff)],
        ),
        BlockTensor::matrix("ffn_down.weight", ff, h),
    ]);
    v
}

/// An original context of 32 below the tiny model's 1024, so a test context picks the
/// long or short factors.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 2;
}

fn tiny_metadata(_s: &TinySpec, m: &mut Vec<(String, Value)>) {
    m.push((
        "phi3.rope.scaling.original_context_length".into(),
        Value::U32(32),
    ));
    m.push(("phi3.rope.scaling.attn_factor".into(), Value::F32(1.118034)));
}
