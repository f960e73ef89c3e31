//! Gated activation of the FFN, `gate = act(gate) * up` in place (SwiGLU for Llama and
//! Qwen, GeGLU with tanh-approximated GELU for Gemma), or the plain activation
//! `x = act(x)` of an ungated FFN (BERT's GELU). Shader: `gated_act.wgsl`.

use super::{build_dispatch, to_u32, token_grid, Dispatch, Rows, Tokens, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};
use crate::model::Activation;

/// Workgroup size of the gated_act kernel (one invocation per element).
pub const WORKGROUP: u32 = 256;

params! {
    @binding(3)
    pub(crate) struct Params {
        width: u32,
        token_stride: u32,
        gate_offset: u32,
        up_offset: u32,
        max_tokens: u32,
        groups_per_token: u32,
        _pad: [u32; 2],
    }
}

/// `gate[t, i] = act(gate[t, i]) * up[t, i]` for `i < width` and the step's tokens (up
/// to `max_tokens`).
pub struct GatedAct {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

impl GatedAct {
    /// Builds the dispatch; gate and up share one layout but must be different buffers.
    pub fn new(
        gpu: &Gpu,
        gate: Rows,
        up: Rows,
        act: Activation,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        if (up.per_token(), up.stride) != (gate.per_token(), gate.stride) || gate.stride == 0 {
            return Err(GpuError::Runtime(format!(
                "gated_act: gate ({} per token, stride {}) and up ({} per token, stride {}) must share one layout with a token stride",
                gate.per_token(), gate.stride, up.per_token(), up.stride
            )));
        }
        if gate.view.buffer == up.view.buffer {
            return Err(GpuError::Runtime(
                "gated_act: gate and up must be different buffers (gate is written while up is read)".into(),
            ));
        }
        let up_offset = up.check("gated_act up", tok.max)?;
        Self::build(gpu, gate, Some((up.view.buffer, up_offset)), act, tok)
    }

    /// `x[t, i] = act(x[t, i])` in place (an ungated FFN's activation); `act` must be
    /// an activation of one value (not gpt-oss's SwiGLU).
    pub fn plain(gpu: &Gpu, x: Rows, act: Activation, tok: Tokens) -> Result<Self, GpuError> {
        if act == Activation::SwigluOai || x.stride == 0 {
            return Err(GpuError::Runtime(format!(
                "gated_act: a plain {act:?} over rows at stride {} (needs a one-value activation and a token stride)",
                x.stride
            )));
        }
        to_u32("gated_act width", x.per_token())?;
        Self::build(gpu, x, None, act, tok)
    }

    /// The dispatch over `gate`, gated by `up` (its buffer and checked offset) if given.
    fn build(
        gpu: &Gpu,
        gate: Rows,
        up: Option<(&wgpu::Buffer, u32)>,
        act: Activation,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let (width, token_stride, max_tokens) = (
            to_u32("gated_act width", gate.per_token())?,
            gate.stride,
            tok.max,
        );
        let gate_offset = gate.check("gated_act gate", max_tokens)?;
        let up_offset = up.map_or(0, |u| u.1);
        let per_token = width.div_ceil(WORKGROUP);
        let p = Params {
            width,
            token_stride,
            gate_offset,
            up_offset,
            max_tokens,
            groups_per_token: per_token,
            _pad: [0; 2],
        };
        let groups = token_grid(gpu, "gated_act", per_token as u64, max_tokens)?;
        let key = key(act, up.is_none());
        let mut buffers = vec![(1, gate.view.buffer), (STEP_BINDING, &tok.step.buffer)];
        if let Some((u, _)) = up {
            buffers.push((2, u));
        }
        // The activation (GELU's tanh or SiLU's exp) counted as ~8 operations.
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{width}"),
            Work::per_token(width as f64 * 12.0),
            Work::per_token(width as f64 * 10.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(act: Activation, plain: bool) -> PipelineKey {
    let defines: &'static [&'static str] = match (act, plain) {
        (Activation::Silu, false) => &["SILU"],
        (Activation::GeluTanh, false) => &["GELU_TANH"],
        (Activation::SwigluOai, _) => &["SWIGLU_OAI"],
        (Activation::Silu, true) => &["SILU", "PLAIN"],
        (Activation::GeluTanh, true) => &["GELU_TANH", "PLAIN"],
    };
    PipelineKey {
        op: "gated_act",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    let mut v: Vec<_> = Activation::ALL.into_iter().map(|a| key(a, false)).collect();
    v.extend([Activation::Silu, Activation::GeluTanh].map(|a| key(a, true)));
    v
}

/// The activation in f64: `x * sigmoid(x)` or `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn act_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
        // Not an activation of the gate alone (see `gated_f64`).
        Activation::SwigluOai => x,
    }
}

/// The gated value of one element, in f64: `act(gate) * up`, or gpt-oss's
/// `min(g, 7) * sigmoid(1.702 min(g, 7)) * (clamp(u, -7, 7) + 1)`.
pub fn gated_f64(act: Activation, g: f64, u: f64) -> f64 {
    match act {
        Activation::SwigluOai => {
            let c = g.min(7.0);
            c / (1.0 + (-1.702 * c).exp()) * (u.clamp(-7.0, 7.0) + 1.0)
        }
        _ => act_f64(act, g) * u,
    }
}

/// CPU twin on one token row: `act(gate) * up` (see `gated_f64`), in f64.
pub fn cpu(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(g, u)| gated_f64(act, *g as f64, *u as f64) as f32)
        .collect()
}

/// CPU twin of [`GatedAct::plain`] on one token row, in f64.
pub fn cpu_plain(x: &[f32], act: Activation) -> Vec<f32> {
    x.iter().map(|v| act_f64(act, *v as f64) as f32).collect()
}

impl super::Op for GatedAct {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
