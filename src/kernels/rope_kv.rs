//! Attention's per-head preparation in one dispatch: the optional per-head RMSNorm of q
//! and k, RoPE on both, and the append of the rotated keys and the values to the KV
//! cache. It replaces five dispatches (two norms, two RoPEs, the append) with one.
//! Shader: `rope_kv.wgsl`.

use super::attention_decode::{check_heads, AttnSpec, MAX_HEAD_DIM};
use super::rope::{frequencies, RopeSpec};
use super::{
    build_dispatch, check_rows, token_grid, Dispatch, KvCache, KvType, Rows, Tokens, Work,
    STEP_BINDING,
};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size (one workgroup per token and head); `CPU_ROW_WORKGROUP` on CPU
/// adapters (`cpu_rows`).
pub const WORKGROUP: u32 = 64;

params! {
    @binding(3)
    pub(crate) struct Params {
        n_heads: u32,
        n_kv_heads: u32,
        head_dim: u32,
        half_dims: u32,
        q_stride: u32,
        kv_stride: u32,
        q_offset: u32,
        k_offset: u32,
        v_offset: u32,
        capacity: u32,
        max_tokens: u32,
        eps: f32,
        mscale: f32,
        temp_scale: f32,
        temp_floor: u32,
        qo_offset: u32,
        qo_stride: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// What the op reads and writes besides the cache.
#[derive(Clone, Copy)]
pub struct RopeKvIo<'a> {
    /// Query heads, rotated in place (or into `q_out`).
    pub q: Rows<'a>,
    /// Where the rotated query heads go instead (`n_heads` rows of `head_dim` per token,
    /// in another buffer): q is then only read, so q, k and v may be rows of one buffer
    /// (one projection's output).
    pub q_out: Option<Rows<'a>>,
    /// Key heads, rotated into the cache.
    pub k: Rows<'a>,
    /// Value heads, copied into the cache.
    pub v: Rows<'a>,
    /// Per-head RMSNorm weights of q and k (`head_dim` each) and the norm's epsilon.
    pub norms: Option<([&'a wgpu::Buffer; 2], f32)>,
    /// RoPE frequency divisors (`rope.dims / 2` f32), when the model has them.
    pub freq_factors: Option<&'a wgpu::Buffer>,
    /// Attention temperature (Llama 4, Mistral 3): after RoPE, q at position `pos` is
    /// multiplied by `1 + scale * ln(floor(pos / floor) + 1)`, as (scale, floor).
    pub q_temp: Option<(f32, u32)>,
}

/// The attention temperature's multiplier of q at `pos` (see `RopeKvIo::q_temp`).
pub fn q_temp_factor(q_temp: Option<(f32, u32)>, pos: u32) -> f64 {
    match q_temp {
        Some((scale, floor)) => 1.0 + scale as f64 * ((pos / floor.max(1)) as f64 + 1.0).ln(),
        None => 1.0,
    }
}

/// `q[t, h] = rope(norm(q[t, h]))` in place (or into `q_out`), and at cache row `step.pos + t`:
/// `K[kh] = rope(norm(k[t, kh]))`, `V[kh] = v[t, kh]`, for the step's tokens (up to
/// `tok.max`), with `pos = step.pos + t`.
pub struct RopeKv {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
    /// The frequency table the dispatch reads, kept with it.
    _freq: wgpu::Buffer,
}

impl RopeKv {
    /// Builds the dispatch. `heads` gives the head layout (its scale and window are not
    /// used); `io.q` must hold `n_heads` rows of `head_dim` per token, `io.k` and `io.v`
    /// `n_kv_heads` rows each, with one token stride for k and v.
    pub fn new(
        gpu: &Gpu,
        heads: &AttnSpec,
        rope: RopeSpec,
        io: RopeKvIo,
        cache: &KvCache,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let what = "rope_kv";
        check_heads(what, cache, heads)?;
        check_rows(what, tok.max)?;
        let AttnSpec {
            n_heads,
            n_kv_heads,
            head_dim,
            ..
        } = *heads;
        let shape = |r: Rows, n: u32| r.rows == n && r.width == head_dim;
        if let Some(o) = io.q_out {
            let same = [io.q, io.k, io.v]
                .iter()
                .any(|r| r.view.buffer == o.view.buffer);
            if !shape(o, n_heads) || o.stride == 0 || same {
                return Err(GpuError::Runtime(format!(
                    "{what}: q_out must hold {n_heads} heads of {head_dim} per token, in a buffer other than q's, k's and v's"
                )));
            }
        }
        if !shape(io.q, n_heads)
            || !shape(io.k, n_kv_heads)
            || !shape(io.v, n_kv_heads)
            || io.k.stride != io.v.stride
            || io.q.stride == 0
            || io.k.stride == 0
        {
            return Err(GpuError::Runtime(format!(
                "{what}: q, k, v must hold {n_heads}, {n_kv_heads} and {n_kv_heads} heads of {head_dim} per token, k and v at one token stride"
            )));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(GpuError::Runtime(format!(
                "{what}: head_dim {head_dim} above {MAX_HEAD_DIM}"
            )));
        }
        let freq = frequencies(gpu, rope, head_dim, io.freq_factors)?;
        let eps = io.norms.map_or(0.0, |(_, e)| e);
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "{what}: eps {eps} is not a finite value >= 0"
            )));
        }
        if let Some((w, _)) = io.norms {
            if w.iter().any(|b| b.size() < head_dim as u64 * 4) {
                return Err(GpuError::Runtime(format!(
                    "{what}: norm weights need {} bytes each",
                    head_dim as u64 * 4
                )));
            }
        }
        let p = Params {
            n_heads,
            n_kv_heads,
            head_dim,
            half_dims: rope.dims / 2,
            q_stride: io.q.stride,
            kv_stride: io.k.stride,
            q_offset: io.q.check("rope_kv q", tok.max)?,
            k_offset: io.k.check("rope_kv k", tok.max)?,
            v_offset: io.v.check("rope_kv v", tok.max)?,
            capacity: cache.capacity,
            max_tokens: tok.max,
            eps,
            mscale: rope.mscale,
            temp_scale: io.q_temp.map_or(0.0, |t| t.0),
            temp_floor: io.q_temp.map_or(1, |t| t.1.max(1)),
            qo_offset: match io.q_out {
                Some(o) => o.check("rope_kv q_out", tok.max)?,
                None => 0,
            },
            qo_stride: io.q_out.map_or(0, |o| o.stride),
            _pad0: 0,
            _pad1: 0,
        };
        let key = key(
            rope.neox,
            io.freq_factors.is_some(),
            io.norms.is_some(),
            io.q_out.is_some(),
            cache.kind,
            super::row_workgroup(gpu, WORKGROUP),
        )?;
        let mut buffers = vec![
            (0, io.q.view.buffer),
            (1, io.k.view.buffer),
            (2, io.v.view.buffer),
            (4, &cache.k),
            (5, &cache.v),
            (6, &freq),
            (STEP_BINDING, &tok.step.buffer),
        ];
        if let Some(f) = io.freq_factors {
            buffers.push((7, f));
        }
        if let Some(([qn, kn], _)) = io.norms {
            buffers.extend([(9, qn), (10, kn)]);
        }
        if let Some(o) = io.q_out {
            buffers.push((QOUT_BINDING, o.view.buffer));
        }
        let groups = token_grid(gpu, what, (n_heads + n_kv_heads) as u64, tok.max)?;
        // Per token: q read and written, k and v read, K and V written to the cache.
        let (q_len, kv_len) = ((n_heads * head_dim) as f64, (n_kv_heads * head_dim) as f64);
        let cached = 2.0 * cache.row_bytes() as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{n_heads}+{n_kv_heads}x{head_dim}"),
            Work::per_token(q_len * 8.0 + kv_len * 8.0 + cached),
            Work::per_token((q_len + kv_len) * 6.0),
        );
        Ok(Self {
            dispatches: vec![d],
            _freq: freq,
        })
    }
}

