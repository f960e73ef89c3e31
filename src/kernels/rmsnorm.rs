//! RMSNorm over rows of f32 activations, in place, into another buffer, or added to
//! one (the post-norm + residual fusion of Gemma 3). Shader: `rmsnorm.wgsl`.

use super::{build_dispatch, token_grid, Dispatch, Rows, Tokens, View, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup sizes of the rmsnorm kernel (one workgroup per row): see [`workgroup`].
pub const WORKGROUPS: [u32; 3] = [super::CPU_ROW_WORKGROUP, 128, 512];

/// The workgroup for rows of `width` on `gpu`: on a CPU adapter one 8-lane subgroup
/// (`cpu_rows`); elsewhere 128, or 512 from 2048 elements up, so a wide row's passes
/// take a few loads per invocation rather than dozens of dependent rounds (an H200 spent
/// 33 us per 4096-wide residual norm with 128).
pub fn workgroup(gpu: &Gpu, width: u32) -> u32 {
    super::row_workgroup(gpu, gpu_workgroup(width))
}

/// `workgroup` off a CPU adapter.
fn gpu_workgroup(width: u32) -> u32 {
    if width >= 2048 {
        512
    } else {
        128
    }
}

params! {
    @binding(4)
    pub(crate) struct Params {
        width: u32,
        rows_per_token: u32,
        token_stride: u32,
        max_tokens: u32,
        x_offset: u32,
        out_offset: u32,
        eps: f32,
        _pad: u32,
    }
}

/// Where the normalized rows go.
#[derive(Clone, Copy)]
pub enum NormOut<'a> {
    /// Back into x.
    InPlace,
    /// Into this view, laid out like x (a buffer other than x's).
    To(View<'a>),
    /// Added to this view, laid out like x: the post-norm fused with the residual add.
    AddTo(View<'a>),
}

/// `n = x / sqrt(mean(x^2) + eps) * w` over `rows_per_token` rows of `width` elements per
/// token, for the step's tokens (up to `max_tokens`).
pub struct RmsNorm {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl RmsNorm {
    /// Builds the dispatch: each row of `x` normalized and multiplied by `w` (`x.width`
    /// f32 weights), the result going where `out` says (an output view is laid out like x).
    pub fn new(
        gpu: &Gpu,
        x: Rows,
        out: NormOut,
        w: &wgpu::Buffer,
        eps: f32,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let (width, rows_per_token, token_stride) = (x.width, x.rows, x.stride);
        let per_token = x.per_token();
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "rmsnorm: eps {eps} is not a finite value >= 0"
            )));
        }
        if w.size() < width as u64 * 4 {
            return Err(GpuError::Runtime(format!(
                "rmsnorm weight: needs {} bytes but the buffer has {}",
                width as u64 * 4,
                w.size()
            )));
        }
        let max_tokens = tok.max;
        let x_offset = x.check("rmsnorm input", max_tokens)?;
        if token_stride == 0 {
            return Err(GpuError::Runtime(
                "rmsnorm: a token stride of 0 would normalize one row for every token".into(),
            ));
        }
        let stride = token_stride as u64;
        let (defines, o): (&'static [&'static str], Option<View>) = match out {
            NormOut::InPlace => (&[], None),
            NormOut::To(o) => (&["OUT"], Some(o)),
            NormOut::AddTo(o) => (&["OUT", "ADD"], Some(o)),
        };
        let mut out_offset = 0;
        let mut buffers = vec![(1, x.view.buffer), (3, w), (STEP_BINDING, &tok.step.buffer)];
        if let Some(o) = o {
            if o.buffer == x.view.buffer {
                return Err(GpuError::Runtime(
                    "rmsnorm: the output must be a buffer other than x's (use NormOut::InPlace to normalize x itself)".into(),
                ));
            }
            out_offset = o.check_tokens("rmsnorm output", max_tokens, stride, per_token)?;
            buffers.push((2, o.buffer));
        }
        let p = Params {
            width,
            rows_per_token,
            token_stride,
            max_tokens,
            x_offset,
            out_offset,
            eps,
            _pad: 0,
        };
        let key = key(defines, gpu.features.subgroups, workgroup(gpu, width));
        let groups = token_grid(gpu, "rmsnorm", rows_per_token as u64, max_tokens)?;
        // Read x, write the result (and read what it is added to), read the weights.
        let io = if defines.len() == 2 { 12.0 } else { 8.0 };
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{rows_per_token}x{width}"),
            Work {
                c: width as f64 * 4.0,
                t: per_token as f64 * io,
                ..Work::default()
            },
            Work::per_token(per_token as f64 * 4.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(defines: &'static [&'static str], subgroups: bool, wg: u32) -> PipelineKey {
    PipelineKey {
        op: "rmsnorm",
        variant: ShaderVariant {
            subgroups,
            defines,
            ..ShaderVariant::new(wg)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    const DEFINES: [&[&str]; 3] = [&[], &["OUT"], &["OUT", "ADD"]];
    let mut v = Vec::new();
    for d in DEFINES {
        for sg in [false, true] {
            v.extend(WORKGROUPS.map(|wg| key(d, sg, wg)));
        }
    }
    v
}

/// CPU twin: one row normalized, `x / sqrt(mean(x^2) + eps) * w`, in f64.
pub fn cpu(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let k = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, w)| (*v as f64 * k * *w as f64) as f32)
        .collect()
}

impl super::Op for RmsNorm {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_rows_take_128_and_wide_rows_512() {
        assert_eq!(gpu_workgroup(640), 128);
        assert_eq!(gpu_workgroup(2047), 128);
        assert_eq!(gpu_workgroup(2048), 512);
        assert_eq!(gpu_workgroup(4096), 512);
        for w in [1, 2047, 2048] {
            assert!(WORKGROUPS.contains(&gpu_workgroup(w)));
        }
    }
}
