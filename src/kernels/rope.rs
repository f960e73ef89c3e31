//! Rotary position embedding (RoPE) in place on q or k, normal (pairs 2i, 2i+1) or NeoX
//! style (pairs i, i + rope_dims/2), with optional per-frequency factors (Llama 3 rope
//! scaling). Shader: `rope.wgsl`, which explains how it keeps the angle accurate at any
//! position.

use super::{build_dispatch, check_rows, token_grid, Dispatch, Rows, Tokens, Work, STEP_BINDING};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};
use wgpu::util::DeviceExt;

/// Workgroup size of the rope kernel (one invocation per rotary pair).
pub const WORKGROUP: u32 = 64;

params! {
    @binding(4)
    pub(crate) struct Params {
        n_heads: u32,
        head_dim: u32,
        half_dims: u32,
        token_stride: u32,
        x_offset: u32,
        max_tokens: u32,
        groups_per_token: u32,
        mscale: f32,
    }
}

/// Rotates the first `rope_dims` dimensions of every head of the step's tokens (up to
/// `max_tokens`) by `theta_i = (pos * pos_scale) * base^(-2i/rope_dims) / freq_factors[i]`,
/// with `pos = step.pos + t`.
pub struct Rope {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
    /// The frequency table the dispatch reads, kept with it.
    _freq: wgpu::Buffer,
}

/// What a RoPE rotates and how: the first `dims` dimensions of each head, pair `i` by
/// `theta_i = pos * pos_scale * base^(-2i/dims)` (divided by a frequency factor when the
/// model has them), pairs `(i, i + dims/2)` with `neox`, else `(2i, 2i + 1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeSpec {
    /// Rotated dimensions per head (even, at most the head width).
    pub dims: u32,
    /// Frequency base.
    pub base: f32,
    /// Position multiplier (linear scaling: 1 / factor).
    pub pos_scale: f32,
    /// NeoX pairing.
    pub neox: bool,
    /// Multiplier of every rotated pair's cos and sin (YaRN's attention factor, Phi-3's
    /// LongRoPE factor); 1 for none.
    pub mscale: f32,
    /// YaRN's frequency ramp, when the model uses YaRN.
    pub yarn: Option<YarnRamp>,
}

impl RopeSpec {
    /// Plain RoPE: no YaRN, no magnitude scale.
    pub fn plain(dims: u32, base: f32, pos_scale: f32, neox: bool) -> Self {
        Self {
            dims,
            base,
            pos_scale,
            neox,
            mscale: 1.0,
            yarn: None,
        }
    }

    /// Pair `i`'s angle per position, in radians (before frequency factors).
    pub fn theta(&self, i: usize) -> f64 {
        let f = self.pos_scale as f64 * (self.base as f64).powf(-2.0 * i as f64 / self.dims as f64);
        f * self.yarn.map_or(1.0, |y| y.factor(i))
    }
}

/// YaRN (Peng et al., "YaRN: Efficient Context Window Extension of Large Language
/// Models", 2023), as ggml computes it: pair `i` turns at `freq_scale` times its speed
/// (interpolated) below the ramp `[lo, hi]` of pair indices and at its own speed
/// (extrapolated) above it, mixed linearly on the ramp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YarnRamp {
    /// 1 / the context extension factor.
    pub freq_scale: f32,
    /// First pair index of the ramp (`floor` of the correction dim of beta_fast, >= 0).
    pub lo: f32,
    /// Last pair index of the ramp (`ceil` of the correction dim of beta_slow, <= dims - 1).
    pub hi: f32,
}

impl YarnRamp {
    /// The ramp for `dims` rotary dims at frequency `base`, a model trained on
    /// `n_ctx_orig` positions, and the betas (ggml's correction dims).
    pub fn new(freq_scale: f32, dims: u32, base: f32, n_ctx_orig: u32, beta: (f32, f32)) -> Self {
        let corr = |b: f32| {
            dims as f64 * (n_ctx_orig as f64 / (b as f64 * std::f64::consts::TAU)).ln()
                / (2.0 * (base as f64).ln())
        };
        Self {
            freq_scale,
            lo: corr(beta.0).floor().max(0.0) as f32,
            hi: corr(beta.1).ceil().min(dims as f64 - 1.0) as f32,
        }
    }

    /// Multiplier of pair `i`'s frequency.
    pub fn factor(&self, i: usize) -> f64 {
        let y = (i as f64 - self.lo as f64) / (self.hi as f64 - self.lo as f64).max(0.001);
        let extrapolate = 1.0 - y.clamp(0.0, 1.0);
        self.freq_scale as f64 * (1.0 - extrapolate) + extrapolate
    }
}

