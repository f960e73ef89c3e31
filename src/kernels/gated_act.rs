//! Gated activation of the FFN, `gate = act(gate) * up` in place (SwiGLU for Llama and
//! Qwen, GeGLU with tanh-approximated GELU for Gemma). Shader: `gated_act.wgsl`.

use super::{build_dispatch, token_grid, Dispatch, StepBuffer, View, Work, STEP_BINDING};
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
    /// Builds the dispatch; gate and up share the layout but must be different buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        gate: View,
        up: View,
        width: u32,
        token_stride: u32,
        act: Activation,
        max_tokens: u32,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        if width == 0 || token_stride < width {
            return Err(GpuError::Runtime(format!(
                "gated_act: width {width} with token stride {token_stride} (needs width >= 1 and stride >= width)"
            )));
        }
        if gate.buffer == up.buffer {
            return Err(GpuError::Runtime(
                "gated_act: gate and up must be different buffers (gate is written while up is read)".into(),
            ));
        }
        let stride = token_stride as u64;
        let gate_offset = gate.check_tokens("gated_act gate", max_tokens, stride, width as u64)?;
        let up_offset = up.check_tokens("gated_act up", max_tokens, stride, width as u64)?;
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
        let key = key(act);
        let buffers = [
            (1, gate.buffer),
            (2, up.buffer),
            (STEP_BINDING, &step.buffer),
        ];
        // The activation (GELU's tanh or SiLU's exp) counted as ~8 operations.
        let d = build_dispatch(gpu, &key, key.label(), &buffers, (3, &p), groups)?.costed(
            format!("{width}"),
            Work::per_token(width as f64 * 12.0),
            Work::per_token(width as f64 * 10.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

fn key(act: Activation) -> PipelineKey {
    let defines: &'static [&'static str] = match act {
        Activation::Silu => &["SILU"],
        Activation::GeluTanh => &["GELU_TANH"],
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
    vec![key(Activation::Silu), key(Activation::GeluTanh)]
}

/// The activation in f64: `x * sigmoid(x)` or `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn act_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// CPU twin on one token row: `act(gate) * up`, in f64.
pub fn cpu(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(g, u)| (act_f64(act, *g as f64) * *u as f64) as f32)
        .collect()
}

impl super::Op for GatedAct {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
