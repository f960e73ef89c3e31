//! Element-wise add with scale over token rows (residuals, biases) and in-place scaling.
//! Shader: `add.wgsl` (`SCALE` selects the in-place form).

use super::{build_dispatch, to_u32, token_grid, Dispatch, Rows, Tokens, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the add and scale kernels (one invocation per element).
pub const WORKGROUP: u32 = 256;

params! {
    @binding(3)
    pub(crate) struct Params {
        width: u32,
        x_stride: u32,
        y_stride: u32,
        x_offset: u32,
        y_offset: u32,
        max_tokens: u32,
        groups_per_token: u32,
        scale: f32,
    }
}

/// `y[t, i] += scale * x[t, i]` (or `x[0, i]` when x is broadcast) for `i < width` and
/// the step's tokens (up to `max_tokens`).
pub struct Add {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl Add {
    /// Builds the dispatch over `y.per_token()` elements per token; x has as many (a
    /// stride of 0 broadcasts its one row to every token) and must be another buffer.
    pub fn new(gpu: &Gpu, x: Rows, y: Rows, scale: f32, tok: Tokens) -> Result<Self, GpuError> {
        let width = to_u32("add width", y.per_token())?;
        let broadcast_x = x.stride == 0;
        if x.per_token() != y.per_token() {
            return Err(GpuError::Runtime(format!(
                "add: x has {} elements per token, y {}",
                x.per_token(),
                y.per_token()
            )));
        }
        if y.stride == 0 {
            return Err(GpuError::Runtime(
                "add y: a token stride of 0 would add every token into one row".into(),
            ));
        }
        if x.view.buffer == y.view.buffer {
            return Err(GpuError::Runtime(
                "add: x and y must be different buffers (y is written while x is read)".into(),
            ));
        }
        let x_offset = x.check("add x", tok.max)?;
        let y_offset = y.check("add y", tok.max)?;
        let (p, groups) = params(gpu, width, tok.max, scale)?;
        let p = Params {
            x_stride: x.stride,
            y_stride: y.stride,
            x_offset,
            y_offset,
            ..p
        };
        let key = key(&[]);
        let buffers = [
            (1, x.view.buffer),
            (2, y.view.buffer),
            (STEP_BINDING, &tok.step.buffer),
        ];
        let w = width as f64;
        let x_bytes = if broadcast_x { w * 4.0 } else { 0.0 };
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{width}"),
            Work {
                c: x_bytes,
                t: w * if broadcast_x { 8.0 } else { 12.0 },
                ..Work::default()
            },
            Work::per_token(w * 2.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

/// `x[t, i] *= scale` in place for `i < width` and the step's tokens (up to `max_tokens`).
pub struct Scale {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl Scale {
    /// Builds the dispatch over every element of the step's tokens of `x`.
    pub fn new(gpu: &Gpu, x: Rows, scale: f32, tok: Tokens) -> Result<Self, GpuError> {
        Self::build(gpu, x, scale, tok, &["SCALE"])
    }

    /// Soft-capping in place instead: `x = cap * tanh(x / cap)` (Gemma 2's final logits).
    pub fn softcap(gpu: &Gpu, x: Rows, cap: f32, tok: Tokens) -> Result<Self, GpuError> {
        if !(cap > 0.0 && cap.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "softcap: the cap {cap} must be positive"
            )));
        }
        Self::build(gpu, x, cap, tok, &["SOFTCAP"])
    }

    fn build(
        gpu: &Gpu,
        x: Rows,
        scale: f32,
        tok: Tokens,
        defines: &'static [&'static str],
    ) -> Result<Self, GpuError> {
        let width = to_u32("scale width", x.per_token())?;
        let x_offset = x.check("scale", tok.max)?;
        if x.stride == 0 {
            return Err(GpuError::Runtime(
                "scale: a token stride of 0 would scale one row once per token".into(),
            ));
        }
        let (p, groups) = params(gpu, width, tok.max, scale)?;
        let p = Params {
            x_stride: x.stride,
            x_offset,
            ..p
        };
        let key = key(defines);
        let buffers = [(1, x.view.buffer), (STEP_BINDING, &tok.step.buffer)];
        let w = width as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{width}"),
            Work::per_token(w * 8.0),
            Work::per_token(w),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

/// The parameters shared by both forms, and the grid.
fn params(
    gpu: &Gpu,
    width: u32,
    max_tokens: u32,
    scale: f32,
) -> Result<(Params, (u32, u32, u32)), GpuError> {
    let per_token = width.div_ceil(WORKGROUP);
    let p = Params {
        width,
        x_stride: 0,
        y_stride: 0,
        x_offset: 0,
        y_offset: 0,
        max_tokens,
        groups_per_token: per_token,
        scale,
    };
    Ok((p, token_grid(gpu, "add", per_token as u64, max_tokens)?))
}

fn key(defines: &'static [&'static str]) -> PipelineKey {
    PipelineKey {
        op: "add",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key(&[]), key(&["SCALE"]), key(&["SOFTCAP"])]
}

/// CPU twin of `Add` on one token row: `y + scale * x`, in f64.
pub fn cpu(x: &[f32], y: &[f32], scale: f32) -> Vec<f32> {
    x.iter()
        .zip(y)
        .map(|(x, y)| (*y as f64 + scale as f64 * *x as f64) as f32)
        .collect()
}

/// CPU twin of `Scale::softcap` on one token row: `cap * tanh(x / cap)`, in f64.
pub fn cpu_softcap(x: &[f32], cap: f32) -> Vec<f32> {
    x.iter()
        .map(|x| (cap as f64 * (*x as f64 / cap as f64).tanh()) as f32)
        .collect()
}

/// CPU twin of `Scale` on one token row: `scale * x`, in f64.
pub fn cpu_scale(x: &[f32], scale: f32) -> Vec<f32> {
    x.iter()
        .map(|x| (scale as f64 * *x as f64) as f32)
        .collect()
}

impl super::Op for Add {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

impl super::Op for Scale {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
