//! The GPU top-k of the logits, so the sampler reads back k candidates instead of the
//! whole vocabulary. Two dispatches (a bitonic sort of each 1024-element chunk in shared
//! memory keeping its best k, then a k-round merge of the chunk lists in one
//! workgroup); no float atomics. Shader: `topk.wgsl`.

use super::{to_u32, two_pass, Dispatch, View};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of both top-k passes.
pub const WORKGROUP: u32 = 256;
/// Largest k the kernel selects.
pub const MAX_K: u32 = 256;
/// Elements per first-pass workgroup (`CHUNK` in the shader).
const CHUNK: u32 = 1024;
/// Chunks the final pass can merge (`MAX_CHUNKS` in the shader).
const MAX_CHUNKS: u32 = 1024;

params! {
    @binding(4)
    pub(crate) struct Params {
        width: u32,
        x_offset: u32,
        k: u32,
        n_chunks: u32,
    }
}

/// The `k` largest of `x[..width]` with their indices into `out`: `k` u32 ids, then the
/// `k` values as f32 bits; sorted descending, ties to the lower index, NaN never chosen.
/// Slots left without a candidate (fewer than k non-NaN values) hold id `u32::MAX`.
pub struct TopK {
    /// The chunk pass, then the merge pass.
    pub dispatches: Vec<Dispatch>,
    /// Best k (value, index) per chunk, kept with the dispatches that use it.
    _scratch: wgpu::Buffer,
}

impl TopK {
    /// Builds both dispatches. Needs 1 <= k <= 256, k <= width <= 1048576 and an `out`
    /// u32 storage buffer of at least 2k words other than x's.
    pub fn new(
        gpu: &Gpu,
        x: View,
        width: u32,
        k: u32,
        out: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if k == 0 || k > MAX_K || width < k || width > CHUNK * MAX_CHUNKS {
            return Err(GpuError::Runtime(format!(
                "top-k: k {k} of width {width} (needs 1 <= k <= {MAX_K}, k <= width <= {})",
                CHUNK * MAX_CHUNKS
            )));
        }
        x.check("top-k input", width as u64)?;
        let x_offset = to_u32("top-k offset", x.offset + width as u64)? - width;
        if out.size() < k as u64 * 8 || out == x.buffer {
            return Err(GpuError::Runtime(format!(
                "top-k: output needs {} bytes in a buffer other than x's (it has {})",
                k as u64 * 8,
                out.size()
            )));
        }
        let n_chunks = width.div_ceil(CHUNK);
        let scratch = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top-k scratch"),
            size: n_chunks as u64 * k as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let p = Params {
            width,
            x_offset,
            k,
            n_chunks,
        };
        let keys = (&key(&[]), &key(&["FINAL"]));
        let dispatches = two_pass(gpu, keys, x.buffer, &scratch, out, &p, n_chunks)?;
        Ok(Self {
            dispatches,
            _scratch: scratch,
        })
    }
}

fn key(defines: &'static [&'static str]) -> PipelineKey {
    PipelineKey {
        op: "topk",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key(&[]), key(&["FINAL"])]
}

/// CPU twin: up to `k` (index, value) pairs of the largest non-NaN values, descending,
/// ties to the lower index.
pub fn cpu(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = x
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, v)| (i as u32, *v))
        .collect();
    // NaN is filtered out, so partial_cmp is total here; -0 ties with +0 as on the GPU.
    v.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    v.truncate(k);
    v
}

impl super::Op for TopK {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
