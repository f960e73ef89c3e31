//! Qwen 2 / 2.5 (Qwen Team, "Qwen2 Technical Report", 2024).
//!
//! Llama with biases on the q, k and v projections and NeoX-style RoPE pairing
//! (dimension i with i + d/2). Large rope bases (1 000 000) are common.

use super::config::{ModelConfig, ModelError};
use crate::gguf::GgufHeader;

/// Applies Qwen 2's differences to the Llama defaults.
pub(super) fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.qkv_bias = true;
    Ok(())
}
