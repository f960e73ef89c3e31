//! Gemma 2 (Gemma Team, "Gemma 2: Improving Open Language Models at a Practical Size",
//! 2024; llama.cpp `src/models/gemma2.cpp`).
//!
//! Gemma 3's ancestor: the embedding times sqrt(hidden), sandwich norms around both
//! sub-blocks, GeGLU with the tanh GELU, NeoX RoPE and a tied head, but no q/k norms, one
//! RoPE base for every layer, and every other layer sliding (even layers attend a window,
//! odd ones everything). Attention scores and the final logits are soft-capped,
//! `c * tanh(x / c)` (`attn_logit_softcapping`, `final_logit_softcapping`). Queries are
//! scaled by 1/sqrt(head_dim), except in the 46-layer model (27B), which llama.cpp scales
//! by 1/sqrt(hidden / heads) (its `query_pre_attn_scalar`).

use super::blocks::sandwich_tensors;
use super::config::{ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights, TinySpec};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "gemma2",
    configure,
    tensors,
    block,
    reference: crate::reference::gemma2::block,
    tiny,
    tiny_metadata,
};

/// Applies Gemma 2's differences to the Llama defaults.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.embed_scale = (cfg.hidden as f32).sqrt();
    if let Some(w) = h
        .get_u32("gemma2.attention.sliding_window")?
        .filter(|w| *w > 0)
    {
        cfg.sliding_window = Some(w as usize);
        cfg.sliding_pattern = 2;
    }
    if cfg.n_layers == 46 {
        cfg.attn_scale = 1.0 / ((cfg.hidden / cfg.n_heads) as f32).sqrt();
    }
    Ok(())
}

/// Llama's tensors plus the two post-norms.
fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    sandwich_tensors(cfg, false)
}

/// `x += norm(attn(norm(x)))`, then `x += norm(ffn(norm(x)))` with GeGLU.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?)?;
    b.residual(Some(w.vec("post_attention_norm.weight")?))?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.ffn(&FeedForward::named(w, Activation::GeluTanh)?)?;
    b.residual(Some(w.vec("post_ffw_norm.weight")?))
}

/// Four layers alternating window 8 and global, a tied head, small caps that bite.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 4;
    s.sliding_window = Some(8);
    s.tied_output = true;
}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    if let Some(w) = s.sliding_window {
        m.push((
            "gemma2.attention.sliding_window".into(),
            Value::U32(w as u32),
        ));
    }
    m.push(("gemma2.attn_logit_softcapping".into(), Value::F32(2.0)));
    m.push(("gemma2.final_logit_softcapping".into(), Value::F32(3.0)));
}
