//! hearth: run large language models on your own GPU, whatever its vendor, through wgpu.
//!
//! The engine reads GGUF files (`gguf`), keeps weights as raw quantized blocks (`quant`),
//! uploads them once to the GPU (`gpu`) and runs WGSL compute kernels on them (`kernels`).

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod constraint;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf;
pub mod gpu;
pub mod grammar;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod profile;
pub mod quant;
pub mod reference;
pub mod sampling;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
#[cfg(not(target_arch = "wasm32"))]
pub mod store;
pub mod tokenizer;
pub mod tools;
pub mod web;
