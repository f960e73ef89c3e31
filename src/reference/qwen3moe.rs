//! Qwen3-MoE's block on the CPU (GPU twin: `src/model/qwen3moe.rs`): attention with
//! per-head q/k norms, then the mixture-of-experts FFN.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, ModelError, Moe};

/// `x += attn(norm(x))` with q/k norms, then `x += moe(norm(x))`.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?.with_qk_norm(w)?)?;
    b.residual(None)?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.moe(&Moe::named(w, Activation::Silu)?)?;
    b.residual(None)
}
