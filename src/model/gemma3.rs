//! Gemma 3 (Gemma Team, "Gemma 3 Technical Report", 2025; llama.cpp `src/models/gemma3.cpp`).
//!
//! What differs from Llama: the token embedding is multiplied by sqrt(hidden); q and k get
//! a per-head RMSNorm before RoPE; each sub-block is "sandwiched" (a norm after attention
//! and after the FFN, before the residual add); the FFN is GeGLU with the tanh GELU; RoPE
//! pairs dimensions NeoX-style. Five of every six layers attend through a sliding window
//! (512 for the 270M model) with RoPE base 10 000; every sixth layer (`il % 6 == 5`) is
//! global with the model's base (1 000 000) and optional linear scaling. The output head
//! is tied to the embedding. Norm weights in GGUF already include Gemma's `1 +`.

use super::config::{bad, ModelConfig, ModelError};
use super::Activation;
use crate::gguf::GgufHeader;

/// Applies Gemma 3's differences to the Llama defaults.
pub(super) fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.embed_scale = (cfg.hidden as f32).sqrt();
    cfg.act = Activation::GeluTanh;
    cfg.qk_norm = true;
    cfg.post_norms = true;
    // Local layers keep their own base and no scaling (llama.cpp's default 10 000).
    cfg.rope_base_local = h.get_f32("gemma3.rope.freq_base_swa")?.unwrap_or(10000.0);
    if let Some(w) = h
        .get_u32("gemma3.attention.sliding_window")?
        .filter(|w| *w > 0)
    {
        let pattern = h
            .get_u32("gemma3.attention.sliding_window_pattern")?
            .unwrap_or(6);
        if pattern == 0 {
            return Err(bad(
                "gemma3.attention.sliding_window_pattern",
                0,
                "must be at least 1",
            ));
        }
        cfg.sliding_window = Some(w as usize);
        cfg.sliding_pattern = pattern as usize;
    }
    Ok(())
}
