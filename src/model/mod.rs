//! Model architectures: configuration from GGUF metadata (one file per architecture for
//! what differs from Llama), the tensors each needs, and the weights on the GPU.

pub mod config;
mod gemma3;
mod llama;
mod qwen2;
mod qwen3;
pub mod weights;

pub use config::{Activation, Arch, ModelConfig, ModelError};
pub use weights::{LayerWeights, Weights};
