//! Matrix-vector product over quantized weights (decode: one token). Shader: `matvec.wgsl`.

use super::{grid, to_u32, weight_bytes, weight_dispatches, Dispatch, View, WeightKernel, Work};
use crate::gpu::{Gpu, GpuError, GpuTensor};

/// Workgroup sizes the matvec kernel is built with; `workgroup_for` picks one per shape.
pub const WORKGROUPS: [u32; 3] = [16, 32, 64];

/// The workgroup size for rows of `k` elements: enough 4-element groups per invocation
/// (about 8) that short rows do not leave most of a large workgroup idle and pay a full
/// reduction for little work, while long rows still spread over 64 invocations.
pub fn workgroup_for(k: u64) -> u32 {
    let per_thread = k.div_ceil(4) / 8;
    WORKGROUPS
        .into_iter()
        .rev()
        .find(|&wg| wg as u64 <= per_thread)
        .unwrap_or(WORKGROUPS[0])
}
/// Rows computed by one workgroup (fixed in the shader).
const ROWS_PER_WG: u64 = 4;

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        x_offset: u32,
        y_offset: u32,
        _pad: [u32; 2],
    }
}

/// `y[y.offset + r] = sum_k W[r, k] * x[x.offset + k]` for every row r of W.
pub struct MatVec {
    /// One dispatch per shard of W.
    pub dispatches: Vec<Dispatch>,
}

impl MatVec {
    /// Builds the dispatches; `x` must hold `w.cols` values and `y` `w.rows`.
    pub fn new(gpu: &Gpu, w: &GpuTensor, x: View, y: View) -> Result<Self, GpuError> {
        x.check("matvec input", w.cols)?;
        y.check("matvec output", w.rows)?;
        let (k, row_words) = (to_u32("k", w.cols)?, to_u32("row words", w.row_words)?);
        let (xo, yo) = (to_u32("x offset", x.offset)?, to_u32("y offset", y.offset)?);
        let kernel = WeightKernel {
            op: "matvec",
            subgroups: gpu.features.subgroups,
            workgroup: workgroup_for(w.cols),
            inputs: [x.buffer, y.buffer],
            step: None,
            // The weights, x and y each once.
            cost: |w, rows| {
                let io = (w.cols as f64 + rows) * 4.0;
                (
                    Work {
                        c: weight_bytes(w, rows) + io,
                        ..Work::default()
                    },
                    Work {
                        c: 2.0 * rows * w.cols as f64,
                        ..Work::default()
                    },
                )
            },
        };
        let dispatches = weight_dispatches(gpu, &kernel, w, |start, rows| {
            let p = Params {
                rows: rows as u32,
                k,
                row_words,
                row_offset: start as u32,
                x_offset: xo,
                y_offset: yo,
                _pad: [0; 2],
            };
            let (gx, gy) = grid(gpu, rows.div_ceil(ROWS_PER_WG) as u32);
            (p, (gx, gy, 1))
        })?;
        Ok(Self { dispatches })
    }
}

/// CPU twin: `y[r] = sum_k w[r * cols + k] * x[k]` over dequantized weights, in f64.
pub fn cpu(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    w.chunks_exact(cols)
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

impl super::Op for MatVec {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::workgroup_for;

    #[test]
    fn workgroup_follows_row_length() {
        assert_eq!(workgroup_for(1), 16);
        assert_eq!(workgroup_for(640), 16); // Gemma's hidden: 160 groups
        assert_eq!(workgroup_for(1024), 32);
        assert_eq!(workgroup_for(2048), 64);
        assert_eq!(workgroup_for(1 << 20), 64);
    }
}
