//! LayerNorm with weight and bias, in place over the residual stream and copied to the
//! next sub-block's input: BERT's post-norms (`x = LayerNorm(x + o)`, the residual add
//! fused in) and its embedding norm. Shader: `layer_norm.wgsl`.

use super::{build_dispatch, token_grid, Dispatch, Rows, Tokens, View, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

use super::rmsnorm::{workgroup, WORKGROUPS};

params! {
    @binding(3)
    pub(crate) struct Params {
        width: u32,
        token_stride: u32,
        max_tokens: u32,
        x_offset: u32,
        o_offset: u32,
        h_offset: u32,
        eps: f32,
        _pad: u32,
    }
}

/// The buffers of the op: the residual stream `x` (one row of `width` per token), the
/// sub-block output `o` to add first (if any) and the copy `h`, both laid out like x,
/// and the weight and bias.
#[derive(Clone, Copy)]
pub struct LayerNormIo<'a> {
    /// The residual stream, normalized in place.
    pub x: Rows<'a>,
    /// A sub-block's output added into x before the norm.
    pub o: Option<View<'a>>,
    /// Where a copy of the normalized rows goes (the next sub-block's input).
    pub h: View<'a>,
    /// The norm's weight `[width]`.
    pub w: &'a wgpu::Buffer,
    /// The norm's bias `[width]`.
    pub b: &'a wgpu::Buffer,
}

/// `x[t] = LayerNorm(x[t] (+ o[t])) * w + b` and `h[t] = x[t]`, for the step's tokens
/// (up to `tok.max`).
pub struct LayerNorm {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl LayerNorm {
    /// Builds the dispatch; x, o and h must be different buffers.
    pub fn new(gpu: &Gpu, io: LayerNormIo, eps: f32, tok: Tokens) -> Result<Self, GpuError> {
        let what = "layer_norm";
        let (width, stride) = (io.x.width, io.x.stride);
        if io.x.rows != 1 || stride == 0 {
            return Err(GpuError::Runtime(format!(
                "{what}: x must be one row per token with a token stride"
            )));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "{what}: eps {eps} is not a finite value >= 0"
            )));
        }
        let x = io.x.view.buffer;
        if x == io.h.buffer
            || io
                .o
                .is_some_and(|o| o.buffer == x || o.buffer == io.h.buffer)
        {
            return Err(GpuError::Runtime(format!(
                "{what}: x, o and h must be different buffers"
            )));
        }
        for v in [io.w, io.b] {
            if v.size() < width as u64 * 4 {
                return Err(GpuError::Runtime(format!(
                    "{what}: weight and bias need {} bytes but a buffer has {}",
                    width as u64 * 4,
                    v.size()
                )));
            }
        }
        let x_offset = io.x.check(what, tok.max)?;
        let o_offset = match io.o {
            Some(o) => Rows { view: o, ..io.x }.check("layer_norm o", tok.max)?,
            None => 0,
        };
        let h_offset = Rows { view: io.h, ..io.x }.check("layer_norm h", tok.max)?;
        let p = Params {
            width,
            token_stride: stride,
            max_tokens: tok.max,
            x_offset,
            o_offset,
            h_offset,
            eps,
            _pad: 0,
        };
        let key = key(
            io.o.is_some(),
            gpu.features.subgroups,
            workgroup(gpu, width),
        );
        let mut buffers = vec![
            (0, x),
            (2, io.h.buffer),
            (4, io.w),
            (5, io.b),
            (STEP_BINDING, &tok.step.buffer),
        ];
        if let Some(o) = io.o {
            buffers.push((1, o.buffer));
        }
        let groups = token_grid(gpu, what, 1, tok.max)?;
        // Per token: x read twice and written, o read, h written; weight and bias once.
        let wf = width as f64;
        let reads = if io.o.is_some() { 5.0 } else { 4.0 };
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{width}"),
            Work {
                c: wf * 8.0,
                t: wf * 4.0 * reads,
                ..Work::default()
            },
            Work::per_token(wf * 8.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(residual: bool, subgroups: bool, wg: u32) -> PipelineKey {
    PipelineKey {
        op: "layer_norm",
        variant: ShaderVariant {
            subgroups,
            defines: if residual { &["RESIDUAL"] } else { &[] },
            ..ShaderVariant::new(wg)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    let mut v = Vec::new();
    for residual in [false, true] {
        for sg in [false, true] {
            v.extend(WORKGROUPS.map(|wg| key(residual, sg, wg)));
        }
    }
    v
}

/// CPU twin on one row: `(x - mean) / sqrt(var + eps) * w + b`, in f64.
pub fn cpu(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let k = 1.0 / (var + eps as f64).sqrt();
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(&v, (&w, &b))| ((v as f64 - mean) * k * w as f64 + b as f64) as f32)
        .collect()
}

impl super::Op for LayerNorm {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
