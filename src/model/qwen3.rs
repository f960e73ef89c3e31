//! Qwen 3 (Qwen Team, "Qwen3 Technical Report", 2025).
//!
//! Qwen 2 without the q/k/v biases and with a per-head RMSNorm on q and k before RoPE
//! (as Gemma 3 has), NeoX pairing. The head width is explicit (`attention.key_length`)
//! and need not equal hidden / heads.

use super::blocks::{attention_tensors, ffn_tensors, qk_norm_tensors};
use super::config::{ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights};
use crate::gguf::GgufHeader;
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef::new(
    "qwen3",
    configure,
    tensors,
    (block, crate::reference::qwen3::block),
);

/// Applies Qwen 3's differences to the Llama defaults.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    Ok(())
}

fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let mut v = attention_tensors(cfg, &qk_norm_tensors(cfg));
    v.extend(ffn_tensors(cfg));
    v
}

/// Llama's block with per-head q/k norms.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?.with_qk_norm(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
