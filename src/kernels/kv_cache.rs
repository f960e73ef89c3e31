//! The per-layer KV cache: two GPU buffers (K and V) of `capacity` positions by `kv_dim`
//! values, stored as f16 when the device has shader-f16 (half the memory and bandwidth of
//! decode attention) and as f32 otherwise. Written by `KvAppend`, read by the attention ops.

use crate::gpu::{Gpu, GpuError};

/// K and V of one layer: `slots` sequences of `capacity` positions each, slot after slot;
/// row `s * capacity + p` (position `p` of slot `s`) holds `kv_dim` values, heads side by
/// side.
pub struct KvCache {
    /// Keys, `slots * capacity * kv_dim` elements.
    pub k: wgpu::Buffer,
    /// Values, same layout as `k`.
    pub v: wgpu::Buffer,
    /// Positions each slot holds.
    pub capacity: u32,
    /// Sequences the cache holds.
    pub slots: u32,
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
        if capacity == 0 || kv_dim == 0 || slots == 0 {
            return Err(GpuError::Runtime(format!(
                "KV cache: capacity {capacity}, kv_dim {kv_dim} and slots {slots} must all be \
                 positive"
            )));
        }
        let f16 = gpu.features.shader_f16;
        let rows = slots as u64 * capacity as u64;
        let each = Self::bytes_u64(rows, kv_dim, f16) / 2;
        if each > gpu.max_binding {
            return Err(GpuError::Runtime(format!(
                "KV cache of {slots} x {capacity} positions x {kv_dim} values needs {each} bytes \
                 per K/V buffer, above this device's largest storage binding ({} bytes); use \
                 at most {} positions in all",
                gpu.max_binding,
                gpu.max_binding / (kv_dim as u64 * if f16 { 2 } else { 4 })
            )));
        }
        // Kernels index elements with u32.
        if rows * kv_dim as u64 > u32::MAX as u64 {
            return Err(GpuError::Runtime(format!(
                "KV cache of {capacity} positions x {kv_dim} values exceeds the 32-bit index range"
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
            slots,
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
