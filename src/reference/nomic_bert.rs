//! nomic-bert's block on the CPU (GPU twin: `src/model/nomic_bert.rs`): BERT's post-norm
//! block with fused q/k/v, NeoX RoPE and a SwiGLU FFN.

use super::{Block, RefLayer};
use crate::model::{Activation, FeedForward, ModelError};

/// `x = LayerNorm(x + attn(x))`, then `x = LayerNorm(x + swiglu(x))`.
pub(crate) fn block(b: &mut Block, w: &RefLayer) -> Result<(), ModelError> {
    b.attention(&crate::model::nomic_bert_attention(w)?)?;
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
