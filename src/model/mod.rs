//! Model architectures. Each architecture is one file here that owns everything about it:
//! its hyperparameters from GGUF metadata, the tensors of one block, the function that
//! builds one block on the GPU from the shared builders of [`crate::graph::Block`], and
//! the shape of its tiny random test model. Its CPU reference is the file of the same
//! name in `src/reference/`, built from the same kind of shared helpers, so the two read
//! side by side.
//!
//! # Adding an architecture
//! 1. `src/model/<arch>.rs`: a module doc naming the paper and what differs from Llama,
//!    then `configure` (read the `<arch>.*` keys that differ, on top of the Llama defaults
//!    `ModelConfig::from_gguf` has filled), `tensors` (one block's tensors:
//!    [`blocks::attention_tensors`] and [`blocks::ffn_tensors`] cover the usual ones),
//!    `block` (the GPU block, e.g. `pre_norm`, `attention`, `residual`, `pre_norm`, `ffn`,
//!    `residual`), and `tiny` / `tiny_metadata` (defaults and extra keys of the tiny
//!    model). Finish with `pub(crate) const DEF: ArchDef = ArchDef { .. }`, or
//!    `ArchDef::new(..)` when the tiny model takes the defaults.
//! 2. `src/reference/<arch>.rs`: the CPU `block` with the reference's helpers.
//! 3. Register both: a variant of [`Arch`] with its line in `Arch::ALL` and `Arch::def`
//!    below, and `pub(crate) mod <arch>;` in `src/reference/mod.rs`.
//! 4. Tests need no change to cover it: `Arch::ALL` drives the tiny-model and tensor-check
//!    test here, the reference tests (`tests/reference.rs`: prefill equals decode, f16
//!    cache) and the GPU-against-reference check (`tests/forward.rs`). Add a named test
//!    there for what is special about the architecture, and llama.cpp goldens when it
//!    has weights (see `scripts/gen-llama-goldens.py`).
//!
//! Nothing else changes: the loader uploads what `tensors` lists, the plan calls `block`
//! per layer, the reference calls its `block`, and `TinySpec` writes what `tensors`
//! lists.

mod bert;
pub mod blocks;
pub mod config;
mod gemma2;
mod gemma3;
mod gemma_embedding;
mod gpt_oss;
mod llama;
mod mistral3;
mod nomic_bert;
mod phi3;
mod qwen2;
mod qwen2moe;
mod qwen3;
mod qwen3moe;
pub mod tensors;
pub mod tiny;
pub mod weights;

pub(crate) use bert::attention as bert_attention;
pub use blocks::{Attention, FeedForward, Moe, SeqFeedForward};
pub use config::{file_type_name, Activation, ModelConfig, ModelError, Pooling};
pub(crate) use nomic_bert::attention as nomic_bert_attention;
pub use tensors::{check_tensors, expected_tensors, BlockTensor, LayerTensors, TensorSpec};
pub use tiny::{TinySpec, TinyTensor};
pub use weights::{LayerWeights, Weights};

use crate::gguf::{GgufHeader, Value};

/// What one architecture provides; see the module doc for the recipe.
pub struct ArchDef {
    /// The GGUF `general.architecture` string.
    pub name: &'static str,
    /// Applies the architecture's differences to the Llama defaults read from `h`.
    pub configure: fn(h: &GgufHeader, cfg: &mut ModelConfig) -> Result<(), ModelError>,
    /// The tensors of one block (names without the `blk.N.` prefix).
    pub tensors: fn(cfg: &ModelConfig) -> Vec<BlockTensor>,
    /// Builds one block of the GPU plan.
    pub block: fn(b: &mut crate::graph::Block, w: &LayerWeights) -> Result<(), ModelError>,
    /// Runs one block of the CPU reference.
    pub reference: fn(
        b: &mut crate::reference::Block,
        w: &crate::reference::RefLayer,
    ) -> Result<(), ModelError>,
    /// Changes the tiny test model's defaults (layers, window, tied head...).
    pub tiny: fn(spec: &mut TinySpec),
    /// Metadata keys of the tiny model beyond the common ones.
    pub tiny_metadata: fn(spec: &TinySpec, m: &mut Vec<(String, Value)>),
}

