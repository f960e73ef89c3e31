//! Embeddings: a text through the model's tokenizer (BOS, or BERT's [CLS] and [SEP], as
//! llama.cpp adds them), the model's blocks, the final norm and pooling on the GPU
//! (`Model::embed`), then L2 normalization and optional truncation to fewer dimensions
//! (as OpenAI's `dimensions`: truncate, then normalize again). A decoder model embeds
//! with the pooling its GGUF names (`{arch}.pooling_type`), else by the mean, as
//! llama.cpp and ollama do; an encoder takes the whole input in one step.

use super::EngineError;
use crate::graph::Model;
use crate::model::{ModelError, Pooling};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

/// How to embed.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Cut inputs longer than the model takes (else they are an error).
    pub truncate: bool,
    /// L2-normalize each vector (llama.cpp's `embd_normalize = 2`, the default of
    /// `llama-embedding`, its server and ollama).
    pub normalize: bool,
    /// Keep only the first `n` dimensions (normalized again when `normalize`).
    pub dimensions: Option<usize>,
    /// Override the model's pooling.
    pub pooling: Option<Pooling>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            truncate: true,
            normalize: true,
            dimensions: None,
            pooling: None,
        }
    }
}

/// The vectors of a batch of inputs and the tokens they took.
#[derive(Clone, Debug, Default)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs together (after truncation).
    pub prompt_tokens: usize,
}

/// A model session that embeds: its own KV cache and plans over the engine's weights.
pub struct Embedder {
    model: Model,
    tokenizer: Arc<Tokenizer>,
}

impl Embedder {
    pub(super) fn new(model: Model, tokenizer: Arc<Tokenizer>) -> Self {
        Self { model, tokenizer }
    }

    /// The most tokens one input may have: the context, and for a non-causal model (one
    /// step per input) also the batch.
    pub fn max_tokens(&self) -> usize {
        let cap = self.model.capacity();
        if self.model.cfg.causal {
            cap
        } else {
            cap.min(self.model.batch())
        }
    }

    /// Width of the vectors before any `dimensions` cut.
    pub fn width(&self) -> usize {
        self.model.embedding_width()
    }

    /// The pooling used when the options name none.
    pub fn pooling(&self) -> Pooling {
        self.model.cfg.pooling.unwrap_or(Pooling::Mean)
    }

    /// The input's tokens as llama.cpp's embedding tools feed them (special tokens
    /// added and parsed), cut to `max_tokens` when `truncate` (keeping a closing
    /// [SEP] / EOS the tokenizer adds), else refused when longer.
    pub fn tokenize(&self, text: &str, truncate: bool) -> Result<Vec<u32>, EngineError> {
        let mut ids = self.tokenizer.encode(text, true, true)?;
        let max = self.max_tokens();
        if ids.len() > max {
            if !truncate {
                return Err(EngineError::ContextOverflow {
                    prompt: ids.len(),
                    capacity: max,
                });
            }
            let closing = self.closing_token(&ids);
            ids.truncate(max);
            if let (Some(c), Some(last)) = (closing, ids.last_mut()) {
                *last = c;
            }
        }
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        Ok(ids)
    }

    /// The special token the tokenizer appends to every input, if any.
    fn closing_token(&self, ids: &[u32]) -> Option<u32> {
        let empty = self.tokenizer.encode("", true, false).ok()?;
        let bos = usize::from(self.tokenizer.add_bos() && self.tokenizer.bos().is_some());
        (empty.len() > bos).then(|| ids.last().copied()).flatten()
    }

    /// The embedding of token ids (checked against the vocabulary and `max_tokens`).
    pub async fn embed_tokens(
        &mut self,
        ids: &[u32],
        opts: &EmbedOptions,
    ) -> Result<Vec<f32>, EngineError> {
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let max = self.max_tokens();
        if ids.len() > max {
            return Err(EngineError::ContextOverflow {
                prompt: ids.len(),
                capacity: max,
            });
        }
        let pooling = opts.pooling.unwrap_or_else(|| self.pooling());
        let v = self.model.embed(ids, pooling).await?;
        finish(v, opts)
    }

    /// The embeddings of `texts`, one vector each.
    pub async fn embed(
        &mut self,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Result<Embeddings, EngineError> {
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t, opts.truncate))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_all(&ids, opts).await
    }

    /// The embeddings of several token-id inputs.
    pub async fn embed_all(
        &mut self,
        inputs: &[Vec<u32>],
        opts: &EmbedOptions,
    ) -> Result<Embeddings, EngineError> {
        check_dimensions(opts.dimensions, self.width())?;
        let mut out = Embeddings::default();
        for ids in inputs {
            out.vectors.push(self.embed_tokens(ids, opts).await?);
            out.prompt_tokens += ids.len();
        }
        Ok(out)
    }
}

/// Refuses a `dimensions` of 0 or above the model's width.
pub fn check_dimensions(d: Option<usize>, width: usize) -> Result<(), EngineError> {
    match d {
        Some(d) if d == 0 || d > width => Err(ModelError::Input(format!(
            "dimensions must be 1..={width} for this model (got {d})"
        ))
        .into()),
        _ => Ok(()),
    }
}

/// Cuts to `dimensions` and normalizes as the options say.
fn finish(mut v: Vec<f32>, opts: &EmbedOptions) -> Result<Vec<f32>, EngineError> {
    check_dimensions(opts.dimensions, v.len())?;
    if let Some(d) = opts.dimensions {
        v.truncate(d);
    }
    if opts.normalize {
        l2_normalize(&mut v);
    }
    Ok(v)
}

/// Scales `v` to unit Euclidean length, as llama.cpp's `common_embd_normalize(.., 2)`
/// (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
    let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    for x in v {
        *x = (*x as f64 * inv) as f32;
    }
}
