//! Qwen 3 (Qwen Team, "Qwen3 Technical Report", 2025).
//!
//! Qwen 2 without the q/k/v biases and with a per-head RMSNorm on q and k before RoPE
//! (as Gemma 3 has), NeoX pairing. The head width is explicit (`attention.key_length`)
//! and need not equal hidden / heads.

use super::config::{ModelConfig, ModelError};
use crate::gguf::GgufHeader;

/// Applies Qwen 3's differences to the Llama defaults.
pub(super) fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.qk_norm = true;
    Ok(())
}
