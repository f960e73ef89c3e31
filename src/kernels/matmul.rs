//! Matrix-matrix product over quantized weights (prefill: many tokens, tiled).
//! Shader: `matmul.wgsl`.

use super::{to_u32, weight_bytes, weight_dispatches, Dispatch, Rows, Tokens, WeightKernel, Work};
use crate::gpu::{CoopMatrix, Gpu, GpuError, GpuTensor, PipelineKey};

/// Rows per workgroup tile (fixed in the shader: TM).
const TILE_ROWS: u64 = 64;
/// Tokens per workgroup tile: the wide build (`WIDE`) and the narrow one.
const TILE_WIDE: u64 = 64;
const TILE_NARROW: u64 = 32;

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        n_tokens: u32,
        pub(super) x_offset: u32,
        x_stride: u32,
        y_stride: u32,
        y_offset: u32,
        /// The first token of the dispatch's column blocks, whose x is at `x_offset`
        /// (the batched matvec's per-block uniform windows; else 0).
        pub(super) t_first: u32,
        /// The batched matvec's column blocks in the dispatch, for builds that claim
        /// their work (`CLAIM`; else 0).
        pub(super) blocks: u32,
        _pad: u32,
    }
}

impl Params {
    /// The uniform of `what` (matmul or matvec_batch) over up to `tok.max` tokens of `x`
    /// (`w.cols` values each) and `y` (`w.rows` each), without its shard (`rows`,
    /// `row_offset`); refuses views that do not hold them.
    pub(super) fn over(
        what: &str,
        w: &GpuTensor,
        x: Rows,
        (y, y_rows): (Rows, u64),
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        if x.per_token() != w.cols || y.per_token() != y_rows || x.stride == 0 || y.stride == 0 {
            return Err(GpuError::Runtime(format!(
                "{what} {}: x has {} values per token at stride {} (needs {}), y {} at \
                 stride {} (needs {})",
                w.name,
                x.per_token(),
                x.stride,
                w.cols,
                y.per_token(),
                y.stride,
                y_rows
            )));
        }
        Ok(Params {
            rows: 0,
            k: to_u32("k", w.cols)?,
            row_words: to_u32("row words", w.row_words)?,
            row_offset: 0,
            n_tokens: tok.max,
            x_offset: x.check(&format!("{what} input"), tok.max)?,
            x_stride: x.stride,
            y_stride: y.stride,
            y_offset: y.check(&format!("{what} output"), tok.max)?,
            t_first: 0,
            blocks: 0,
            _pad: 0,
        })
    }

    /// This uniform for the shard of `rows` rows from `start`.
    pub(super) fn shard(self, start: u64, rows: u64) -> Self {
        Self {
            rows: rows as u32,
            row_offset: start as u32,
            ..self
        }
    }
}

/// `Y[t, r] = sum_k W[r, k] * X[t, k]` for the step's tokens (up to `max_tokens`, the
/// size it is built for); X rows are `x_stride` apart, Y rows `y_stride` apart.
pub struct MatMul {
    /// One dispatch per shard of W, tiles of 64 tokens (8 per invocation); on devices
    /// with cooperative matrices (`Gpu::coop`), `matmul_coop.wgsl`'s tiles of 4N.
    pub dispatches: Vec<Dispatch>,
    /// The same with tiles of 32 tokens (4 per invocation), for steps of at most 32
    /// tokens: a short prompt wastes less of a tile. Empty with cooperative matrices
    /// (their tiles are at most 64 tokens and one build serves every step).
    pub narrow: Vec<Dispatch>,
}

impl MatMul {
    /// Builds the dispatches for up to `tok.max` tokens; each run covers
    /// `min(tok.max, step.n_tokens)`. Each token of `x` holds `w.cols` values, of `y`
    /// `w.rows`.
    pub fn new(gpu: &Gpu, w: &GpuTensor, x: Rows, y: Rows, tok: Tokens) -> Result<Self, GpuError> {
        let n_tokens = tok.max as u64;
        let p0 = Params::over("matmul", w, x, (y, w.rows), tok)?;
        let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
        let tiles_r = w.rows.div_ceil(TILE_ROWS);
        if tiles_r > max || n_tokens.div_ceil(TILE_NARROW) > max {
            return Err(GpuError::Runtime(format!(
                "matmul {}: {} rows x {n_tokens} tokens exceed the dispatch limit",
                w.name, w.rows
            )));
        }
        if let Some(c) = coop_for(gpu, w.ty) {
            return Ok(Self {
                dispatches: coop_dispatches(gpu, c, w, x, y, tok, p0)?,
                narrow: Vec::new(),
            });
        }
        let build = |wide: bool| {
            let (defines, tile): (&'static [&'static str], u64) = match wide {
                true => (&["WIDE"], TILE_WIDE),
                false => (&[], TILE_NARROW),
            };
            let kernel = WeightKernel {
                op: "matmul",
                subgroups: false,
                workgroup: 64,
                inputs: [x.view.buffer, y.view.buffer],
                x_range: None,
                defines,
                extra: &[],
                step: Some(tok.step),
                cost: per_step_cost,
            };
            let tiles_t = n_tokens.div_ceil(tile) as u32;
            weight_dispatches(gpu, &kernel, w, |start, rows| {
                (
                    p0.shard(start, rows),
                    (rows.div_ceil(TILE_ROWS) as u32, tiles_t, 1),
                )
            })
        };
        Ok(Self {
            dispatches: build(true)?,
            narrow: build(false)?,
        })
    }
}

