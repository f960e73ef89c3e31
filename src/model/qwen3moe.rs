//! Qwen3-MoE (Qwen Team, "Qwen3 Technical Report", 2025; llama.cpp
//! `src/models/qwen3moe.cpp`): Qwen 3's attention (per-head q/k RMSNorm before NeoX
//! RoPE) with a mixture-of-experts FFN in every block. The router's softmax over all
//! experts picks the `expert_used_count` most likely, their probabilities renormalized to
//! sum to 1 (llama.cpp always renormalizes for this architecture); each expert is a
//! SwiGLU FFN of `expert_feed_forward_length`.

use super::blocks::{attention_tensors, moe_tensors, qk_norm_tensors};
use super::config::{ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, LayerWeights, Moe, TinySpec};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;
use crate::kernels::Gating;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "qwen3moe",
    configure,
    tensors,
    block,
    reference: crate::reference::qwen3moe::block,
    tiny,
    tiny_metadata,
};

/// NeoX RoPE, renormalized softmax gating; the experts are required.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.gating = Gating::SoftmaxNorm;
    if !cfg.is_moe() {
        return Err(super::config::bad(
            "qwen3moe.expert_count",
            0,
            "a mixture of experts needs experts",
        ));
    }
    Ok(())
}

fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let mut v = attention_tensors(cfg, &qk_norm_tensors(cfg));
    v.extend(moe_tensors(cfg, "ffn_norm.weight"));
    v
}

/// `x += attn(norm(x))` with q/k norms, then `x += moe(norm(x))`.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?.with_qk_norm(w)?)?;
    b.residual(None)?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.moe(&Moe::named(w, Activation::Silu)?)?;
    b.residual(None)
}

/// Eight experts, two per token, each as wide as the dense FFN would be.
fn tiny(_s: &mut TinySpec) {}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    m.push(("qwen3moe.expert_count".into(), Value::U32(8)));
    m.push(("qwen3moe.expert_used_count".into(), Value::U32(2)));
    m.push((
        "qwen3moe.expert_feed_forward_length".into(),
        Value::U32(s.ffn as u32),
    ));
}
