//! gpt-oss's block on the CPU (GPU twin: `src/model/gpt_oss.rs`): attention with biases
//! and sinks, then the mixture-of-experts FFN with biases and the clamped SwiGLU.

use super::{Block, RefLayer};
use crate::model::{Activation, Attention, ModelError, Moe};

/// `x += attn(norm(x))` with biases and sinks, then `x += moe(post_attention_norm(x))`.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
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