/// The shader switches of each (NEOX, FREQ_FACTORS, NORM) combination.
const DEFINES: [&[&str]; 8] = [
    &[],
    &["NORM"],
    &["FREQ_FACTORS"],
    &["FREQ_FACTORS", "NORM"],
    &["NEOX"],
    &["NEOX", "NORM"],
    &["NEOX", "FREQ_FACTORS"],
    &["NEOX", "FREQ_FACTORS", "NORM"],
];

/// Binding of `q_out` (`qo` in the shader).
const QOUT_BINDING: u32 = 11;

fn key(
    neox: bool,
    freq_factors: bool,
    norm: bool,
    q_out: bool,
    kind: KvType,
    workgroup: u32,
) -> Result<PipelineKey, GpuError> {
    let i = (neox as usize) << 2 | (freq_factors as usize) << 1 | norm as usize;
    let defines = if kind == KvType::Q8_0 || q_out {
        let mut d: Vec<String> = DEFINES[i].iter().map(|s| s.to_string()).collect();
        if kind == KvType::Q8_0 {
            d.push("Q8".into());
        }
        if q_out {
            d.push("QOUT".into());
        }
        super::static_defines(&d)?
    } else {
        DEFINES[i]
    };
    Ok(PipelineKey {
        op: "rope_kv",
        variant: ShaderVariant {
            f16: kind == KvType::F16,
            defines,
            ..ShaderVariant::new(workgroup)
        },
    })
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    let mut v = Vec::new();
    for i in 0..8usize {
        for kind in [KvType::F32, KvType::F16, KvType::Q8_0] {
            for wg in [WORKGROUP, super::CPU_ROW_WORKGROUP] {
                for q_out in [false, true] {
                    let k = key(i & 4 != 0, i & 2 != 0, i & 1 != 0, q_out, kind, wg);
                    v.push(k.expect("static defines"));
                }
            }
        }
    }
    v
}

/// CPU twin on one head of one token at position `pos`: the optional RMSNorm with
/// weights `norm` (and `eps`), then RoPE, in f64.
pub fn cpu(
    head: &[f32],
    norm: Option<(&[f32], f32)>,
    rope: RopeSpec,
    pos: u32,
    freq_factors: Option<&[f32]>,
) -> Vec<f32> {
    let normed = match norm {
        Some((w, eps)) => super::rmsnorm::cpu(head, w, eps),
        None => head.to_vec(),
    };
    super::rope::cpu(&normed, rope, pos, freq_factors)
}

impl super::Op for RopeKv {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
