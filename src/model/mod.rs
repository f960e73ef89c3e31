//! Model architectures: configuration from GGUF metadata (one file per architecture for
//! what differs from Llama), the tensors each needs, the weights on the GPU, and tiny
//! random models for tests.

pub mod config;
mod gemma3;
mod llama;
mod qwen2;
mod qwen3;
pub mod tensors;
pub mod tiny;
pub mod weights;

pub use config::{file_type_name, Activation, Arch, ModelConfig, ModelError};
pub use tensors::{check_tensors, expected_tensors, TensorSpec};
pub use tiny::{TinySpec, TinyTensor};
pub use weights::{LayerWeights, Weights};
