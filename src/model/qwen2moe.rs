//! Qwen2-MoE (Qwen1.5-MoE; llama.cpp `src/models/qwen2moe.cpp`): Qwen 2's attention
//! (q/k/v biases, NeoX RoPE) with a mixture-of-experts FFN whose router weights are the
//! plain softmax probabilities of the chosen experts (not renormalized), plus a shared
//! expert every token uses, weighed by the sigmoid of its own one-row gate
//! (`ffn_gate_inp_shexp`), of width `expert_shared_feed_forward_length`.

use super::blocks::{attention_tensors, moe_tensors, qkv_bias_tensors, shared_expert_tensors};
use super::config::{bad, ModelConfig, ModelError};
use super::{Activation, ArchDef, Attention, BlockTensor, LayerWeights, Moe, TinySpec};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;
use crate::kernels::Gating;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "qwen2moe",
    configure,
    tensors,
    block,
    reference: crate::reference::qwen2moe::block,
    tiny,
    tiny_metadata,
};

/// NeoX RoPE, softmax gating without renormalization; the experts are required.
fn configure(_h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    cfg.rope_neox = true;
    cfg.gating = Gating::Softmax;
    if !cfg.is_moe() {
        return Err(bad(
            "qwen2moe.expert_count",
            0,
            "a mixture of experts needs experts",
        ));
    }
    Ok(())
}

fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let mut v = attention_tensors(cfg, &qkv_bias_tensors(cfg));
    v.extend(moe_tensors(cfg, "ffn_norm.weight"));
    v.extend(shared_expert_tensors(cfg));
    v
}

/// `x += attn(norm(x))` with biases, then `x += moe(norm(x))` with the shared expert.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?.with_bias(w)?)?;
    b.residual(None)?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.moe(&Moe::named(w, Activation::Silu)?.with_shared_expert(w)?)?;
    b.residual(None)
}

/// Eight experts, two per token, and a shared expert, each as wide as the dense FFN.
fn tiny(_s: &mut TinySpec) {}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    let u = |k: &str, v: usize| (format!("qwen2moe.{k}"), Value::U32(v as u32));
    m.push(u("expert_count", 8));
    m.push(u("expert_used_count", 2));
    m.push(u("expert_feed_forward_length", s.ffn));
    m.push(u("expert_shared_feed_forward_length", s.ffn));
}
