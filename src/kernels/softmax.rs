//! Numerically stable softmax over token rows in place (sampling distributions, up to a
//! whole vocabulary per row). Shader: `softmax.wgsl`.

use super::{build_dispatch, token_grid, Dispatch, StepBuffer, View, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the softmax kernel (one workgroup per row).
pub const WORKGROUP: u32 = 256;

params! {
    @binding(3)
    pub(crate) struct Params {
        width: u32,
        token_stride: u32,
        x_offset: u32,
        max_tokens: u32,
        scale: f32,
        _pad: [u32; 3],
    }
}

/// `x[t, :] = softmax(scale * x[t, :])` over `width` elements for the step's tokens (up
/// to `max_tokens`).
pub struct Softmax {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl Softmax {
    /// Builds the dispatch; `scale` multiplies the inputs before the exponential (e.g.
    /// 1 / temperature) and must be finite.
    pub fn new(
        gpu: &Gpu,
        x: View,
        width: u32,
        token_stride: u32,
        scale: f32,
        max_tokens: u32,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        if width == 0 || token_stride < width || !scale.is_finite() {
            return Err(GpuError::Runtime(format!(
                "softmax: width {width}, token stride {token_stride}, scale {scale} (needs width >= 1, stride >= width, finite scale)"
            )));
        }
        let x_offset = x.check_tokens("softmax", max_tokens, token_stride as u64, width as u64)?;
        let p = Params {
            width,
            token_stride,
            x_offset,
            max_tokens,
            scale,
            _pad: [0; 3],
        };
        let key = key(gpu.features.subgroups);
        let groups = token_grid(gpu, "softmax", 1, max_tokens)?;
        let buffers = [(1, x.buffer), (STEP_BINDING, &step.buffer)];
        let d = build_dispatch(gpu, &key, key.label(), &buffers, (3, &p), groups)?;
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(subgroups: bool) -> PipelineKey {
    PipelineKey {
        op: "softmax",
        variant: ShaderVariant {
            subgroups,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key(false), key(true)]
}

/// CPU twin on one row: `softmax(scale * x)`, in f64.
pub fn cpu(x: &[f32], scale: f32) -> Vec<f32> {
    let s = scale as f64;
    let m = x.iter().map(|v| s * *v as f64).fold(f64::MIN, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (s * *v as f64 - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

impl super::Op for Softmax {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
