//! Greedy sampling on the GPU: the index of the largest logit, so only 4 bytes are read
//! back. Two dispatches (per-workgroup partials, then one final workgroup); no float
//! atomics. Shader: `argmax.wgsl`.

use super::{to_u32, two_pass, Dispatch, View, Work};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of both argmax passes on a GPU; on a CPU adapter one subgroup
/// (`CPU_ROW_WORKGROUP`, `cpu_rows`).
pub const WORKGROUP: u32 = 256;
/// Elements per first-pass workgroup on a GPU: 8 per invocation, so the final pass has
/// few partials (128 for a 262144-entry vocabulary) and the first fills the GPU.
const CHUNK: u32 = WORKGROUP * 8;
/// On a CPU adapter: 32768 per workgroup. Each workgroup's shared-memory tree costs a
/// CPU rasterizer a switch between its SIMD slices per level, so fewer workgroups win
/// (lavapipe, Gemma 3's 262144 logits: 355 us per pass against 1884 with `CHUNK`, in
/// workgroups of 256); in workgroups of 8, with x read as vec4 words, 223 us against
/// 289 in 256 and 396 one value at a time (`hearth profile MODEL -p 1 -n 8`).
const CPU_CHUNK: u32 = 32768;

/// Every first-pass chunk size in use (the tests run each).
pub const CHUNKS: [u32; 2] = [CHUNK, CPU_CHUNK];

/// First-pass elements per workgroup on `gpu`.
pub fn chunk(gpu: &Gpu) -> u32 {
    if super::matvec::AdapterClass::of(&gpu.info) == super::matvec::AdapterClass::Cpu {
        CPU_CHUNK
    } else {
        CHUNK
    }
}

params! {
    @binding(4)
    pub(crate) struct Params {
        width: u32,
        x_offset: u32,
        chunk: u32,
        n_partials: u32,
        out_index: u32,
        row_stride: u32,
        _pad: [u32; 2],
    }
}

/// `out[out_index] = argmax x[..width]`: ties to the lowest index, NaN never wins,
/// `u32::MAX` when no element is comparable (all NaN); or, built over several packed
/// rows (`rows`), `out[out_index + r]` for each row r, in the same two dispatches.
pub struct Argmax {
    /// The partials pass, then the final pass.
    pub dispatches: Vec<Dispatch>,
    /// (value, index) per first-pass workgroup, kept with the dispatches that use it.
    _partials: wgpu::Buffer,
}

impl Argmax {
    /// Builds both dispatches; `out` is a u32 storage buffer with room for `out_index`
    /// and must not be x's buffer.
    pub fn new(
        gpu: &Gpu,
        x: View,
        width: u32,
        out: &wgpu::Buffer,
        out_index: u32,
    ) -> Result<Self, GpuError> {
        Self::with_chunk(gpu, x, (width, 1), out, out_index, chunk(gpu))
    }

    /// The argmax of each of `rows` packed rows of `width` from `x` (a batched step's
    /// logits, one row per sequence) into `out[out_index + r]`: two dispatches whatever
    /// the rows, where one op per row took two each.
    pub fn rows(
        gpu: &Gpu,
        x: View,
        (width, rows): (u32, u32),
        out: &wgpu::Buffer,
        out_index: u32,
    ) -> Result<Self, GpuError> {
        Self::with_chunk(gpu, x, (width, rows), out, out_index, chunk(gpu))
    }

    /// `rows` with `chunk` (one of [`CHUNKS`]) elements per first-pass workgroup.
    pub fn with_chunk(
        gpu: &Gpu,
        x: View,
        (width, rows): (u32, u32),
        out: &wgpu::Buffer,
        out_index: u32,
        chunk: u32,
    ) -> Result<Self, GpuError> {
        if !CHUNKS.contains(&chunk) {
            return Err(GpuError::Runtime(format!(
                "argmax: chunk {chunk} not in {CHUNKS:?}"
            )));
        }
        if width == 0 || rows == 0 {
            return Err(GpuError::Runtime(format!(
                "argmax: width {width} x {rows} rows (both must be at least 1)"
            )));
        }
        if rows > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::Runtime(format!(
                "argmax: {rows} rows exceed the dispatch limit"
            )));
        }
        let len = width as u64 * rows as u64;
        x.check("argmax input", len)?;
        let x_offset = to_u32("argmax offset", x.offset + len)? - to_u32("argmax rows", len)?;
        let last = out_index as u64 + rows as u64;
        if out.size() < last * 4 || out == x.buffer {
            return Err(GpuError::Runtime(format!(
                "argmax: output index {out_index} for {rows} row(s) needs {} bytes in a buffer other than x's (it has {})",
                last * 4,
                out.size()
            )));
        }
        let n_partials = width.div_ceil(chunk);
        let partials = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("argmax partials"),
            size: n_partials as u64 * rows as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let p = Params {
            width,
            x_offset,
            chunk,
            n_partials,
            out_index,
            row_stride: width,
            _pad: [0; 2],
        };
        // x as vec4 words where its offset and width allow.
        let vec4 = x_offset.is_multiple_of(4) && width.is_multiple_of(4);
        let wg = super::row_workgroup(gpu, WORKGROUP);
        let first = key(if vec4 { &["VEC4"] } else { &[] }, wg);
        let keys = (&first, &key(&["FINAL"], wg));
        let grids = (rows, n_partials);
        let mut dispatches = two_pass(gpu, keys, x.buffer, &partials, out, &p, grids)?;
        let (width, n_partials) = (width as f64 * rows as f64, n_partials as f64 * rows as f64);
        let partial_bytes = n_partials * 8.0;
        let fixed = |c| Work {
            c,
            ..Work::default()
        };
        let last = dispatches.pop().expect("two passes");
        let first = dispatches.pop().expect("two passes");
        dispatches = vec![
            first.costed(
                format!("{width}"),
                fixed(width * 4.0 + partial_bytes),
                fixed(width),
            ),
            last.costed(
                format!("{n_partials}"),
                fixed(partial_bytes + 4.0 * rows as f64),
                fixed(n_partials),
            ),
        ];
        Ok(Self {
            dispatches,
            _partials: partials,
        })
    }
}

fn key(defines: &'static [&'static str], workgroup: u32) -> PipelineKey {
    PipelineKey {
        op: "argmax",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(workgroup)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    let defines: [&'static [&'static str]; 3] = [&[], &["VEC4"], &["FINAL"]];
    [WORKGROUP, super::CPU_ROW_WORKGROUP]
        .into_iter()
        .flat_map(|wg| defines.map(|d| key(d, wg)))
        .collect()
}

/// CPU twin: the first index of the largest non-NaN value, `u32::MAX` if there is none.
pub fn cpu(x: &[f32]) -> u32 {
    let mut best: Option<(f32, usize)> = None;
    for (i, v) in x.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(b, _)| *v > b) {
            best = Some((*v, i));
        }
    }
    best.map_or(u32::MAX, |(_, i)| i as u32)
}

// The passes run in order: wgpu orders the second pass's read after the first's write.
impl super::Op for Argmax {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
