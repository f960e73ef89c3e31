//! gpt-oss (OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card", 2025; llama.cpp
//! `src/models/openai-moe.cpp`, architecture name `gpt-oss`).
//!
//! A mixture of experts with attention sinks: q, k, v and the output projection carry
//! biases; each head has a sink, a logit that joins its softmax's denominator with no
//! value; even layers attend a sliding window (`attention.sliding_window`), odd ones
//! everything; RoPE is NeoX-style with YaRN (read for every architecture). The FFN's
//! pre-norm is `post_attention_norm`; its router has a bias and picks the
//! `expert_used_count` largest logits, weighted by a softmax over those alone; each expert
//! has biases on gate, up and down and the clamped SwiGLU
//! `min(g, 7) * sigmoid(1.702 min(g, 7)) * (clamp(u, -7, 7) + 1)`. The released weights
//! store the experts in MXFP4.

use super::blocks::{attention_tensors, moe_tensors, qkv_bias_tensors};
use super::config::{bad, ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, LayerWeights, Moe, TinySpec};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;
use crate::kernels::Gating;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "gpt-oss",
    configure,
    tensors,
    block,
    reference: crate::reference::gpt_oss::block,
    tiny,
    tiny_metadata,
};

/// NeoX RoPE, alternating windows, top-k-then-softmax gating; the experts are required.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.gating = Gating::TopKSoftmax;
    if !cfg.is_moe() {
        return Err(bad(
            "gpt-oss.expert_count",
            0,
            "a mixture of experts needs experts",
        ));
    }
    if let Some(w) = h
        .get_u32("gpt-oss.attention.sliding_window")?
        .filter(|w| *w > 0)
    {
        cfg.sliding_window = Some(w as usize);
        cfg.sliding_pattern = 2;
    }
    if let Some(b) = h.get_f32("gpt-oss.rope.freq_base_swa")? {
        cfg.rope_base_local = b;
    }
    Ok(())
}

fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, n, eff) = (cfg.hidden, cfg.n_expert, cfg.expert_ffn);
    let mut v = attention_tensors(cfg, &qkv_bias_tensors(cfg));
    v.extend([
        BlockTensor::vector("attn_output.bias", h),
        BlockTensor::vector("attn_sinks.weight", cfg.n_heads),
    ]);
    v.extend(moe_tensors(cfg, "post_attention_norm.weight"));
    v.extend([
        BlockTensor::vector("ffn_gate_inp.bias", n),
        BlockTensor::vectors("ffn_gate_exps.bias", eff, n),
        BlockTensor::vectors("ffn_up_exps.bias", eff, n),
        BlockTensor::vectors("ffn_down_exps.bias", h, n),
    ]);
    v
}

/// `x += attn(norm(x))` with biases and sinks, then `x += moe(post_attention_norm(x))`.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    let attn = Attention::projections(w)?
        .with_bias(w)?
        .with_out_bias_and_sinks(w)?;
    b.attention(&attn)?;
    b.residual(None)?;
    b.pre_norm(w.vec("post_attention_norm.weight")?)?;
    b.moe(&Moe::named(w, Activation::SwigluOai)?.with_biases(w)?)?;
    b.residual(None)
}

/// Four layers alternating a window of 8 and global, YaRN over 16 original positions.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 4;
    s.sliding_window = Some(8);
}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    let u = |k: &str, v: u32| (format!("gpt-oss.{k}"), Value::U32(v));
    m.push(u("expert_count", 8));
    m.push(u("expert_used_count", 2));
    m.push(u("expert_feed_forward_length", s.ffn as u32));
    if let Some(w) = s.sliding_window {
        m.push(u("attention.sliding_window", w as u32));
    }
    m.push((
        "gpt-oss.rope.scaling.type".into(),
        Value::String("yarn".into()),
    ));
    m.push(("gpt-oss.rope.scaling.factor".into(), Value::F32(16.0)));
    m.push(u("rope.scaling.original_context_length", 16));
}
