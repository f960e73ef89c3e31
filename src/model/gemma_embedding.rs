//! EmbeddingGemma (Google, "EmbeddingGemma: Powerful and Lightweight Text
//! Representations", 2025; llama.cpp `src/models/gemma-embedding.cpp`).
//!
//! Gemma 3's blocks (scaled embedding, q/k norms, sandwich norms, GeGLU, NeoX RoPE with a
//! local base on sliding layers), run as an encoder: attention is not causal, so the
//! whole input is one step, and sliding layers see the positions within half the window
//! on either side (llama.cpp's symmetric window). The embedding is the mean of the final
//! normed states (`pooling_type`), then, in files converted with the sentence-transformers
//! dense modules, `dense_3(dense_2(pooled))` (both without bias).

use super::config::{ModelConfig, ModelError};
use super::{gemma3, ArchDef, TinySpec};
use crate::gguf::{GgufHeader, Value};

pub(crate) const DEF: ArchDef = ArchDef {
    name: "gemma-embedding",
    configure,
    tensors: gemma3::tensors,
    block: gemma3::block,
    reference: crate::reference::gemma3::block,
    tiny,
    tiny_metadata,
};

/// Gemma 3's configuration, non-causal, pooled by the mean unless the file says.
fn configure(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError> {
    gemma3::configure(h, cfg)?;
    cfg.causal = false;
    cfg.pooling = cfg.pooling.or(Some(super::Pooling::Mean));
    Ok(())
}

/// Three layers, a window of 8 on two of them, a tied head.
fn tiny(s: &mut TinySpec) {
    s.n_layers = 3;
    s.sliding_window = Some(8);
    s.tied_output = true;
    s.rope_base = 1e6;
}

fn tiny_metadata(s: &TinySpec, m: &mut Vec<(String, Value)>) {
    if let Some(w) = s.sliding_window {
        m.push((
            "gemma-embedding.attention.sliding_window".into(),
            Value::U32(w as u32),
        ));
        m.push((
            "gemma-embedding.attention.sliding_window_pattern".into(),
            Value::U32(2),
        ));
    }
}
