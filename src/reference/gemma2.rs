//! Gemma 2's block on the CPU (GPU twin: `src/model/gemma2.rs`): attention (its scores
//! soft-capped through the spec) and GeGLU feed-forward, each sub-block sandwiched
//! between a pre-norm and a post-norm before its residual add.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, FeedForward, ModelError};

/// `x += norm(attn(norm(x)))`, then `x += norm(ffn(norm(x)))` with GeGLU.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?)?;
    b.residual(Some(w.vec("post_attention_norm.weight")?))?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.ffn(&FeedForward::named(w, Activation::GeluTanh)?)?;
    b.residual(Some(w.vec("post_ffw_norm.weight")?))
}
