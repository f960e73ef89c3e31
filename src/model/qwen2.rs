//! Qwen 2 / 2.5 (Qwen Team, "Qwen2 Technical Report", 2024).
//!
//! Llama with biases on the q, k and v projections and NeoX-style RoPE pairing
//! (dimension i with i + d/2). Large rope bases (1 000 000) are common.

use super::blocks::{attention_tensors, ffn_tensors, qkv_bias_tensors};
use super::config::{ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights};
use crate::gguf::GgufHeader;
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef::new(
    "qwen2",
    configure,
    tensors,
    (block, crate::reference::qwen2::block),
);

/// Applies Qwen 2's differences to the Llama defaults.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    Ok(())
}

fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let mut v = attention_tensors(cfg, &qkv_bias_tensors(cfg));
    v.extend(ffn_tensors(cfg));
    v
}

/// Llama's block with biased q/k/v projections.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?.with_bias(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
