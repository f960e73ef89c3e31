//! Gemma 3 (Gemma Team, "Gemma 3 Technical Report", 2025; llama.cpp `src/models/gemma3.cpp`).
//!
//! What differs from Llama: the token embedding is multiplied by sqrt(hidden); q and k get
//! a per-head RMSNorm before RoPE; each sub-block is "sandwiched" (a norm after attention
//! and after the FFN, before the residual add); the FFN is GeGLU with the tanh GELU; RoPE
//! pairs dimensions NeoX-style. Five of every six layers attend through a sliding window
//! (512 for the 270M model) with RoPE base 10 000; every sixth layer (`il % 6 == 5`) is
//! global with the model's base (1 000 000) and optional linear scaling. The output head
//! is tied to the embedding. Norm weights in GGUF already include Gemma's `1 +`.

use super::blocks::sandwich_tensors;
use super::config::{bad, ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights, TinySpec};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "gemma3",
    configure,
    tensors,
    block,
    reference: crate::reference::gemma3::block,
    tiny,
    tiny_metadata,
};

/// Applies Gemma 3's differences to the Llama defaults.
pub(super) fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.embed_scale = (cfg.hidden as f32).sqrt();
    // Local layers keep their own base and no scaling (llama.cpp's default 10 000).
    let a = cfg.arch.name();
    let key = |k: &str| format!("{a}.{k}");
    cfg.rope_base_local = h.get_f32(&key("rope.freq_base_swa"))?.unwrap_or(10000.0);
    if let Some(w) = h
        .get_u32(&key("attention.sliding_window"))?
        .filter(|w| *w > 0)
    {
        let pattern = h
            .get_u32(&key("attention.sliding_window_pattern"))?
            .unwrap_or(6);
        if pattern == 0 {
            return Err(bad(
                &key("attention.sliding_window_pattern"),
                0,
                "must be at least 1",
            ));
        }
        cfg.sliding_window = Some(w as usize);
        cfg.sliding_pattern = pattern as usize;
    }
    Ok(())
}

/// Llama's tensors plus the q/k norms and the two post-norms.
pub(super) fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    sandwich_tensors(cfg, true)
}

/// `x += norm(attn(norm(x)))`, then `x += norm(ffn(norm(x)))` with GeGLU.
pub(super) fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?.with_qk_norm(w)?)?;
    b.residual(Some(w.vec("post_attention_norm.weight")?))?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.ffn(&FeedForward::named(w, Activation::GeluTanh)?)?;
    b.residual(Some(w.vec("post_ffw_norm.weight")?))
}

/// Six layers with a window of 8 (five sliding, one global), a tied head, base 10^6.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 6;
    s.sliding_window = Some(8);
    s.tied_output = true;
    s.rope_base = 1e6;
}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    if let Some(w) = s.sliding_window {
        m.push((
            "gemma3.attention.sliding_window".into(),
            Value::U32(w as u32),
        ));
    }
}
