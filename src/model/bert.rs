//! BERT (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding", 2018; llama.cpp `src/models/bert.cpp`): the encoder of
//! sentence-embedding models such as all-MiniLM, bge and e5.
//!
//! What differs from Llama: the input is the token's embedding plus an absolute position
//! embedding (`position_embd`, one learned row per position, no RoPE) plus token type 0's
//! row (`token_types`, "sentence A"), through a LayerNorm with bias (`token_embd_norm`).
//! Blocks are post-norm: `x = LayerNorm(x + attn(x))`, then `x = LayerNorm(x + ffn(x))`,
//! LayerNorms with bias (epsilon `attention.layer_norm_epsilon`), biased projections
//! everywhere, and an ungated FFN with the tanh GELU (ggml's `ggml_gelu`). Attention is
//! not causal; there is no final norm and no head: the embedding is the [CLS] row (or the
//! file's `pooling_type`).

use super::config::{bad, ModelConfig, ModelError};
use super::{
    Activation, ArchDef, Attention, BlockTensor, LayerTensors, LayerWeights, Pooling,
    SeqFeedForward, TinySpec,
};
use crate::gguf::{GgufHeader, Value};
use crate::graph::Block;

pub(crate) const DEF: ArchDef = ArchDef {
    name: "bert",
    configure,
    tensors,
    block,
    reference: crate::reference::bert::block,
    tiny,
    tiny_metadata,
};

/// What BERT-style encoders share (BERT, nomic-bert): the LayerNorm epsilon, non-causal
/// attention, token types and the embedding norm, no final norm, the given pooling when
/// the file names none.
pub(super) fn encoder(
    h: &GgufHeader,
    cfg: &mut ModelConfig,
    pooling: Pooling,
) -> Result<(), ModelError> {
    let a = cfg.arch.name();
    let eps_key = format!("{a}.attention.layer_norm_epsilon");
    cfg.rms_eps = h.get_f32(&eps_key)?.ok_or_else(|| {
        bad(
            &eps_key,
            "missing",
            "BERT-style models need their LayerNorm epsilon",
        )
    })?;
    let types_key = "tokenizer.ggml.token_type_count";
    cfg.token_types = match h.get_u32(types_key)? {
        Some(n) if (1..=1024).contains(&n) => n as usize,
        other => {
            return Err(bad(
                types_key,
                other.map_or("missing".into(), |n| n.to_string()),
                "BERT-style models need 1..=1024 token types",
            ))
        }
    };
    cfg.causal = false;
    cfg.embd_norm = true;
    cfg.final_norm = false;
    cfg.sliding_window = None;
    cfg.pooling = cfg.pooling.or(Some(pooling));
    Ok(())
}

/// Absolute positions instead of RoPE, [CLS] pooling unless the file says.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    encoder(h, cfg, Pooling::Cls)?;
    cfg.pos_embd = true;
    cfg.rope_dims = 0;
    Ok(())
}

/// A tensor llama.cpp loads when present (BERT's biases).
fn optional(t: BlockTensor) -> BlockTensor {
    BlockTensor {
        required: false,
        ..t
    }
}

/// The two post-norms with their biases.
pub(super) fn post_norm_tensors(h: usize) -> [BlockTensor; 4] {
    [
        BlockTensor::vector("attn_output_norm.weight", h),
        BlockTensor::vector("attn_output_norm.bias", h),
        BlockTensor::vector("layer_output_norm.weight", h),
        BlockTensor::vector("layer_output_norm.bias", h),
    ]
}

/// Separate q/k/v and the output projection with their biases, the two post-norms, the
/// ungated FFN with its biases.
fn tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, q, kv, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
    let [an_w, an_b, ln_w, ln_b] = post_norm_tensors(h);
    vec![
        BlockTensor::matrix("attn_q.weight", h, q),
        optional(BlockTensor::vector("attn_q.bias", q)),
        BlockTensor::matrix("attn_k.weight", h, kv),
        optional(BlockTensor::vector("attn_k.bias", kv)),
        BlockTensor::matrix("attn_v.weight", h, kv),
        optional(BlockTensor::vector("attn_v.bias", kv)),
        BlockTensor::matrix("attn_output.weight", q, h),
        optional(BlockTensor::vector("attn_output.bias", h)),
        an_w,
        an_b,
        BlockTensor::matrix("ffn_up.weight", h, ff),
        optional(BlockTensor::vector("ffn_up.bias", ff)),
        BlockTensor::matrix("ffn_down.weight", ff, h),
        optional(BlockTensor::vector("ffn_down.bias", h)),
        ln_w,
        ln_b,
    ]
}

/// The attention's projections with whichever biases the block has (q/k/v as a set).
pub(crate) fn attention<M, V>(l: &LayerTensors<M, V>) -> Result<Attention<'_, M, V>, ModelError> {
    Ok(Attention {
        bias: l.vecs(["attn_q.bias", "attn_k.bias", "attn_v.bias"]).ok(),
        out_bias: l.vec("attn_output.bias").ok(),
        ..Attention::projections(l)?
    })
}

/// `x = LayerNorm(x + attn(x))`, then `x = LayerNorm(x + ffn(x))`; each LayerNorm also
/// leaves its result in `h`, the next sub-block's input.
fn block(b: &mut Block, w: &LayerWeights) -> Result<(), ModelError> {
    b.attention(&attention(w)?)?;
    b.residual_layer_norm(
        w.vec("attn_output_norm.weight")?,
        w.vec("attn_output_norm.bias")?,
    )?;
    b.ffn_seq(&SeqFeedForward::named(w, Activation::GeluTanh)?)?;
    b.residual_layer_norm(
        w.vec("layer_output_norm.weight")?,
        w.vec("layer_output_norm.bias")?,
    )
}

/// Multi-head attention (no GQA, as BERT), a tied head (there is none), 64 positions.
pub(super) fn tiny(s: &mut TinySpec) {
    s.n_kv_heads = s.n_heads;
    s.tied_output = true;
    s.context = 64;
}

/// The LayerNorm epsilon, the token types and non-causal attention, as the converter
/// writes them.
pub(super) fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    let a = s.arch.name();
    m.push((
        format!("{a}.attention.layer_norm_epsilon"),
        Value::F32(1e-12),
    ));
    m.push((format!("{a}.attention.causal"), Value::Bool(false)));
    m.push(("tokenizer.ggml.token_type_count".into(), Value::U32(2)));
}
