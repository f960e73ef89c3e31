//! Llama's block on the CPU (GPU twin: `src/model/llama.rs`): pre-norm attention and a
//! SwiGLU feed-forward, each added to the residual stream.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, FeedForward, ModelError};

/// `x += attn(norm(x))`, then `x += ffn(norm(x))` with SwiGLU.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
