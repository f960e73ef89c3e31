//! Qwen 3's block on the CPU (GPU twin: `src/model/qwen3.rs`): Llama's, with per-head
//! q/k norms before RoPE.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, FeedForward, ModelError};

/// Llama's block with per-head q/k norms.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm_block(
        w,
        &Attention::projections(w)?.with_qk_norm(w)?,
        &FeedForward::named(w, Activation::Silu)?,
    )
}
