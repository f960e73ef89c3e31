//! Element-wise add with scale over token rows (residuals, biases) and in-place scaling.
//! Shader: `add.wgsl` (`SCALE` selects the in-place form).

use super::{build_dispatch, token_grid, Dispatch, StepBuffer, View, Work, STEP_BINDING};
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
    /// Builds the dispatch; x and y must be different buffers. With `broadcast_x` x holds
    /// one row of `width` and `token_stride_x` is ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        x: View,
        y: View,
        width: u32,
        token_stride_x: u32,
        token_stride_y: u32,
        broadcast_x: bool,
        scale: f32,
        max_tokens: u32,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        let x_stride = if broadcast_x { 0 } else { token_stride_x };
        check_stride("add x", width, x_stride, broadcast_x)?;
        check_stride("add y", width, token_stride_y, false)?;
        if x.buffer == y.buffer {
            return Err(GpuError::Runtime(
                "add: x and y must be different buffers (y is written while x is read)".into(),
            ));
        }
        let x_tokens = if broadcast_x { 1 } else { max_tokens };
        let x_offset = x.check_tokens("add x", x_tokens, x_stride as u64, width as u64)?;
        let y_offset = y.check_tokens("add y", max_tokens, token_stride_y as u64, width as u64)?;
        let (p, groups) = params(gpu, width, max_tokens, scale)?;
        let p = Params {
            x_stride,
            y_stride: token_stride_y,
            x_offset,
            y_offset,
            ..p
        };
        let key = key(&[]);
        let buffers = [(1, x.buffer), (2, y.buffer), (STEP_BINDING, &step.buffer)];
        let w = width as f64;
        let x_bytes = if broadcast_x { w * 4.0 } else { 0.0 };
        let d = build_dispatch(gpu, &key, key.label(), &buffers, (3, &p), groups)?.costed(
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
    /// Builds the dispatch.
    pub fn new(
        gpu: &Gpu,
        x: View,
        width: u32,
        token_stride: u32,
        scale: f32,
        max_tokens: u32,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        check_stride("scale", width, token_stride, false)?;
        let x_offset = x.check_tokens("scale", max_tokens, token_stride as u64, width as u64)?;
        let (p, groups) = params(gpu, width, max_tokens, scale)?;
        let p = Params {
            x_stride: token_stride,
            x_offset,
            ..p
        };
        let key = key(&["SCALE"]);
        let buffers = [(1, x.buffer), (STEP_BINDING, &step.buffer)];
        let w = width as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, (3, &p), groups)?.costed(
            format!("{width}"),
            Work::per_token(w * 8.0),
            Work::per_token(w),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

/// Rows `stride` apart must not overlap (invocations of different tokens would race).
fn check_stride(what: &str, width: u32, stride: u32, broadcast: bool) -> Result<(), GpuError> {
    if width == 0 || (!broadcast && stride < width) {
        return Err(GpuError::Runtime(format!(
            "{what}: width {width} with token stride {stride} (needs width >= 1 and stride >= width)"
        )));
    }
    Ok(())
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
    vec![key(&[]), key(&["SCALE"])]
}

/// CPU twin of `Add` on one token row: `y + scale * x`, in f64.
pub fn cpu(x: &[f32], y: &[f32], scale: f32) -> Vec<f32> {
    x.iter()
        .zip(y)
        .map(|(x, y)| (*y as f64 + scale as f64 * *x as f64) as f32)
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
