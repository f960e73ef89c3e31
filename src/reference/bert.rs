//! BERT's block on the CPU (GPU twin: `src/model/bert.rs`): post-norm, biased
//! projections, the ungated GELU FFN.

use super::{Block, RefLayer};
use crate::model::{Activation, ModelError, SeqFeedForward};

/// `x = LayerNorm(x + attn(x))`, then `x = LayerNorm(x + ffn(x))`.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.attention(&crate::model::bert_attention(w)?)?;
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
