//! A kernel that only reads: the streaming-read half of the bandwidth probe
//! (`crate::gpu::profiler::measure_peak`), in two access patterns: a grid stride
//! (consecutive invocations read consecutive words, as a GPU coalesces them) and runs
//! (each invocation a contiguous run, as a CPU rasterizer's lanes stream rows). The probe
//! takes the faster. Shader: `stream_read.wgsl`.

use super::{build_dispatch, grid, Dispatch, Work};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the kernel.
pub const WORKGROUP: u32 = 256;
/// Workgroups launched: enough to fill any GPU; each walks the buffer with a grid stride.
const GROUPS: u32 = 1024;

/// The runs pattern's vec4 words per invocation (16 KiB), so its workgroups are the
/// buffer over `WORKGROUP` runs (at most `GROUPS`). On lavapipe (2026-12-04, 128 MiB)
/// it read 5.0-7.1 GB/s in runs of 512 bytes (1024 workgroups), 6.5-11.4 in 4 KiB and
/// 11.2-13.6 in 16 KiB, no faster in 64 KiB; the grid stride 2.9-4.2.
pub const RUN_VEC4: u32 = 1024;

params! {
    @binding(3)
    pub(crate) struct Params {
        n_vec4: u32,
        sentinel: u32,
        _pad: [u32; 2],
    }
}

fn key(runs: bool) -> PipelineKey {
    PipelineKey {
        op: "stream_read",
        variant: ShaderVariant {
            defines: if runs { &["RUNS"] } else { &[] },
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// The kernel's variants (grid stride, runs), for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key(false), key(true)]
}

/// Reads all of `x` (a multiple of 16 bytes) once; `out` (4 bytes) is written only when
/// the data XOR-folds to the sentinel, which zeroed data never does.
pub struct StreamRead {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl StreamRead {
    /// Builds the dispatch over the whole of `x`, with a grid stride.
    pub fn new(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        Self::with_groups(gpu, x, out, GROUPS, false)
    }

    /// Builds the dispatch over the whole of `x`, each invocation reading a contiguous
    /// run of it (`RUN_VEC4` words, the last runs shorter).
    pub fn runs(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        let n_vec4 = x.size() / 16;
        let groups = n_vec4.div_ceil(u64::from(WORKGROUP * RUN_VEC4)).max(1);
        Self::with_groups(gpu, x, out, groups.min(u64::from(GROUPS)) as u32, true)
    }

    /// A minimal dispatch: one workgroup over `x` (16 bytes in the dispatch-cost probe),
    /// so its time is the adapter's cost of launching a kernel.
    pub fn minimal(gpu: &Gpu, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        Self::with_groups(gpu, x, out, 1, false)
    }

    fn with_groups(
        gpu: &Gpu,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        groups: u32,
        runs: bool,
    ) -> Result<Self, GpuError> {
        let n_vec4 = u32::try_from(x.size() / 16)
            .map_err(|_| GpuError::Runtime("stream_read: buffer too large".into()))?;
        let p = Params {
            n_vec4,
            sentinel: 0xDEAD_BEEF,
            _pad: [0; 2],
        };
        let key = key(runs);
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
