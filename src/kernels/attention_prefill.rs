//! Causal attention for the tokens of a prefill step over the KV cache (which `KvAppend`
//! has already extended with this step's keys), tiled flash-attention style: a workgroup
//! takes 8 (token, head) query rows of one kv group and walks the keys they need in tiles
//! staged in shared memory, with an online softmax. Works for a step starting at any
//! position (chunked prefill). Shader: `attention_prefill.wgsl`.

use super::attention_decode::{check_heads, AttnSpec};
use super::{
    build_dispatch, check_rows, to_u32, Dispatch, KvCache, KvType, Tokens, View, Work, STEP_BINDING,
};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size (fixed by the shader's shared-memory layout).
pub const WORKGROUP: u32 = 64;
/// Query rows, (token, head) pairs, per workgroup: `WORKGROUP / 8` lanes per row.
pub const ROWS: u32 = 8;

params! {
    @binding(3)
    pub(crate) struct Params {
        n_heads: u32,
        group: u32,
        head_dim: u32,
        kv_dim: u32,
        capacity: u32,
        window: u32,
        max_tokens: u32,
        q_offset: u32,
        out_offset: u32,
        scale: f32,
        softcap: f32,
        _pad: u32,
    }
}

/// The pipeline for an f16 (or f32) cache and heads of `head_dim`: the shader's loops
/// are sized for it (keys per tile: 4 KiB K and V tiles, at most 16), and it reads vec4s
/// where `vec4` (head_dim, kv_dim and the q offset multiples of 4).
/// `subgroups`: a row's partial dot products are summed by subgroup shuffles.
fn key(
    kind: KvType,
    head_dim: u32,
    (vec4, subgroups, sinks): (bool, bool, bool),
) -> Result<PipelineKey, GpuError> {
    key_masked(kind, head_dim, (vec4, subgroups, sinks), true)
}

/// `key`, non-causal (`NONCAUSAL`) when not `causal`.
fn key_masked(
    kind: KvType,
    head_dim: u32,
    (vec4, subgroups, sinks): (bool, bool, bool),
    causal: bool,
) -> Result<PipelineKey, GpuError> {
    let f16 = kind == KvType::F16;
    let tile_vec4s = if f16 { 512 } else { 256 };
    let bk = (tile_vec4s / head_dim.div_ceil(4).max(1)).clamp(1, 16);
    let mut d = vec![format!("HD={head_dim}"), format!("BK={bk}")];
    if vec4 {
        d.push("VEC4".into());
    }
    if kind == KvType::Q8_0 {
        // Tiles hold the dequantized f32 values.
        d.push("Q8".into());
    }
    if sinks {
        d.push("SINKS".into());
    }
    if !causal {
        d.push("NONCAUSAL".into());
    }
    Ok(PipelineKey {
        op: "attention_prefill",
        variant: ShaderVariant {
            f16,
            subgroups,
            defines: super::static_defines(&d)?,
            ..ShaderVariant::new(WORKGROUP)
        },
    })
}

/// Workgroup size of the row-per-invocation form (`attention_rows.wgsl`).
pub const ROWS_WORKGROUP: u32 = 64;

/// Rows per invocation of the row-per-invocation form for heads of `head_dim`: two
/// (`R2`, every K and V column loaded serves twice the rows) from 128 dims. On lavapipe
/// (`hearth profile MODEL -p 512 -n 0`, random-weight 4-layer models with 4 query heads
/// per KV head, alternated twice, 2026-12-05) the pp512 attention ran 117 / 118 -> 91 /
/// 90 ms with 128 dims, 201 / 200 -> 146 / 151 with 256 (Gemma 3: 866 / 889 -> 665 /
/// 666), and 85 / 84 -> 94 / 89 with 64 (a first form of the two-row code), where each
/// key's softmax and shuffles, doubled, outweigh the loads saved.
pub fn rows_per_invocation(head_dim: u32) -> u32 {
    if head_dim >= 128 {
        2
    } else {
        1
    }
}

/// The pipeline of the row-per-invocation form (CPU adapters) for an f16 or f32 cache and
/// heads of `head_dim` (a multiple of 32).
fn rows_key(kind: KvType, head_dim: u32, sinks: bool) -> Result<PipelineKey, GpuError> {
    // The head in parts of 32 dims (`#unroll NP`).
    let mut d = vec![format!("HD={head_dim}"), format!("NP={}", head_dim / 32)];
    if rows_per_invocation(head_dim) == 2 {
        d.push("R2".into());
    }
    if sinks {
        d.push("SINKS".into());
    }
    Ok(PipelineKey {
        op: "attention_rows",
        variant: ShaderVariant {
            f16: kind == KvType::F16,
            subgroups: true,
            defines: super::static_defines(&d)?,
            ..ShaderVariant::new(ROWS_WORKGROUP)
        },
    })
}

/// Whether prefill attention takes the row-per-invocation form: on CPU adapters with
/// subgroups of at least 8 (a power of two), for f16 or f32 caches, heads of a multiple
/// of 32 (up to 2048) read as vec4s, causal. On lavapipe (`hearth profile MODEL -p 512
/// -n 0`) the pp512 attention took 0.37 s against 2.16 s for the tiled form on SmolLM2
/// (head_dim 64), and 0.69 s against 2.58 s on Gemma 3 (head_dim 256).
pub fn takes_rows(gpu: &Gpu, kind: KvType, head_dim: u32, vec4: bool, causal: bool) -> bool {
    super::matvec::AdapterClass::of(&gpu.info) == super::matvec::AdapterClass::Cpu
        && rows_fit(gpu, kind, head_dim, vec4, causal)
}

/// What the row-per-invocation form needs whatever the adapter class: subgroups of at
/// least 8 (a power of two), an f16 or f32 cache, vec4 heads of a multiple of 32 up to
/// 2048 (64 parts, `#unroll`'s limit), causal attention.
fn rows_fit(gpu: &Gpu, kind: KvType, head_dim: u32, vec4: bool, causal: bool) -> bool {
    let info = &gpu.info;
    gpu.features.subgroups
        && info.subgroup_min_size >= 8
        && info.subgroup_min_size.is_power_of_two()
        && kind != KvType::Q8_0
        && vec4
        && head_dim.is_multiple_of(32)
        && head_dim <= 32 * 64
        && causal
}

/// The prefill attention variants (f32, f16 and q8_0 cache) for the usual head sizes.
pub fn variants() -> Vec<PipelineKey> {
    let rows = [KvType::F32, KvType::F16].into_iter().flat_map(|kind| {
        [32, 64, 128, 256, 512].into_iter().flat_map(move |hd| {
            [false, true].map(|sk| rows_key(kind, hd, sk).expect("static defines"))
        })
    });
    [KvType::F32, KvType::F16, KvType::Q8_0]
        .into_iter()
        .flat_map(|kind| {
            [
                (64, true),
                (128, true),
                (256, true),
                (18, false),
                (32, false),
            ]
            .into_iter()
            .filter(move |(hd, _)| kind != KvType::Q8_0 || hd % 32 == 0)
            .flat_map(move |(hd, v)| {
                let masked = [(false, false), (true, false), (false, true), (true, true)]
                    .map(|(sg, sk)| key(kind, hd, (v, sg, sk)).expect("static defines"));
                let noncausal = [false, true]
                    .map(|sg| key_masked(kind, hd, (v, sg, false), false).expect("static defines"));
                masked.into_iter().chain(noncausal)
            })
        })
        .chain(rows)
        .collect()
}

/// `out[t, h] = softmax(scale * q[t, h] . K[lo..=pos+t]) V[lo..=pos+t]` for the step's
/// tokens t (query position `step.pos + t`), the kv head being `h / (n_heads /
/// n_kv_heads)` and `lo = pos + t + 1 - window` when a window is set and exceeded, else 0.
pub struct AttentionPrefill {
    /// The single dispatch.
    pub dispatch: Dispatch,
}

impl AttentionPrefill {
    /// Builds the dispatch for up to `tok.max` tokens per step; `q` and `out` are
    /// `[token][n_heads * head_dim]`.
    pub fn new(
        gpu: &Gpu,
        spec: &AttnSpec,
        q: View,
        out: View,
        cache: &KvCache,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::with_sinks(gpu, spec, (q, out), cache, tok, None)
    }

    /// `new` with per-head attention sinks (`n_heads` f32, gpt-oss), as
    /// `AttentionDecode::with_sinks`.
    pub fn with_sinks(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
        sinks: Option<&wgpu::Buffer>,
    ) -> Result<Self, GpuError> {
        Self::masked(gpu, spec, (q, out), cache, tok, (sinks, true))
    }

    /// Non-causal attention (encoders): each token of the step sees every key of the
    /// step's sequence up to its last token, or under `spec.window = w` those within
    /// `w / 2` positions either side.
    pub fn non_causal(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::masked(gpu, spec, (q, out), cache, tok, (None, false))
    }

    fn masked(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
        (sinks, causal): (Option<&wgpu::Buffer>, bool),
    ) -> Result<Self, GpuError> {
        let vec4 = spec.head_dim.is_multiple_of(4) && q.offset.is_multiple_of(4);
        let rows = takes_rows(gpu, cache.kind, spec.head_dim, vec4, causal);
        Self::with_form(gpu, spec, (q, out), cache, tok, (sinks, causal), rows)
    }

    /// `masked` with the form given (tests run both): `rows` asks for the
    /// row-per-invocation form, which needs what `takes_rows` checks but the adapter
    /// class.
    pub fn with_form(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
        (sinks, causal): (Option<&wgpu::Buffer>, bool),
        rows: bool,
    ) -> Result<Self, GpuError> {
        let what = "attention_prefill";
        super::attention_decode::check_sinks(what, spec, sinks)?;
        check_heads(what, cache, spec)?;
        check_rows(what, tok.max)?;
        let AttnSpec {
            n_heads,
            n_kv_heads,
            head_dim,
            scale,
            window,
            ..
        } = *spec;
        let max_tokens = tok.max;
        if max_tokens == 0 {
            return Err(GpuError::Runtime(format!(
                "{what}: max_tokens must be positive"
            )));
        }
        let len = max_tokens as u64 * n_heads as u64 * head_dim as u64;
        q.check("attention_prefill query", len)?;
        out.check("attention_prefill output", len)?;
        to_u32("q length", q.offset + len)?;
        to_u32("out length", out.offset + len)?;
        let group = n_heads / n_kv_heads;
        let tiles = (max_tokens as u64 * group as u64).div_ceil(ROWS as u64);
        let max_wg = gpu.limits.max_compute_workgroups_per_dimension as u64;
        if tiles > max_wg || n_kv_heads as u64 > max_wg {
            return Err(GpuError::Runtime(format!(
                "{what}: {max_tokens} tokens x {n_heads} heads exceed the dispatch limit {max_wg}"
            )));
        }
        let p = Params {
            n_heads,
            group,
            head_dim,
            kv_dim: cache.row_units(),
            capacity: cache.capacity,
            window: window.unwrap_or(0),
            max_tokens,
            q_offset: to_u32("q offset", q.offset)?,
            out_offset: to_u32("out offset", out.offset)?,
            scale,
            softcap: spec.cap_param(),
            _pad: 0,
        };
        // vec4 reads need head_dim (so kv_dim) and the q offset in whole vec4s.
        let vec4 = head_dim.is_multiple_of(4) && q.offset.is_multiple_of(4);
        // Shuffles within a row's 8 lanes need subgroups of at least 8 (a power of two,
        // so rows never straddle two).
        let info = &gpu.info;
        let subgroups = gpu.features.subgroups
            && info.subgroup_min_size >= 8
            && info.subgroup_min_size.is_power_of_two();
        let key = if rows {
            if !rows_fit(gpu, cache.kind, head_dim, vec4, causal) {
                return Err(GpuError::Runtime(format!(
                    "{what}: the row-per-invocation form needs subgroups of 8, an f16 or f32 \
                     cache, vec4 heads of a multiple of 32 up to 2048 and causal attention"
                )));
            }
            rows_key(cache.kind, head_dim, sinks.is_some())?
        } else {
            key_masked(
                cache.kind,
                head_dim,
                (vec4, subgroups, sinks.is_some()),
                causal,
            )?
        };
        let mut buffers = vec![
            (0, q.buffer),
            (1, &cache.k),
            (2, &cache.v),
            (4, out.buffer),
            (STEP_BINDING, &tok.step.buffer),
        ];
        buffers.extend(sinks.map(|s| (super::attention_decode::SINKS_BINDING, s)));
        let groups = match rows {
            true => (
                (max_tokens as u64 * group as u64)
                    .div_ceil((rows_per_invocation(head_dim) * ROWS_WORKGROUP) as u64)
                    as u32,
                n_kv_heads,
                1,
            ),
            false => (tiles as u32, n_kv_heads, 1),
        };
        let dispatch = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?;
        // Compulsory traffic: q read and the output written per token, each cached K and V
        // row read once. FLOPs count the causal half of the score matrix.
        let q_row = n_heads as f64 * head_dim as f64;
        let dispatch = dispatch.costed(
            format!("{n_heads}x{head_dim}"),
            Work {
                t: q_row * 8.0,
                k: 2.0 * cache.row_bytes() as f64,
                ..Work::default()
            },
            Work {
                tk: 2.0 * q_row,
                ..Work::default()
            },
        );
        Ok(Self { dispatch })
    }
}

/// CPU twin: token t of `q` (`[token][n_heads * head_dim]`) at position `pos + t` attends
/// the cache rows `k`, `v` (`[position][kv_dim]`, as stored) causally; computed in f64.
pub fn cpu(spec: &AttnSpec, q: &[f32], k: &[f32], v: &[f32], pos: usize) -> Vec<f32> {
    cpu_sinks(spec, q, (k, v), pos, None)
}

/// `cpu` with per-head attention sinks.
pub fn cpu_sinks(
    spec: &AttnSpec,
    q: &[f32],
    kv: (&[f32], &[f32]),
    pos: usize,
    sinks: Option<&[f32]>,
) -> Vec<f32> {
    q.chunks_exact((spec.n_heads * spec.head_dim) as usize)
        .enumerate()
        .flat_map(|(t, qt)| super::attention_decode::cpu_sinks(spec, qt, kv, pos + t + 1, sinks))
        .collect()
}

/// CPU twin of `AttentionPrefill::non_causal`: the `n` tokens of `q` at positions
/// `0..n` attend the cache rows `k`, `v` of every position (or within `window / 2`
/// positions either side); computed in f64.
pub fn cpu_non_causal(spec: &AttnSpec, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let row = (spec.n_heads * spec.head_dim) as usize;
    let n = q.len() / row;
    let mut out = vec![0f32; q.len()];
    for (t, (qt, ot)) in q
        .chunks_exact(row)
        .zip(out.chunks_exact_mut(row))
        .enumerate()
    {
        let keys = crate::reference::ops::visible(t, spec.window, Some(n));
        crate::reference::ops::attention(ot, qt, (k, v), keys, (spec, None));
    }
    out
}

impl super::Op for AttentionPrefill {
    fn dispatches(&self) -> &[Dispatch] {
        std::slice::from_ref(&self.dispatch)
    }
}
