//! Embedding lookup with dequantization: copies rows `ids[t]` of a weight into an f32
//! activation buffer. Shader: `get_rows.wgsl`.

use super::matvec::NormPrep;
use super::{to_u32, weight_bytes, weight_dispatches, Dispatch, Rows, Tokens, WeightKernel, Work};
use crate::gpu::{Gpu, GpuError, GpuTensor};

/// Workgroup size of the get_rows kernel.
pub const WORKGROUP: u32 = 64;

/// The defines of [`GetRows::add_positions`].
pub const ADD_POSITIONS: &[&str] = &["POSITIONS", "ADD"];

/// The defines of [`GetRows::normed`].
pub const NORM: &[&str] = &["NORM"];

/// Bindings of [`GetRows::normed`]'s norm weights, h and sum of squares.
const NORM_WEIGHTS: u32 = 4;
const NORM_H: u32 = 5;
const NORM_SSQ: u32 = 6;

/// Which rows a lookup reads and what it does with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `out[t] = W[ids[t]]`.
    Ids,
    /// `out[t] += W[pos(t)]`: absolute position embeddings added to the token's.
    AddPositions,
}

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        n_ids: u32,
        out_offset: u32,
        out_stride: u32,
        scale: f32,
    }
}

/// `out[t, :] = W[ids[t], :]` for the step's tokens (up to `n_ids`). Ids outside W are skipped (callers
/// validate token ids before upload).
pub struct GetRows {
    /// One dispatch per shard of W.
    pub dispatches: Vec<Dispatch>,
}