type Configure = fn(&GgufHeader, &mut ModelConfig) -> Result<(), ModelError>;
type GpuBlock = fn(&mut crate::graph::Block, &LayerWeights) -> Result<(), ModelError>;
type RefBlock =
    fn(&mut crate::reference::Block, &crate::reference::RefLayer) -> Result<(), ModelError>;

impl ArchDef {
    /// An architecture whose tiny test model takes the defaults.
    pub const fn new(
        name: &'static str,
        configure: Configure,
        tensors: fn(&ModelConfig) -> Vec<BlockTensor>,
        (block, reference): (GpuBlock, RefBlock),
    ) -> Self {
        Self {
            name,
            configure,
            tensors,
            block,
            reference,
            tiny: |_| {},
            tiny_metadata: |_, _| {},
        }
    }
}

/// The architectures hearth runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// BERT: a post-norm encoder with absolute positions, token types and biases.
    Bert,
    /// Gemma 2: Gemma 3 without q/k norms, alternating windows, soft-capped scores and
    /// logits.
    Gemma2,
    /// gpt-oss: a mixture of experts with attention sinks and biases, MXFP4 experts.
    GptOss,
    /// Gemma 3: scaled embedding, q/k norms, sandwich norms, sliding-window layers.
    Gemma3,
    /// EmbeddingGemma: Gemma 3's blocks as a non-causal encoder, mean-pooled.
    GemmaEmbedding,
    /// Llama 2/3 and relatives: RMSNorm, normal RoPE, SwiGLU, GQA.
    Llama,
    /// Mistral 3 (Ministral 3): Llama with YaRN and an attention temperature.
    Mistral3,
    /// nomic-bert: BERT's encoder with RoPE, fused q/k/v and SwiGLU.
    NomicBert,
    /// Phi-3 / Phi-4-mini: fused q/k/v and gate/up matrices, LongRoPE.
    Phi3,
    /// Qwen 2/2.5: Llama with q/k/v biases and NeoX RoPE.
    Qwen2,
    /// Qwen2-MoE: Qwen 2's attention with experts and a shared expert.
    Qwen2Moe,
    /// Qwen 3: Qwen 2 without biases, with per-head q/k RMSNorm.
    Qwen3,
    /// Qwen3-MoE: Qwen 3's attention with a mixture-of-experts FFN.
    Qwen3Moe,
}

impl Arch {
    /// Every architecture, in the order errors list them.
    pub const ALL: [Arch; 13] = [
        Arch::Bert,
        Arch::Gemma2,
        Arch::Gemma3,
        Arch::GemmaEmbedding,
        Arch::GptOss,
        Arch::Llama,
        Arch::Mistral3,
        Arch::NomicBert,
        Arch::Phi3,
        Arch::Qwen2,
        Arch::Qwen2Moe,
        Arch::Qwen3,
        Arch::Qwen3Moe,
    ];

    /// The architecture's definition.
    pub fn def(self) -> &'static ArchDef {
        match self {
            Arch::Bert => &bert::DEF,
            Arch::Gemma2 => &gemma2::DEF,
            Arch::Gemma3 => &gemma3::DEF,
            Arch::GemmaEmbedding => &gemma_embedding::DEF,
            Arch::GptOss => &gpt_oss::DEF,
            Arch::Llama => &llama::DEF,
            Arch::Mistral3 => &mistral3::DEF,
            Arch::NomicBert => &nomic_bert::DEF,
            Arch::Phi3 => &phi3::DEF,
            Arch::Qwen2 => &qwen2::DEF,
            Arch::Qwen2Moe => &qwen2moe::DEF,
            Arch::Qwen3 => &qwen3::DEF,
            Arch::Qwen3Moe => &qwen3moe::DEF,
        }
    }

    /// Whether it generates text (a causal decoder); encoders only embed.
    pub fn causal(self) -> bool {
        !matches!(self, Arch::Bert | Arch::GemmaEmbedding | Arch::NomicBert)
    }

    /// The GGUF `general.architecture` string.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The architecture named `name` in GGUF.
    pub fn from_name(name: &str) -> Option<Arch> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}
