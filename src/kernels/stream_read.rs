//! A kernel that only reads: the streaming-read half of the bandwidth probe
//! (`crate::gpu::profiler::measure_peak`). Shader: `stream_read.wgsl`.

use super::{build_dispatch, grid, Dispatch, Work};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the kernel.
pub const WORKGROUP: u32 = 256;
/// Workgroups launched: enough to fill any GPU; each walks the buffer with a grid stride.
const GROUPS: u32 = 1024;

params! {
    @binding(3)
    pub(crate) struct Params {
        n_vec4: u32,
        sentinel: u32,
        _pad: [u32; 2],
    }
}

fn key() -> PipelineKey {
    PipelineKey {
        op: "stream_read",
        variant: ShaderVariant::new(WORKGROUP),
    }
}

/// The kernel's one variant, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key()]
}

/// Reads all of `x` (a multiple of 16 bytes) once; `out` (4 bytes) is written only when
/// the data XOR-folds to the sentinel, which zeroed data never does.
pub struct StreamRead {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl StreamRead {
    /// Builds the dispatch over the whole of `x`.
    pub fn new(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        Self::with_groups(gpu, x, out, GROUPS)
    }

    /// A minimal dispatch: one workgroup over `x` (16 bytes in the dispatch-cost probe),
    /// so its time is the adapter's cost of launching a kernel.
    pub fn minimal(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        Self::with_groups(gpu, x, out, 1)
    }

    fn with_groups(
        gpu: &Gpu,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        groups: u32,
    ) -> Result<Self, GpuError> {
        let n_vec4 = u32::try_from(x.size() / 16)
            .map_err(|_| GpuError::Runtime("stream_read: buffer too large".into()))?;
        let p = Params {
            n_vec4,
            sentinel: 0xDEAD_BEEF,
            _pad: [0; 2],
        };
        let key = key();
        let (gx, gy) = grid(gpu, groups);
        let d = build_dispatch(gpu, &key, key.label(), &[(1, x), (2, out)], &p, (gx, gy, 1))?;
        let bytes = Work {
            c: n_vec4 as f64 * 16.0,
            ..Work::default()
        };
        Ok(Self {
            dispatches: vec![d.costed(format!("{}", x.size()), bytes, Work::default())],
        })
    }
}

impl super::Op for StreamRead {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
