//! A sub-block's residual add fused with the next pre-norm: `x += o` (or `x +=
//! RmsNorm(o) * post` with a post-norm), then `h = RmsNorm(x) * w`, one dispatch where
//! there were two. Shader: `residual_norm.wgsl`.

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
/// sub-block output `o` and the normed output `h`, both laid out like x, and the weights.
#[derive(Clone, Copy)]
pub struct ResidualNormIo<'a> {
    /// The residual stream, updated in place.
    pub x: Rows<'a>,
    /// The sub-block's output.
    pub o: View<'a>,
    /// Where the next sub-block's normed input goes.
    pub h: View<'a>,
    /// The post-norm weights of `o`, when the model has them.
    pub post: Option<&'a wgpu::Buffer>,
    /// The pre-norm weights of the next sub-block.
    pub norm: &'a wgpu::Buffer,
}

/// `x[t] += o[t]` (through the post-norm), then `h[t] = RmsNorm(x[t]) * norm`, for the
/// step's tokens (up to `tok.max`).
pub struct ResidualNorm {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl ResidualNorm {
    /// Builds the dispatch; x, o and h must be three different buffers.
    pub fn new(gpu: &Gpu, io: ResidualNormIo, eps: f32, tok: Tokens) -> Result<Self, GpuError> {
        let what = "residual_norm";
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
        let bufs = [io.x.view.buffer, io.o.buffer, io.h.buffer];
        if bufs[0] == bufs[1] || bufs[0] == bufs[2] || bufs[1] == bufs[2] {
            return Err(GpuError::Runtime(format!(
                "{what}: x, o and h must be three different buffers"
            )));
        }
        for w in io.post.iter().chain([&io.norm]) {
            if w.size() < width as u64 * 4 {
                return Err(GpuError::Runtime(format!(
                    "{what}: weights need {} bytes but a buffer has {}",
                    width as u64 * 4,
                    w.size()
                )));
            }
        }
        let x_offset = io.x.check(what, tok.max)?;
        let o_offset = Rows { view: io.o, ..io.x }.check("residual_norm o", tok.max)?;
        let h_offset = Rows { view: io.h, ..io.x }.check("residual_norm h", tok.max)?;
        // Four elements at a time where every row starts on a vec4 (`VEC4`); the params
        // then count vec4s.
        let vec4 = [width, stride, x_offset, o_offset, h_offset]
            .iter()
            .all(|v| v.is_multiple_of(4));
        let pack = if vec4 { 4 } else { 1 };
        let p = Params {
            width: width / pack,
            token_stride: stride / pack,
            max_tokens: tok.max,
            x_offset: x_offset / pack,
            o_offset: o_offset / pack,
            h_offset: h_offset / pack,
            eps,
            _pad: 0,
        };
        let key = key(
            io.post.is_some(),
            vec4,
            gpu.features.subgroups,
            workgroup(gpu, width / pack),
        );
        let mut buffers = vec![
            (0, io.x.view.buffer),
            (1, io.o.buffer),
            (2, io.h.buffer),
            (4, io.norm),
            (STEP_BINDING, &tok.step.buffer),
        ];
        if let Some(post) = io.post {
            buffers.push((5, post));
        }
        let groups = token_grid(gpu, what, 1, tok.max)?;
        // Per token: x read and written, o read, h written; the weights once.
        let wf = width as f64;
        let weights = if io.post.is_some() { 8.0 } else { 4.0 };
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{width}"),
            Work {
                c: wf * weights,
                t: wf * 16.0,
                ..Work::default()
            },
            Work::per_token(wf * if io.post.is_some() { 8.0 } else { 5.0 }),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(post: bool, vec4: bool, subgroups: bool, wg: u32) -> PipelineKey {
    PipelineKey {
        op: "residual_norm",
        variant: ShaderVariant {
            subgroups,
            defines: match (post, vec4) {
                (false, false) => &[],
                (true, false) => &["POST"],
                (false, true) => &["VEC4"],
                (true, true) => &["POST", "VEC4"],
            },
            ..ShaderVariant::new(wg)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    let mut v = Vec::new();
    for post in [false, true] {
        for vec4 in [false, true] {
            for sg in [false, true] {
                v.extend(WORKGROUPS.map(|wg| key(post, vec4, sg, wg)));
            }
        }
    }
    v
}

/// CPU twin on one token: returns the new `x` and `h`, in f64 through the rmsnorm twin.
pub fn cpu(
    x: &[f32],
    o: &[f32],
    post: Option<&[f32]>,
    w: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let add = match post {
        Some(pw) => super::rmsnorm::cpu(o, pw, eps),
        None => o.to_vec(),
    };
    let x: Vec<f32> = x.iter().zip(&add).map(|(a, b)| a + b).collect();
    let h = super::rmsnorm::cpu(&x, w, eps);
    (x, h)
}

impl super::Op for ResidualNorm {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
