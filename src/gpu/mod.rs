//! The GPU runtime: adapter choice, device creation with the adapter's real limits and
//! the optional features hearth can use, weight upload with row sharding, the shader
//! registry and the pipeline cache, and the per-dispatch profiler. Everything here is async at its core so the same code
//! serves the browser; native callers block with `pollster`.

mod device;
pub mod profiler;
mod readback;
mod shaders;
#[cfg(not(target_arch = "wasm32"))]
pub mod spin;
mod tensor;

pub use device::{
    describe_info, list_adapters, pick_coop, AdapterSummary, BackendChoice, CoopMatrix, Gpu,
    GpuOptions, OptionalFeatures,
};
pub use profiler::{measure_peak, Peak, Phase, Profiler, StepProfile, Timing, DISPATCH_PROBE};
pub use readback::{map_read, map_read_after, read_f32};
pub use shaders::{compose, shader_files, PipelineKey, ShaderVariant};
pub use tensor::{gpu_layout, repack_rows, shard_rows, GpuLayout, GpuTensor, Shard};

use thiserror::Error;

/// Errors from the GPU runtime.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No adapter matched the request (or wgpu found none at all).
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create a device on '{adapter}': {reason}")]
    Device { adapter: String, reason: String },
    /// A backend name that hearth does not know.
    #[error("unknown backend '{0}' (expected vulkan, metal, dx12, gl or webgpu)")]
    UnknownBackend(String),
    /// A tensor or buffer that cannot be placed on this device.
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    /// A shader failed to compose (missing include, unbalanced #ifdef).
    #[error("shader {name}: {reason}")]
    Shader { name: String, reason: String },
    /// Waiting for the device or mapping a buffer failed.
    #[error("GPU operation failed: {0}")]
    Runtime(String),
    /// The device could not allocate what was asked.
    #[error("out of GPU memory while {what}: {reason}")]
    OutOfMemory { what: String, reason: String },
    /// The device is gone (driver reset, removed, destroyed); a new one is needed.
    #[error("GPU device lost: {0}")]
    Lost(String),
}