impl GetRows {
    /// Builds the dispatches for up to `tok.max` ids; `ids` is a u32 storage buffer with
    /// at least that many entries, and each token of `out` holds `w.cols` values.
    pub fn new(
        gpu: &Gpu,
        w: &GpuTensor,
        ids: &wgpu::Buffer,
        out: Rows,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, ids, out, tok, (Mode::Ids, 1.0), None)
    }

    /// `new` with every row times `scale` (Gemma's embedding scale, sqrt(hidden)), so the
    /// lookup needs no separate scaling dispatch: `out[t, :] = W[ids[t], :] * scale`.
    pub fn scaled(
        gpu: &Gpu,
        w: &GpuTensor,
        ids: &wgpu::Buffer,
        out: Rows,
        tok: Tokens,
        scale: f32,
    ) -> Result<Self, GpuError> {
        if !scale.is_finite() {
            return Err(GpuError::Runtime(format!(
                "get_rows {}: the scale {scale} is not finite",
                w.name
            )));
        }
        Self::build(gpu, w, ids, out, tok, (Mode::Ids, scale), None)
    }

    /// `scaled` for one token that also leaves the first pre-norm's inputs, as an
    /// adding projection leaves them (`matvec::Fold::prep`): `prep.h = row * prep.weights`
    /// (laid out as `out`) and the row's sum of squares in `prep.ssq[0]`, so the
    /// projections that read h fold the norm in (one sum: `NormScale::parts` 1) and
    /// decode has no dispatch for it.
    pub fn normed(
        gpu: &Gpu,
        w: &GpuTensor,
        ids: &wgpu::Buffer,
        (out, tok): (Rows, Tokens),
        scale: f32,
        prep: NormPrep,
    ) -> Result<Self, GpuError> {
        let bad = |why: String| Err(GpuError::Runtime(format!("get_rows {}: {why}", w.name)));
        if tok.max != 1 || !scale.is_finite() {
            return bad(format!(
                "the norm's inputs come with one token (not {}) and a finite scale (not {scale})",
                tok.max
            ));
        }
        let h = Rows {
            view: super::View {
                buffer: prep.h,
                offset: out.view.offset,
            },
            ..out
        };
        h.check("get_rows h", 1)?;
        if prep.weights.size() < w.cols * 4 || prep.ssq.size() < 4 {
            return bad(format!("the norm needs {} weights and a sum", w.cols));
        }
        let outs = [out.view.buffer, prep.h, prep.ssq];
        if outs.contains(&ids) || outs.contains(&prep.weights) || prep.h == out.view.buffer {
            return bad("the row, h and the sum need buffers of their own".into());
        }
        Self::build(gpu, w, ids, out, tok, (Mode::Ids, scale), Some(prep))
    }

    /// `out[t, :] += W[pos(t), :]` for the step's tokens, `pos(t)` the token's position
    /// in its sequence (BERT's `position_embd`); positions past W's rows are skipped
    /// (the context is clamped to W's rows). `ids` is bound but not read for rows.
    pub fn add_positions(
        gpu: &Gpu,
        w: &GpuTensor,
        ids: &wgpu::Buffer,
        out: Rows,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, ids, out, tok, (Mode::AddPositions, 1.0), None)
    }

    fn build(
        gpu: &Gpu,
        w: &GpuTensor,
        ids: &wgpu::Buffer,
        out: Rows,
        tok: Tokens,
        (mode, scale): (Mode, f32),
        prep: Option<NormPrep>,
    ) -> Result<Self, GpuError> {
        let n_ids = tok.max as u64;
        if n_ids == 0 || out.per_token() != w.cols || out.stride == 0 || ids.size() < n_ids * 4 {
            return Err(GpuError::Runtime(format!(
                "get_rows {}: {n_ids} ids in {} bytes, out {} values per token at stride {} (needs {})",
                w.name,
                ids.size(),
                out.per_token(),
                out.stride,
                w.cols
            )));
        }
        let out_offset = out.check("get_rows output", tok.max)?;
        if n_ids > gpu.limits.max_compute_workgroups_per_dimension as u64 {
            return Err(GpuError::Runtime(format!(
                "get_rows: {n_ids} ids exceed the dispatch limit"
            )));
        }
        let p0 = Params {
            rows: 0,
            k: to_u32("k", w.cols)?,
            row_words: to_u32("row words", w.row_words)?,
            row_offset: 0,
            n_ids: n_ids as u32,
            out_offset,
            out_stride: out.stride,
            scale,
        };
        // With the norm, one workgroup per token walks its row.
        let groups = match prep {
            Some(_) => 1,
            None => w.cols.div_ceil(4).div_ceil(WORKGROUP as u64) as u32,
        };
        let extra: Vec<(u32, &wgpu::Buffer, Option<u64>)> = match prep {
            Some(pr) => vec![
                (NORM_WEIGHTS, pr.weights, None),
                (NORM_H, pr.h, None),
                (NORM_SSQ, pr.ssq, None),
            ],
            None => vec![],
        };
        let kernel = WeightKernel {
            op: "get_rows",
            subgroups: false,
            workgroup: WORKGROUP,
            inputs: [ids, out.view.buffer],
            x_range: None,
            defines: match (mode, prep.is_some()) {
                (Mode::Ids, false) => &[],
                (Mode::Ids, true) => NORM,
                (Mode::AddPositions, _) => ADD_POSITIONS,
            },
            extra: &extra,
            step: Some(tok.step),
            // Each token reads one row (from whichever shard holds it), its id, and
            // writes the row as f32.
            cost: |w, rows| {
                let row = weight_bytes(w, 1.0) + w.cols as f64 * 4.0 + 4.0;
                (Work::per_token(row * rows / w.rows as f64), Work::default())
            },
        };
        let dispatches = weight_dispatches(gpu, &kernel, w, |start, rows| {
            let p = Params {
                rows: rows as u32,
                row_offset: start as u32,
                ..p0
            };
            (p, (groups, n_ids as u32, 1))
        })?;
        Ok(Self { dispatches })
    }
}

/// CPU twin of [`GetRows::normed`]'s norm inputs for a looked-up row (as `cpu_scaled`
/// gives it): `(row * weights, sum of the row's squares)`, the products in f32 as the
/// kernel forms them, the sum in f64.
pub fn cpu_norm_inputs(row: &[f32], weights: &[f32]) -> (Vec<f32>, f64) {
    let h = row.iter().zip(weights).map(|(v, w)| v * w).collect();
    (h, row.iter().map(|&v| v as f64 * v as f64).sum())
}

/// CPU twin: rows `ids` of the dequantized weight `w`, concatenated.
pub fn cpu(w: &[f32], cols: usize, ids: &[u32]) -> Vec<f32> {
    cpu_scaled(w, cols, ids, 1.0)
}

/// CPU twin of [`GetRows::scaled`]: each value times `scale` in f32, as the kernel does.
pub fn cpu_scaled(w: &[f32], cols: usize, ids: &[u32], scale: f32) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| {
            w[i as usize * cols..(i as usize + 1) * cols]
                .iter()
                .map(move |v| v * scale)
        })
        .collect()
}

impl super::Op for GetRows {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
