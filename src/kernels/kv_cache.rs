//! The per-layer KV cache: two GPU buffers (K and V) of `capacity` positions by `kv_dim`
//! values, stored as f16 when the device has shader-f16 (half the memory and bandwidth of
//! decode attention) and as f32 otherwise. Written by `KvAppend`, read by the attention ops.

use crate::gpu::{Gpu, GpuError};

/// K and V of one layer: `rows` rows of `kv_dim` values (heads side by side). Unpaged,
/// `slots` sequences of `capacity` positions each lie slot after slot (row
/// `s * capacity + p` is position `p` of slot `s`); paged, the rows are a pool of pages
/// that the step's page tables map positions to (`lib/step.wgsl`, `cache_row`).
pub struct KvCache {
    /// Keys, `rows * kv_dim` elements.
    pub k: wgpu::Buffer,
    /// Values, same layout as `k`.
    pub v: wgpu::Buffer,
    /// Positions one sequence may hold.
    pub capacity: u32,
    /// Rows in the buffers.
    pub rows: u32,
    /// Values per position: `n_kv_heads * head_dim`.
    pub kv_dim: u32,
    /// Elements are f16 (`array<f16>`) rather than f32.
    pub f16: bool,
}

impl KvCache {
    /// Allocates a zeroed cache; f16 iff the device has shader-f16. Fails when one buffer
    /// would exceed the device's largest storage binding.
    pub fn new(gpu: &Gpu, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        Self::with_slots(gpu, 1, capacity, kv_dim)
    }

    /// A cache of `slots` sequences of `capacity` positions each (batched decoding).
    pub fn with_slots(gpu: &Gpu, slots: u32, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        Self::paged(gpu, slots as u64 * capacity as u64, capacity, kv_dim)
    }

    /// A cache of `rows` rows (a pool of pages) for sequences of at most `capacity`
    /// positions.
    pub fn paged(gpu: &Gpu, rows: u64, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        if capacity == 0 || kv_dim == 0 || rows == 0 {
            return Err(GpuError::Runtime(format!(
                "KV cache: capacity {capacity}, kv_dim {kv_dim} and rows {rows} must all be \
                 positive"
            )));
        }
        let f16 = gpu.features.shader_f16;
        let each = Self::bytes_u64(rows, kv_dim, f16) / 2;
        if each > gpu.max_binding {
            return Err(GpuError::Runtime(format!(
                "KV cache of {rows} positions x {kv_dim} values needs {each} bytes \
                 per K/V buffer, above this device's largest storage binding ({} bytes); use \
                 at most {} positions in all",
                gpu.max_binding,
                gpu.max_binding / (kv_dim as u64 * if f16 { 2 } else { 4 })
            )));
        }
        // Kernels index elements with u32.
        if rows * kv_dim as u64 > u32::MAX as u64 {
            return Err(GpuError::Runtime(format!(
                "KV cache of {rows} positions x {kv_dim} values exceeds the 32-bit index range"
            )));
        }
        let buffer = |label| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: each,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        Ok(Self {
            k: buffer("kv cache k"),
            v: buffer("kv cache v"),
            capacity,
            rows: rows as u32,
            kv_dim,
            f16,
        })
    }

    /// Bytes of K and V together (each rounded up to 4 bytes, as storage bindings need).
    pub fn bytes(capacity: u32, kv_dim: u32, f16: bool) -> u64 {
        Self::bytes_u64(capacity as u64, kv_dim, f16)
    }

    fn bytes_u64(rows: u64, kv_dim: u32, f16: bool) -> u64 {
        let elem = if f16 { 2 } else { 4 };
        2 * (rows * kv_dim as u64 * elem).next_multiple_of(4)
    }

    /// Checks that `n_kv_heads * head_dim` is this cache's row width.
    pub(crate) fn check_dim(
        &self,
        what: &str,
        n_kv_heads: u32,
        head_dim: u32,
    ) -> Result<(), GpuError> {
        if n_kv_heads as u64 * head_dim as u64 != self.kv_dim as u64 {
            return Err(GpuError::Runtime(format!(
                "{what}: {n_kv_heads} kv heads x head_dim {head_dim} != the cache's kv_dim {}",
                self.kv_dim
            )));
        }
        Ok(())
    }
}
