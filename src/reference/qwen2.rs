//! Qwen 2's block on the CPU (GPU twin: `src/model/qwen2.rs`): Llama's, with biased q/k/v
//! projections.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, FeedForward, ModelError};

/// Llama's block with biased q/k/v projections.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?.with_bias(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
