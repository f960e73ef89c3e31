//! Llama (Touvron et al., "Llama 2", 2023; "The Llama 3 Herd of Models", 2024) and the
//! models that share its GGUF layout: TinyLlama, SmolLM, Mistral.
//!
//! The baseline every other architecture here is described against: pre-norm RMSNorm,
//! RoPE on adjacent dimension pairs (GGUF conversion permutes q/k rows so that pairing
//! holds), SwiGLU feed-forward (silu(gate) * up), grouped-query attention, and an output
//! head that is either its own `output.weight` or tied to the embedding. Llama 3.1+
//! files may carry `rope_freqs.weight`, per-frequency divisors the RoPE kernel applies.

use super::blocks::{attention_tensors, ffn_tensors};
use super::config::{ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights};
use crate::gguf::GgufHeader;
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef::new(
    "llama",
    configure,
    tensors,
    (block, crate::reference::llama::block),
);

/// Llama is the default configuration.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = false;
    Ok(())
}

pub(super) fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let mut v = attention_tensors(cfg, &[]);
    v.extend(ffn_tensors(cfg));
    v
}

/// `x += attn(norm(x))`, then `x += ffn(norm(x))` with SwiGLU.
pub(super) fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