impl Rope {
    /// Builds the dispatch; x holds `x.rows` heads of `x.width` per token, and
    /// `freq_factors` (if any) `spec.dims / 2` f32 divisors, each in [2^-32, 2^94]
    /// (Llama 3's are 1 to 8).
    pub fn new(
        gpu: &Gpu,
        x: Rows,
        spec: RopeSpec,
        freq_factors: Option<&wgpu::Buffer>,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let (n_heads, head_dim, token_stride, max_tokens) = (x.rows, x.width, x.stride, tok.max);
        check_rows("rope", tok.max)?;
        if n_heads == 0 || token_stride == 0 {
            return Err(GpuError::Runtime(format!(
                "rope: {n_heads} heads, token stride {token_stride} (needs heads >= 1 and a stride)"
            )));
        }
        let freq = frequencies(gpu, spec, head_dim, freq_factors)?;
        let half = spec.dims / 2;
        let x_offset = x.check("rope", max_tokens)?;
        let pairs = n_heads * half;
        let per_token_groups = pairs.div_ceil(WORKGROUP);
        let p = Params {
            n_heads,
            head_dim,
            half_dims: half,
            token_stride,
            x_offset,
            max_tokens,
            groups_per_token: per_token_groups,
            mscale: spec.mscale,
        };
        let groups = token_grid(gpu, "rope", per_token_groups as u64, max_tokens)?;
        let key = key(spec.neox, freq_factors.is_some());
        let mut buffers = vec![
            (1, x.view.buffer),
            (2, &freq),
            (STEP_BINDING, &tok.step.buffer),
        ];
        if let Some(f) = freq_factors {
            buffers.push((3, f));
        }
        let rotated = (n_heads * half * 2) as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{n_heads}x{head_dim}"),
            Work::per_token(rotated * 8.0),
            Work::per_token(rotated * 3.0),
        );
        Ok(Self {
            dispatches: vec![d],
            _freq: freq,
        })
    }
}

/// Checks `spec` against heads of `head_dim` and the frequency factors (`dims / 2` f32
/// divisors), and uploads the fixed-point frequency table the RoPE kernels read.
pub(crate) fn frequencies(
    gpu: &Gpu,
    spec: RopeSpec,
    head_dim: u32,
    freq_factors: Option<&wgpu::Buffer>,
) -> Result<wgpu::Buffer, GpuError> {
    let RopeSpec {
        dims,
        base,
        pos_scale,
        ..
    } = spec;
    // 0 rotary dims: positions turn nothing (BERT, whose positions are embeddings).
    if !dims.is_multiple_of(2) || dims > head_dim {
        return Err(GpuError::Runtime(format!(
            "rope: {dims} rotary dims on heads of {head_dim} (needs even rotary dims in 0..=head_dim)"
        )));
    }
    if !(base > 0.0 && base.is_finite() && pos_scale.is_finite()) {
        return Err(GpuError::Runtime(format!(
            "rope: base {base} must be finite and > 0, position scale {pos_scale} finite"
        )));
    }
    if !(spec.mscale > 0.0 && spec.mscale.is_finite()) {
        return Err(GpuError::Runtime(format!(
            "rope: magnitude scale {} must be finite and > 0",
            spec.mscale
        )));
    }
    let half = dims / 2;
    if let Some(f) = freq_factors {
        if f.size() < half as u64 * 4 {
            return Err(GpuError::Runtime(format!(
                "rope frequency factors: needs {} bytes but the buffer has {}",
                half as u64 * 4,
                f.size()
            )));
        }
    }
    let mut table = freq_table(&spec);
    if table.is_empty() {
        // A storage binding may not be empty.
        table.push([0, 0]);
    }
    Ok(gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("rope frequencies"),
            contents: bytemuck::cast_slice(&table),
            usage: wgpu::BufferUsages::STORAGE,
        }))
}

/// The fraction of `g_i = theta_i / (2 pi)` turns per position (`RopeSpec::theta`: the
/// base's frequency times the position scale and YaRN's factor), in 64-bit fixed point as
/// (low, high) words: positions are integers, so whole turns of g_i never matter (see
/// rope.wgsl). Computed in f64: 53 significant bits, an error of about 2^-56 turn per
/// position.
fn freq_table(spec: &RopeSpec) -> Vec<[u32; 2]> {
    (0..spec.dims as usize / 2)
        .map(|i| {
            let g = spec.theta(i) / std::f64::consts::TAU;
            // frac(g) rounds up to 1.0 (a whole turn, so 0) only for tiny negative g;
            // otherwise the product with 2^64 is exact and fits.
            let f = g - g.floor();
            let fixed = if f >= 1.0 {
                0
            } else {
                (f * 18446744073709551616.0) as u64
            };
            [fixed as u32, (fixed >> 32) as u32]
        })
        .collect()
}

fn key(neox: bool, freq_factors: bool) -> PipelineKey {
    let defines: &'static [&'static str] = match (neox, freq_factors) {
        (false, false) => &[],
        (true, false) => &["NEOX"],
        (false, true) => &["FREQ_FACTORS"],
        (true, true) => &["NEOX", "FREQ_FACTORS"],
    };
    PipelineKey {
        op: "rope",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .map(|(n, f)| key(n, f))
        .collect()
}

/// CPU twin on one head of one token at position `pos`, in f64.
pub fn cpu(head: &[f32], spec: RopeSpec, pos: u32, freq_factors: Option<&[f32]>) -> Vec<f32> {
    let mut out = head.to_vec();
    let half = spec.dims as usize / 2;
    for i in 0..half {
        let mut theta = pos as f64 * spec.theta(i);
        if let Some(f) = freq_factors {
            theta /= f[i] as f64;
        }
        let (s, c) = theta.sin_cos();
        let (s, c) = (s * spec.mscale as f64, c * spec.mscale as f64);
        let (a, b) = if spec.neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (head[a] as f64, head[b] as f64);
        out[a] = (x0 * c - x1 * s) as f32;
        out[b] = (x0 * s + x1 * c) as f32;
    }
    out
}

impl super::Op for Rope {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
