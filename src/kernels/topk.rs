//! The GPU top-k of the logits, so the sampler reads back k candidates instead of the
//! whole vocabulary. Four dispatches (group maxima; one workgroup selects the k-th
//! largest of them as a threshold; the elements at or above it become candidates; one
//! workgroup sorts those), none of which sorts the vocabulary; no float atomics. k is
//! set per call (`set_k`) up to the capacity the op was built with. Shader: `topk.wgsl`.

use super::{build_dispatch, grid, to_u32, Dispatch, ShaderParams, View};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};
use wgpu::util::DeviceExt;

/// Workgroup size of every pass (the select's histogram has one bin per invocation).
pub const WORKGROUP: u32 = 256;
/// Largest k the kernel selects.
pub const MAX_K: u32 = 256;
/// Candidates the final pass sorts in shared memory (`CAP` in the shader).
const CAP: u32 = 1024;
/// Most groups the threshold is selected from: groups grow past 16 elements only for
/// vocabularies above 262144.
const MAX_GROUPS: u32 = 16384;
/// Largest width taken (group maxima are read by one workgroup).
const MAX_WIDTH: u32 = 1 << 24;

params! {
    @binding(4)
    pub(crate) struct Params {
        width: u32,
        x_offset: u32,
        k_max: u32,
        n_groups: u32,
        group: u32,
        _pad: [u32; 3],
    }
}

params! {
    @binding(5)
    pub(crate) struct Want {
        k: u32,
        _pad: [u32; 3],
    }
}

/// The `k` largest of `x[..width]` with their indices into `out`: `k_max` u32 ids, then
/// the `k_max` values as f32 bits; sorted descending, ties to the lower index, NaN never
/// chosen. Slots past `k`, or left without a candidate (fewer than k non-NaN values),
/// hold id `u32::MAX`.
pub struct TopK {
    /// Group maxima, threshold, candidates, final sort.
    pub dispatches: Vec<Dispatch>,
    /// The k of the next run (a uniform `set_k` rewrites).
    want: wgpu::Buffer,
    k_max: u32,
    /// Group maxima, threshold and count, candidates: kept with their dispatches.
    _scratch: [wgpu::Buffer; 3],
}

impl TopK {
    /// Builds the dispatches for k up to `k_max` (the first run selects `k_max`). Needs
    /// 1 <= k_max <= 256, k_max <= width <= 2^24 and an `out` u32 storage buffer of at
    /// least 2 k_max words other than x's.
    pub fn new(
        gpu: &Gpu,
        x: View,
        width: u32,
        k_max: u32,
        out: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if k_max == 0 || k_max > MAX_K || width < k_max || width > MAX_WIDTH {
            return Err(GpuError::Runtime(format!(
                "top-k: k {k_max} of width {width} (needs 1 <= k <= {MAX_K}, k <= width <= {MAX_WIDTH})"
            )));
        }
        x.check("top-k input", width as u64)?;
        let x_offset = to_u32("top-k offset", x.offset + width as u64)? - width;
        if out.size() < k_max as u64 * 8 || out == x.buffer {
            return Err(GpuError::Runtime(format!(
                "top-k: output needs {} bytes in a buffer other than x's (it has {})",
                k_max as u64 * 8,
                out.size()
            )));
        }
        let group = width.div_ceil(MAX_GROUPS).max(16);
        let n_groups = width.div_ceil(group);
        let storage = |label, size: u64| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let gkeys = storage("top-k group maxima", n_groups as u64 * 4);
        let state = storage("top-k threshold", 16);
        let cand = storage("top-k candidates", CAP as u64 * 8);
        let want = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("top-k k"),
                contents: bytemuck::bytes_of(&Want {
                    k: k_max,
                    _pad: [0; 3],
                }),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let p = Params {
            width,
            x_offset,
            k_max,
            n_groups,
            group,
            _pad: [0; 3],
        };
        let (gx, gy) = grid(gpu, n_groups.div_ceil(WORKGROUP));
        let pass = |pass: Pass, buffers: &[(u32, &wgpu::Buffer)], wgs| {
            let k = key(pass);
            build_dispatch(gpu, &k, k.label(), buffers, &p, wgs)
        };
        let dispatches = vec![
            pass(Pass::Groups, &[(0, x.buffer), (1, &gkeys)], (gx, gy, 1))?,
            pass(
                Pass::Select,
                &[(1, &gkeys), (2, &state), (Want::BINDING, &want)],
                (1, 1, 1),
            )?,
            pass(
                Pass::Collect,
                &[(0, x.buffer), (1, &gkeys), (2, &state), (3, &cand)],
                (gx, gy, 1),
            )?,
            pass(
                Pass::Final,
                &[
                    (0, x.buffer),
                    (2, &state),
                    (3, &cand),
                    (Want::BINDING, &want),
                    (6, out),
                ],
                (1, 1, 1),
            )?,
        ];
        Ok(Self {
            dispatches,
            want,
            k_max,
            _scratch: [gkeys, state, cand],
        })
    }

    /// The k of the next run: 1 to the `k_max` built for.
    pub fn set_k(&self, gpu: &Gpu, k: u32) -> Result<(), GpuError> {
        if k == 0 || k > self.k_max {
            return Err(GpuError::Runtime(format!(
                "top-k: k {k} outside 1..={}",
                self.k_max
            )));
        }
        let want = Want { k, _pad: [0; 3] };
        gpu.queue
            .write_buffer(&self.want, 0, bytemuck::bytes_of(&want));
        Ok(())
    }
}

/// The four passes.
#[derive(Clone, Copy)]
enum Pass {
    Groups,
    Select,
    Collect,
    Final,
}

fn key(pass: Pass) -> PipelineKey {
    PipelineKey {
        op: "topk",
        variant: ShaderVariant {
            defines: match pass {
                Pass::Groups => &["GROUPS"],
                Pass::Select => &["SELECT", "SELECT_OR_FINAL"],
                Pass::Collect => &["COLLECT"],
                Pass::Final => &["FINAL", "SELECT_OR_FINAL"],
            },
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    [Pass::Groups, Pass::Select, Pass::Collect, Pass::Final]
        .into_iter()
        .map(key)
        .collect()
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