/// The cooperative matrices the matmul over `ty` uses on `gpu`: block types only (rows of
/// whole blocks; MXFP4's exponents overflow f16), on the device's choice of matrices.
/// Float weights keep the portable tiles: bf16's range exceeds f16's, and rows that end
/// inside a 4-element group (f16, 7 columns) missed the twin's bound in an earlier form
/// of the kernel and were not checked again. None: the portable tiles.
pub fn coop_for(gpu: &Gpu, ty: crate::quant::GgmlType) -> Option<CoopMatrix> {
    use crate::quant::GgmlType as T;
    match ty {
        T::MXFP4 => None,
        t if t.is_float() => None,
        _ => gpu.coop,
    }
}

/// The shader switches of the cooperative-matrix matmul for `c` (`COOP=N`, and `COOP16`
/// for 16 x 16 matrices).
fn coop_defines(c: CoopMatrix) -> &'static [&'static str] {
    match c.size {
        16 => &["COOP=16", "COOP16"],
        _ => &["COOP=8"],
    }
}

/// The pipeline key of the cooperative-matrix matmul over `ty` for `c`.
pub(super) fn coop_key(ty: crate::quant::GgmlType, c: CoopMatrix) -> PipelineKey {
    let mut key = super::weight_key("matmul_coop", ty, true, c.workgroup, coop_defines(c));
    key.variant.f16 = c.f16_inputs;
    key
}

/// `matmul_coop.wgsl`'s dispatches: tiles of 4N rows x 4N tokens.
fn coop_dispatches(
    gpu: &Gpu,
    c: CoopMatrix,
    w: &GpuTensor,
    x: Rows,
    y: Rows,
    tok: Tokens,
    p0: Params,
) -> Result<Vec<Dispatch>, GpuError> {
    let tile = 4 * c.size as u64;
    let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
    let tiles_t = (tok.max as u64).div_ceil(tile);
    if w.rows.div_ceil(tile) > max || tiles_t > max {
        return Err(GpuError::Runtime(format!(
            "matmul {}: {} rows x {} tokens exceed the dispatch limit",
            w.name, w.rows, tok.max
        )));
    }
    let key = coop_key(w.ty, c);
    let kernel = WeightKernel {
        op: key.op,
        subgroups: true,
        workgroup: c.workgroup,
        inputs: [x.view.buffer, y.view.buffer],
        x_range: None,
        defines: key.variant.defines,
        extra: &[],
        step: Some(tok.step),
        cost: per_step_cost,
    };
    super::weight_dispatches_keyed(gpu, &kernel, key, w, |start, rows| {
        (
            p0.shard(start, rows),
            (rows.div_ceil(tile) as u32, tiles_t as u32, 1),
        )
    })
}

/// The bytes and FLOPs of a shard of `rows` rows of `w` over a step's tokens: the
/// weights once per step, each token's x and y once.
pub(super) fn per_step_cost(w: &GpuTensor, rows: f64) -> (Work, Work) {
    (
        Work {
            c: weight_bytes(w, rows),
            t: (w.cols as f64 + rows) * 4.0,
            ..Work::default()
        },
        Work::per_token(2.0 * rows * w.cols as f64),
    )
}

/// CPU twin: `y[t * rows + r] = sum_k w[r * cols + k] * x[t * cols + k]`, in f64.
pub fn cpu(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    x.chunks_exact(cols)
        .flat_map(|xt| super::matvec::cpu(w, cols, xt))
        .collect()
}

/// CPU twin of the cooperative-matrix matmul with f16 inputs: `cpu` over the weights and
/// x each as the sum of its two f16 halves (f16(v), and f16 of the rest scaled by 2^11
/// and back), as `matmul_coop.wgsl` stages them (its accumulators are f32; the product
/// of the two low halves it leaves out is 2^-22 of the whole).
pub fn cpu_f16_inputs(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    let f16 = |a: f32| half::f16::from_f32(a).to_f32();
    let split = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&a| f16(a) + f16((a - f16(a)) * 2048.0) / 2048.0)
            .collect()
    };
    cpu(&split(w), cols, &split(x))
}

impl super::Op for MatMul {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    fn dispatches_for(&self, n_tokens: u32, _kv_len: u32) -> &[Dispatch] {
        if n_tokens as u64 <= TILE_NARROW && !self.narrow.is_empty() {
            &self.narrow
        } else {
            &self.dispatches
        }
    }
}
