//! Matrix-matrix product over quantized weights (prefill: many tokens, tiled).
//! Shader: `matmul.wgsl`.

use super::{to_u32, weight_dispatches, Dispatch, StepBuffer, View};
use crate::gpu::{Gpu, GpuError, GpuTensor};

/// Rows and tokens per tile (fixed in the shader).
const TILE: u64 = 32;

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        n_tokens: u32,
        x_offset: u32,
        x_stride: u32,
        y_stride: u32,
        y_offset: u32,
        _pad: [u32; 3],
    }
}

/// `Y[t, r] = sum_k W[r, k] * X[t, k]` for the step's tokens (up to `max_tokens`, the
/// size it is built for); X rows are `x_stride` apart, Y rows `y_stride` apart.
pub struct MatMul {
    /// One dispatch per shard of W.
    pub dispatches: Vec<Dispatch>,
}

impl MatMul {
    /// Builds the dispatches for up to `n_tokens` tokens; each run covers
    /// `min(n_tokens, step.n_tokens)`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        x_stride: u64,
        y: View,
        y_stride: u64,
        n_tokens: u64,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        if n_tokens == 0 || x_stride < w.cols || y_stride < w.rows {
            return Err(GpuError::Runtime(format!(
                "matmul {}: {n_tokens} tokens, x stride {x_stride} (needs >= {}), y stride {y_stride} (needs >= {})",
                w.name, w.cols, w.rows
            )));
        }
        x.check("matmul input", (n_tokens - 1) * x_stride + w.cols)?;
        y.check("matmul output", (n_tokens - 1) * y_stride + w.rows)?;
        let p0 = Params {
            rows: 0,
            k: to_u32("k", w.cols)?,
            row_words: to_u32("row words", w.row_words)?,
            row_offset: 0,
            n_tokens: to_u32("tokens", n_tokens)?,
            x_offset: to_u32("x offset", x.offset)?,
            x_stride: to_u32("x stride", x_stride)?,
            y_stride: to_u32("y stride", y_stride)?,
            y_offset: to_u32("y offset", y.offset)?,
            _pad: [0; 3],
        };
        let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
        let (tiles_r, tiles_t) = (w.rows.div_ceil(TILE), n_tokens.div_ceil(TILE));
        if tiles_r > max || tiles_t > max {
            return Err(GpuError::Runtime(format!(
                "matmul {}: {} rows x {n_tokens} tokens exceed the dispatch limit",
                w.name, w.rows
            )));
        }
        let dispatches = weight_dispatches(
            gpu,
            "matmul",
            w,
            64,
            [x.buffer, y.buffer],
            Some(step),
            |start, rows| {
                let p = Params {
                    rows: rows as u32,
                    row_offset: start as u32,
                    ..p0
                };
                (p, (rows.div_ceil(TILE) as u32, tiles_t as u32, 1))
            },
        )?;
        Ok(Self { dispatches })
    }
}

/// CPU twin: `y[t * rows + r] = sum_k w[r * cols + k] * x[t * cols + k]`, in f64.
pub fn cpu(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    x.chunks_exact(cols)
        .flat_map(|xt| super::matvec::cpu(w, cols, xt))
        .collect()
}

impl super::Op for MatMul {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
