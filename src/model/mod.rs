//! Model architectures: configuration from GGUF metadata and, per architecture, the
//! tensors it needs and how one forward pass is laid out; tiny random models for tests.

pub mod config;
pub mod tensors;
pub mod tiny;

pub use config::{Activation, Arch, ModelConfig, ModelError};
pub use tensors::{check_tensors, expected_tensors, TensorSpec};
pub use tiny::{TinySpec, TinyTensor};
