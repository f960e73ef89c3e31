//! Qwen2-MoE's block on the CPU (GPU twin: `src/model/qwen2moe.rs`): attention with
//! q/k/v biases, then the mixture-of-experts FFN with its shared expert.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, ModelError, Moe};

/// `x += attn(norm(x))` with biases, then `x += moe(norm(x))` with the shared expert.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.pre_norm(w.vec("attn_norm.weight")?)?;
    b.attention(&Attention::projections(w)?.with_bias(w)?)?;
    b.residual(None)?;
    b.pre_norm(w.vec("ffn_norm.weight")?)?;
    b.moe(&Moe::named(w, Activation::Silu)?.with_shared_expert(w)?)?;
    b.residual(None)
}
