//! Model architectures: configuration from GGUF metadata and, per architecture, the
//! tensors it needs and how one forward pass is laid out.

pub mod config;

pub use config::{Activation, Arch, ModelConfig, ModelError};
