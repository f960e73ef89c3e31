//! nomic-bert (Nussbaum et al., "Nomic Embed: Training a Reproducible Long Context Text
//! Embedder", 2024; llama.cpp `src/models/bert.cpp`, the `LLM_ARCH_NOMIC_BERT` paths).
//!
//! BERT's post-norm encoder (token types, the embedding LayerNorm, LayerNorms with bias
//! after each residual, non-causal attention, no final norm) with three changes: no
//! absolute positions but RoPE with NeoX pairing (`rope.freq_base`, 1000 in
//! nomic-embed-text); q, k and v in one fused `attn_qkv` matrix without bias; and a
//! SwiGLU FFN (`down(silu(gate x) * up x)`, no biases, as llama.cpp builds it). The
//! embedding is the mean of the final rows unless the file names another pooling.

use super::bert::{encoder, post_norm_tensors, tiny_metadata};
use super::config::{ModelConfig, ModelError};
use super::{
    Activation, ArchDef, Attention, BlockTensor, FeedForward, LayerWeights, Pooling, TinySpec,
};
use crate::gguf::GgufHeader;
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "nomic-bert",
    configure,
    tensors,
    block,
    reference: crate::reference::nomic_bert::block,
    tiny,
    tiny_metadata,
};

/// BERT's encoder with NeoX RoPE, mean-pooled unless the file says; refuses a fused q/k/v
/// bias, which no released nomic-bert has and hearth would not apply.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    encoder(h, cfg, Pooling::Mean)?;
    cfg.rope_neox = true;
    if h.tensor("blk.0.attn_qkv.bias").is_some() {
        return Err(ModelError::BadTensor {
            name: "blk.0.attn_qkv.bias".into(),
            why: "a q/k/v bias in nomic-bert is not supported".into(),
        });
    }
    Ok(())
}

/// The fused q/k/v, the output projection (its bias where present), the post-norms, the
/// gated FFN.
fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, q, kv, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
    let [an_w, an_b, ln_w, ln_b] = post_norm_tensors(h);
    vec![
        BlockTensor::fused(
            "attn_qkv.weight",
            h,
            &[
                ("attn_q.weight", q),
                ("attn_k.weight", kv),
                ("attn_v.weight", kv),
            ],
        ),
        BlockTensor::matrix("attn_output.weight", q, h),
        BlockTensor {
            required: false,
            ..BlockTensor::vector("attn_output.bias", h)
        },
        an_w,
        an_b,
        BlockTensor::matrix("ffn_up.weight", h, ff),
        BlockTensor::matrix("ffn_gate.weight", h, ff),
        BlockTensor::matrix("ffn_down.weight", ff, h),
        ln_w,
        ln_b,
    ]
}

/// The attention of nomic-bert: the fused projections, the output bias where present.
pub(crate) fn attention<M, V>(
    l: &super::LayerTensors<M, V>,
) -> Result<Attention<'_, M, V>, ModelError> {
    Ok(Attention {
        out_bias: l.vec("attn_output.bias").ok(),
        ..Attention::projections(l)?
    })
}

/// `x = LayerNorm(x + attn(x))`, then `x = LayerNorm(x + swiglu(x))`.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.attention(&attention(w)?)?;
    b.residual_layer_norm(
        w.vec("attn_output_norm.weight")?,
        w.vec("attn_output_norm.bias")?,
    )?;
    b.ffn(&FeedForward::named(w, Activation::Silu)?)?;
    b.residual_layer_norm(
        w.vec("layer_output_norm.weight")?,
        w.vec("layer_output_norm.bias")?,
    )
}

/// BERT's tiny shape with RoPE base 1000, as nomic-embed-text.
fn tiny(s: &mut TinySpec) {
    super::bert::tiny(s);
    s.rope_base = 1000.0;
}
