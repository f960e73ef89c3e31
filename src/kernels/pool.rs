//! Pooling token rows into one vector: the sentence embedding of an embedding model
//! (mean over the tokens, or the CLS / last token's row), as llama.cpp's
//! `build_pooling` does after the final norm. Built once over the prefill batch; the
//! rows, scale and accumulation of each step are written with `set` before it runs, so a
//! long input pools across prefill chunks. Shader: `pool.wgsl`.

use super::{build_dispatch, to_u32, Dispatch, Rows, Tokens, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};
use wgpu::util::DeviceExt;

/// Workgroup size (one invocation per column).
pub const WORKGROUP: u32 = 64;

params! {
    @binding(3)
    pub(crate) struct Params {
        width: u32,
        stride: u32,
        x_offset: u32,
        max_tokens: u32,
    }
}

/// What one step pools: the step's tokens `first..first + count` (clamped to the step),
/// each times `scale`, added to the output when `accumulate`, else replacing it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolStep {
    /// First token row of the step to pool.
    pub first: u32,
    /// Rows to pool from `first`.
    pub count: u32,
    /// Factor of each row (mean pooling: 1 / tokens in all).
    pub scale: f32,
    /// Add to what the output holds (a later chunk of mean pooling).
    pub accumulate: bool,
}

impl PoolStep {
    fn words(&self) -> [u32; 4] {
        [
            self.first,
            self.count,
            self.scale.to_bits(),
            self.accumulate as u32,
        ]
    }
}

/// `out[i] = (accumulate ? out[i] : 0) + scale * sum_t x[t, i]` over the step's pooled
/// rows (see [`PoolStep`]).
pub struct Pool {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
    args: wgpu::Buffer,
}

impl Pool {
    /// Builds the dispatch over up to `tok.max` token rows of `x` into `out`
    /// (`x.width` elements; a buffer other than x's).
    pub fn new(gpu: &Gpu, x: Rows, out: &wgpu::Buffer, tok: Tokens) -> Result<Self, GpuError> {
        if x.rows != 1 || x.stride == 0 {
            return Err(GpuError::Runtime(
                "pool: x must be one row per token with a non-zero stride".into(),
            ));
        }
        if x.view.buffer == out {
            return Err(GpuError::Runtime(
                "pool: out must be another buffer than x".into(),
            ));
        }
        let x_offset = x.check("pool x", tok.max)?;
        let width = x.width;
        if out.size() < width as u64 * 4 {
            return Err(GpuError::Runtime(format!(
                "pool: out has {} bytes, {width} floats needed",
                out.size()
            )));
        }
        let args = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("pool args"),
                contents: bytemuck::cast_slice(&[0u32, 0, 0, 0]),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            });
        let p = Params {
            width,
            stride: x.stride,
            x_offset,
            max_tokens: tok.max,
        };
        let groups = to_u32("pool groups", (width as u64).div_ceil(WORKGROUP as u64))?;
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        if groups > max {
            return Err(GpuError::Runtime(format!(
                "pool: width {width} needs {groups} workgroups (limit {max})"
            )));
        }
        let key = key();
        let buffers = [
            (0, x.view.buffer),
            (1, out),
            (2, &args),
            (STEP_BINDING, &tok.step.buffer),
        ];
        let w = width as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, (groups, 1, 1))?.costed(
            format!("{width}"),
            Work {
                c: w * 8.0,
                t: w * 4.0,
                ..Work::default()
            },
            Work::per_token(w),
        );
        Ok(Self {
            dispatches: vec![d],
            args,
        })
    }

    /// What the next step pools.
    pub fn set(&self, gpu: &Gpu, s: PoolStep) {
        gpu.queue
            .write_buffer(&self.args, 0, bytemuck::cast_slice(&s.words()));
    }
}

fn key() -> PipelineKey {
    PipelineKey {
        op: "pool",
        variant: ShaderVariant::new(WORKGROUP),
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key()]
}

/// CPU twin: `x` is `n` rows of `width`; `prev` is the output before the step; in f64.
pub fn cpu(x: &[f32], width: usize, s: PoolStep, prev: &[f32]) -> Vec<f32> {
    let n = x.len() / width.max(1);
    let first = (s.first as usize).min(n);
    let end = (first + (s.count as usize).min(n)).min(n);
    (0..width)
        .map(|i| {
            let sum: f64 = (first..end).map(|t| x[t * width + i] as f64).sum();
            let acc = if s.accumulate { prev[i] as f64 } else { 0.0 };
            (acc + s.scale as f64 * sum) as f32
        })
        .collect()
}

impl super::Op for Pool {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
