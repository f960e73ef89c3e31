//! Llama (Touvron et al., "Llama 2", 2023; "The Llama 3 Herd of Models", 2024) and the
//! models that share its GGUF layout: TinyLlama, SmolLM, Mistral.
//!
//! The baseline every other architecture here is described against: pre-norm RMSNorm,
//! RoPE on adjacent dimension pairs (GGUF conversion permutes q/k rows so that pairing
//! holds), SwiGLU feed-forward (silu(gate) * up), grouped-query attention, and an output
//! head that is either its own `output.weight` or tied to the embedding. Llama 3.1+
//! files may carry `rope_freqs.weight`, per-frequency divisors the RoPE kernel applies.

use super::config::{ModelConfig, ModelError};
use crate::gguf::GgufHeader;

/// Llama is the default configuration; only checks remain.
pub(super) fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = false;
    Ok(())
}
