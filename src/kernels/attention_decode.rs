//! Attention for one decoded token over the KV cache, flash-decoding style: the cached
//! positions are split into chunks, the chunks into splits scored in parallel (one
//! workgroup per split and block of query heads of one KV group, each writing every
//! head's softmax max, exp-sum and partial output to its own scratch slot), then a second
//! dispatch merges the splits per head. Long contexts thus fill the GPU even with a
//! single query, and each K and V row is read once per block of heads that shares it
//! (GQA), as vec4 where head_dim allows. With subgroups, pass 1 takes the
//! subgroup-per-key form ([`SgKey`]): lanes split a key's columns (coalesced rows, one
//! subgroup sum per score) and each subgroup keeps an online softmax, with no barrier in
//! its walk. Shader: `attention_decode.wgsl` (pass 2 under `COMBINE`).

use super::{
    build_dispatch, check_rows, to_u32, Dispatch, KvCache, KvType, StepBuffer, Tokens, View, Work,
    STEP_BINDING,
};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of both passes; also the key positions per chunk.
pub const WORKGROUP: u32 = 64;
/// Key positions per chunk of pass 1 (one per invocation).
pub const CHUNK: u32 = WORKGROUP;
/// Largest head dimension the attention kernels take (shared-memory and register sizes).
pub const MAX_HEAD_DIM: u32 = 256;

params! {
    @binding(3)
    pub(crate) struct Params {
        n_heads: u32,
        group: u32,
        head_dim: u32,
        kv_dim: u32,
        capacity: u32,
        window: u32,
        max_chunks: u32,
        q_offset: u32,
        out_offset: u32,
        scale: f32,
        max_tokens: u32,
        heads: u32,
        softcap: f32,
        splits: u32,
        balanced: u32,
        _pad: u32,
        half_dims: u32,
        src_stride: u32,
        k_offset: u32,
        v_offset: u32,
        eps: f32,
        mscale: f32,
        temp_scale: f32,
        temp_floor: u32,
    }
}

/// Bytes of pass 1's partials (each chunk's max, exp-sum and weighted V per head) for
/// steps of `rows` tokens over `capacity` cached positions: what the op allocates
/// (`scratch_bytes`) and the memory estimate (`graph::memory`) counts.
pub fn partials_bytes(n_heads: u64, head_dim: u64, capacity: u64, rows: u64) -> u64 {
    let chunks = capacity.div_ceil(CHUNK as u64);
    rows * n_heads * chunks * (head_dim + 2) * 4
}

/// Query heads one workgroup of pass 1 takes (they share each K and V row they read): the
/// largest divisor of the group size up to 8. The single pass takes one head per
/// workgroup ([`SINGLE_HEADS`]).
pub fn heads_per_workgroup(group: u32) -> u32 {
    (1..=group.min(8))
        .rev()
        .find(|d| group.is_multiple_of(*d))
        .unwrap_or(1)
}

/// Contexts of at most this many positions attend in one pass (`SINGLE`: one workgroup
/// per head walks every chunk) instead of chunks in parallel and a combine pass: a short
/// step then costs one dispatch, and its chunks are too few to fill a GPU anyway.
pub const SINGLE_PASS_MAX: u32 = 4 * CHUNK;

/// Contexts of at most this many positions attend in one pass where pass 1 takes a few
/// balanced splits (a CPU rasterizer): pass 1 over one split that writes the output
/// (`FINAL`), a dispatch fewer per layer than the splits and their in-order combine.
/// (The `SINGLE` pass, one workgroup per head, ran slower than the splits at every
/// length there: `hearth bench MODEL -p 0 -n 128 -r 1`, two alternated rounds, Gemma 3
/// 18.20 and 19.66 tokens/s against 17.44 and 17.92, SmolLM2 38.21 and 38.30 against
/// 33.68 and 35.21.)
pub const FINAL_MAX: u32 = 4 * CHUNK;

/// Query heads per workgroup of the single pass. Its contexts are short, so sharing K and
/// V rows across a group saves little, while a workgroup per KV group leaves a model with
/// one KV head (Gemma 3 270M) a single workgroup for the whole step's attention: one
/// head per workgroup spreads it over `n_heads`. Measured on lavapipe (2 threads),
/// `hearth bench MODEL -p 0 -n 64 -r 1`, 10 alternated rounds against a KV group per
/// workgroup: Gemma 3 median 17.56 against 16.91 tokens/s, SmolLM2 29.02 against 26.71,
/// each faster in 7 of 10 pairs.
pub const SINGLE_HEADS: u32 = 1;

/// vec4 columns of a head each lane of the subgroup-per-key form holds (`C4` in the
/// shader): the head's over the smallest subgroup, rounded up to a power of two. The
/// per-lane arrays of q and of the output (heads x C4 vec4s) and the loops over them are
/// sized by it, so a 64-wide head on subgroups of 8 holds 2 columns a lane where one
/// sized for 256 held 8, three quarters of them zeros dotted and scaled at every key.
pub fn lane_cols(head_dim: u32, sg_min: u32) -> u32 {
    head_dim
        .clamp(1, MAX_HEAD_DIM)
        .div_ceil(4)
        .div_ceil(sg_min.max(1))
        .next_power_of_two()
}

/// The widths `lane_cols` may give on subgroups of at least `sg_min` lanes: powers of
/// two up to a 256-wide head's (the builds `key` accepts, and `variants` lists).
fn lane_widths(sg_min: u32) -> impl Iterator<Item = u32> {
    let most = (MAX_HEAD_DIM / 4 / sg_min.max(1)).max(1);
    (0..=most.ilog2()).map(|b| 1 << b)
}

/// The shader forms: chunks in parallel, their combine, the single pass, and the
/// subgroup-per-key pass 1 over one split that writes the output itself (`FINAL`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Chunks,
    Combine,
    Single,
    Final(Option<RopeFlags>),
}

/// The shader form of attention's preparation folded into the one-split pass
/// (`ROPE`): NeoX pairs, frequency divisors, per-head q/k norms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RopeFlags {
    neox: bool,
    freq_factors: bool,
    norm: bool,
}

/// `kind`: the cache's type; `vec4`: K and V rows are read as vec4 (head_dim a multiple
/// of 4; q8_0 reads whole words anyway); `heads`: query heads per workgroup (pass 1 and
/// the single pass).
/// `sinks`: per-head attention sinks join the softmax (the single pass and the combine).
fn key(
    kind: KvType,
    pass: Pass,
    vec4: bool,
    heads: u32,
    sinks: bool,
    sg: bool,
    sgkey: Option<(SgKey, u32)>,
) -> Result<PipelineKey, GpuError> {
    let mut d: Vec<String> = Vec::new();
    // The combine of the few splits the SGKEY form leaves on a CPU rasterizer walks them
    // in order (`SEQ`), in workgroups of the pass's size.
    let seq = sgkey
        .map(|(k, _)| k)
        .filter(|k| pass == Pass::Combine && k.splits <= SEQ_SPLITS);
    if seq.is_some() {
        d.push("SEQ".into());
    }
    let sgkey = sgkey.filter(|_| matches!(pass, Pass::Chunks | Pass::Final(_)));
    if matches!(pass, Pass::Final(_)) && sgkey.is_none() {
        return Err(GpuError::Runtime(
            "attention_decode: the one-split pass 1 needs the subgroup-per-key form".into(),
        ));
    }
    if matches!(pass, Pass::Final(Some(_))) && kind == KvType::Q8_0 {
        return Err(GpuError::Runtime(
            "attention_decode: the folded preparation writes f32 or f16 caches only".into(),
        ));
    }
    if let Some((k, cols)) = sgkey {
        if !lane_widths(k.sg_min).any(|w| w == cols) {
            return Err(GpuError::Runtime(format!(
                "attention_decode: {cols} vec4 columns per lane for subgroups of {}",
                k.sg_min
            )));
        }
        d.push("SGKEY".into());
        d.push(format!("SGMIN={}", k.sg_min));
        d.push(format!("LANE_C4={cols}"));
    }
    if sinks && pass != Pass::Chunks {
        d.push("SINKS".into());
    }
    let q8 = kind == KvType::Q8_0 && pass != Pass::Combine;
    if q8 {
        d.push("Q8".into());
    }
    match pass {
        Pass::Combine => d.push("COMBINE".into()),
        Pass::Single => d.push("SINGLE".into()),
        Pass::Final(rope) => {
            d.push("FINAL".into());
            if let Some(r) = rope {
                d.push("ROPE".into());
                for (on, name) in [
                    (r.neox, "NEOX"),
                    (r.freq_factors, "FREQ_FACTORS"),
                    (r.norm, "NORM"),
                ] {
                    if on {
                        d.push(name.into());
                    }
                }
            }
        }
        Pass::Chunks => {}
    }
    if pass != Pass::Combine {
        if vec4 && !q8 {
            d.push("VEC4".into());
        }
        d.push(format!("HEADS={heads}"));
    }
    Ok(PipelineKey {
        op: "attention_decode",
        variant: ShaderVariant {
            f16: kind == KvType::F16 && pass != Pass::Combine,
            // The chunk maxima and sums (and the combine's) reduce per subgroup where
            // the adapter has subgroups, else in a shared-memory tree.
            subgroups: (sg || sgkey.is_some()) && seq.is_none(),
            defines: super::static_defines(&d)?,
            ..ShaderVariant::new(
                sgkey
                    .map(|(k, _)| k)
                    .or(seq)
                    .map_or(WORKGROUP, |k| k.workgroup),
            )
        },
    })
}

/// The decode attention variants: pass 1 (1 to 8 heads per workgroup) and the single
/// pass ([`SINGLE_HEADS`]) for an f32 and an f16 cache, with scalar and vec4 reads, and
/// for a q8_0 cache, and the combine pass.
pub fn variants() -> Vec<PipelineKey> {
    let mut keys = vec![
        (KvType::F32, Pass::Combine, false, 1, false),
        (KvType::F32, Pass::Combine, false, 1, true),
    ];
    let kinds = [
        (KvType::F32, false),
        (KvType::F32, true),
        (KvType::F16, false),
    ];
    for (kind, vec4) in kinds
        .into_iter()
        .chain([(KvType::F16, true), (KvType::Q8_0, false)])
    {
        for heads in 1..=8 {
            keys.push((kind, Pass::Chunks, vec4, heads, false));
        }
        keys.push((kind, Pass::Single, vec4, SINGLE_HEADS, false));
        keys.push((kind, Pass::Single, vec4, SINGLE_HEADS, true));
    }
    let mut sgkeys = vec![None];
    for sg_min in [8, 16, 32, 64] {
        for workgroup in [sg_min, WORKGROUP] {
            sgkeys.push(Some(SgKey {
                sg_min,
                workgroup,
                splits: 1,
            }));
        }
    }
    let mut out = Vec::new();
    // The one-split pass 1 (subgroup-per-key only).
    for (kind, vec4) in kinds
        .into_iter()
        .chain([(KvType::F16, true), (KvType::Q8_0, false)])
    {
        for heads in 1..=8 {
            for sinks in [false, true] {
                for sk in sgkeys
                    .iter()
                    .flatten()
                    .flat_map(|&k| lane_widths(k.sg_min).map(move |c| (k, c)))
                {
                    let sk = Some(sk);
                    let k = key(kind, Pass::Final(None), vec4, heads, sinks, true, sk)
                        .expect("static defines");
                    if !out.contains(&k) {
                        out.push(k);
                    }
                    // The folded preparation in its eight forms (f32 and f16 caches).
                    if kind == KvType::Q8_0 || !matches!(heads, 1 | 4) {
                        continue;
                    }
                    for bits in 0..8u8 {
                        let r = RopeFlags {
                            neox: bits & 1 != 0,
                            freq_factors: bits & 2 != 0,
                            norm: bits & 4 != 0,
                        };
                        let pass = Pass::Final(Some(r));
                        let k =
                            key(kind, pass, vec4, heads, sinks, true, sk).expect("static defines");
                        if !out.contains(&k) {
                            out.push(k);
                        }
                    }
                }
            }
        }
    }
    for (f, p, v, h, s) in keys {
        for sg in [false, true] {
            for &sk in &sgkeys {
                let forms: Vec<_> = match sk {
                    Some(k) => lane_widths(k.sg_min).map(|c| Some((k, c))).collect(),
                    None => vec![None],
                };
                for form in forms {
                    let k = key(f, p, v, h, s, sg, form).expect("static defines");
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
        }
    }
    out
}

/// The subgroup-per-key form of pass 1 (`SGKEY` in the shader): each subgroup walks its
/// keys of the chunk with the lanes splitting the head's columns, an online softmax per
/// head, and one merge of the subgroups at the end. `sg_min`: the adapter's smallest
/// subgroup (sizes each lane's columns); `workgroup`: its invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgKey {
    /// Smallest subgroup size of the adapter (8 to 64).
    pub sg_min: u32,
    /// Workgroup size: one subgroup on a CPU rasterizer whose subgroups have one size
    /// (no merge, no barrier between the lanes' SIMD batches), else [`WORKGROUP`].
    pub workgroup: u32,
    /// Most splits of a token's chunks (pass 1's workgroups per head block and token;
    /// each walks a run of chunks with one online softmax and leaves one partial).
    pub splits: u32,
}

/// [`SgKey::splits`] on a CPU rasterizer.
pub const CPU_SPLITS: u32 = 16;

/// The most splits the in-order combine (`SEQ`) takes; more take the parallel one.
pub const SEQ_SPLITS: u32 = 64;

/// The `SGKEY` form for this adapter, if it takes it: subgroups whose sizes are powers of
/// two from 8 to 64 (a lane's columns are sized for the smallest, and a workgroup of 64
/// holds whole subgroups of the largest). `HEARTH_ATTN_SGKEY=0` turns it off (tuning aid:
/// the per-lane pass 1 in the same binary).
pub fn sgkey(gpu: &Gpu) -> Option<SgKey> {
    let force = std::env::var("HEARTH_ATTN_SGKEY").ok();
    if force.as_deref() == Some("0") {
        return None;
    }
    let (min, max) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    let ok = gpu.features.subgroups
        && min.is_power_of_two()
        && max.is_power_of_two()
        && (8..=64).contains(&min)
        && (min..=64).contains(&max);
    if !ok {
        return None;
    }
    let cpu = super::matvec::AdapterClass::of(&gpu.info) == super::matvec::AdapterClass::Cpu;
    let workgroup = if cpu && min == max { min } else { WORKGROUP };
    let workgroup = match force.and_then(|f| f.parse::<u32>().ok()) {
        Some(w) if w == min || w == WORKGROUP => w,
        _ => workgroup,
    };
    // A GPU takes a chunk per workgroup (long contexts fill its compute units); a CPU
    // rasterizer runs workgroups on a few threads, where a few long splits keep them busy
    // and leave the combine a few partials.
    let splits = if cpu { CPU_SPLITS } else { u32::MAX };
    let splits = std::env::var("HEARTH_ATTN_SPLITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(splits);
    Some(SgKey {
        sg_min: min,
        workgroup,
        splits,
    })
}

/// Workgroups along pass 1's chunk axis: each takes one chunk of its token's range, so a
/// sliding window of w positions (at most ceil(w / CHUNK) + 1 chunks) needs no more
/// than that, whatever the cache's capacity; without a window, every chunk.
fn range_chunks(max_chunks: u32, window: Option<u32>) -> u32 {
    window.map_or(max_chunks, |w| max_chunks.min(w.div_ceil(CHUNK) + 1))
}

/// What an attention op computes: `n_heads` query heads of `head_dim` over `n_kv_heads`
/// KV heads (query head `h` reads KV head `h / (n_heads / n_kv_heads)`), scores scaled
/// by `scale`, and with a window `w` only the last `w` positions seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnSpec {
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// Multiplier of q·k.
    pub scale: f32,
    /// Sliding window in positions (`None`: every cached position).
    pub window: Option<u32>,
    /// Score soft-capping `c * tanh(s / c)` of the scaled scores (Gemma 2).
    pub softcap: Option<f32>,
}

impl AttnSpec {
    /// A score after scaling, soft-capped when the spec says so (the twins' rule).
    pub fn cap(&self, s: f64) -> f64 {
        match self.softcap {
            Some(c) => c as f64 * (s / c as f64).tanh(),
            None => s,
        }
    }

    /// The cap as the kernels take it (0: none).
    pub(crate) fn cap_param(&self) -> f32 {
        self.softcap.unwrap_or(0.0)
    }
}

/// Checks the head layout shared by the attention ops against the cache.
pub(crate) fn check_heads(what: &str, cache: &KvCache, spec: &AttnSpec) -> Result<(), GpuError> {
    let AttnSpec {
        n_heads,
        n_kv_heads,
        head_dim,
        window,
        ..
    } = *spec;
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(GpuError::Runtime(format!(
            "{what}: {n_heads} query heads must be a positive multiple of {n_kv_heads} kv heads"
        )));
    }
    if head_dim == 0 || head_dim > MAX_HEAD_DIM {
        return Err(GpuError::Runtime(format!(
            "{what}: head_dim {head_dim} is outside 1..={MAX_HEAD_DIM}"
        )));
    }
    if window == Some(0) {
        return Err(GpuError::Runtime(format!(
            "{what}: a sliding window of 0 positions attends nothing; use None for no window"
        )));
    }
    if let Some(c) = spec.softcap {
        if !(c > 0.0 && c.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "{what}: a soft-cap of {c}; it must be positive"
            )));
        }
    }
    cache.check_dim(what, n_kv_heads, head_dim)
}

/// `out[h] = softmax(scale * q[h] . K[lo..kv_len]) V[lo..kv_len]` for every query head h,
/// the kv head being `h / (n_heads / n_kv_heads)`, the query at position `step.kv_len - 1`
/// and `lo = kv_len - window` when a window is set and exceeded, else 0.
pub struct AttentionDecode {
    /// Pass 1 (chunks) then pass 2 (combine).
    pub dispatches: Vec<Dispatch>,
    /// The single pass, for steps of at most [`SINGLE_PASS_MAX`] positions attended.
    pub single: Vec<Dispatch>,
    /// Per-chunk partial results: this op's own, or one shared by a plan's layers
    /// (`shared`).
    pub scratch: wgpu::Buffer,
    /// The sliding window (0: none), to count the positions a step attends.
    window: u32,
    /// Steps attending at most this many positions take the single pass.
    single_max: u32,
    /// The one-split pass's build, which `with_rope` may fold the preparation into.
    fold: Option<Fold>,
}

/// What `AttentionDecode::with_rope` builds the folded pass from.
struct Fold {
    form: SgKey,
    params: Params,
    vec4: bool,
    heads: u32,
    kind: KvType,
}

impl AttentionDecode {
    /// Builds both passes for one token per step at any position up to the cache's
    /// capacity; `q` and `out` hold `n_heads * head_dim` values.
    pub fn new(
        gpu: &Gpu,
        spec: &AttnSpec,
        q: View,
        out: View,
        cache: &KvCache,
        step: &StepBuffer,
    ) -> Result<Self, GpuError> {
        Self::rows(gpu, spec, q, out, cache, Tokens { max: 1, step })
    }

    /// Builds both passes for up to `tok.max` tokens per step, each at its own position
    /// in its own cache slot (the step's rows); `q` and `out` hold `n_heads * head_dim`
    /// values per token, tokens packed.
    pub fn rows(
        gpu: &Gpu,
        spec: &AttnSpec,
        q: View,
        out: View,
        cache: &KvCache,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::with_sinks(gpu, spec, (q, out), cache, tok, None)
    }

    /// `rows` with per-head attention sinks (`n_heads` f32, gpt-oss): each head's softmax
    /// also counts `exp(sink)` in its denominator, a logit no value goes with.
    pub fn with_sinks(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
        sinks: Option<&wgpu::Buffer>,
    ) -> Result<Self, GpuError> {
        Self::with_form(gpu, spec, (q, out), cache, tok, (sinks, sgkey(gpu)))
    }

    /// `with_sinks` over a given scratch buffer, which the ops of a plan's layers share
    /// (they run one after another: each layer's combine reads its partials before the
    /// next layer's pass 1 writes them). It must hold `scratch_bytes`.
    pub fn shared(
        gpu: &Gpu,
        spec: &AttnSpec,
        io: (View, View),
        cache: &KvCache,
        tok: Tokens,
        sinks: Option<&wgpu::Buffer>,
        scratch: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Self::build(
            gpu,
            spec,
            io,
            cache,
            tok,
            (sinks, sgkey(gpu)),
            Some(scratch),
        )
    }

    /// Bytes of partials the op for `spec` over `cache` keeps for steps of `rows` tokens.
    pub fn scratch_bytes(spec: &AttnSpec, cache: &KvCache, rows: u32) -> u64 {
        partials_bytes(
            spec.n_heads as u64,
            spec.head_dim as u64,
            cache.capacity as u64,
            rows as u64,
        )
    }

    /// `with_sinks` with pass 1's form given: `Some` the subgroup-per-key form with
    /// that geometry (the adapter must have subgroups of at least its `sg_min` lanes,
    /// sizes powers of two up to 64 and at most its workgroup), `None` the per-lane form.
    pub fn with_form(
        gpu: &Gpu,
        spec: &AttnSpec,
        io: (View, View),
        cache: &KvCache,
        tok: Tokens,
        sf: (Option<&wgpu::Buffer>, Option<SgKey>),
    ) -> Result<Self, GpuError> {
        Self::build(gpu, spec, io, cache, tok, sf, None)
    }

    fn build(
        gpu: &Gpu,
        spec: &AttnSpec,
        (q, out): (View, View),
        cache: &KvCache,
        tok: Tokens,
        (sinks, form): (Option<&wgpu::Buffer>, Option<SgKey>),
        shared: Option<&wgpu::Buffer>,
    ) -> Result<Self, GpuError> {
        let what = "attention_decode";
        if let Some(f) = form {
            let (min, max) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
            let fits = gpu.features.subgroups
                && f.sg_min.is_power_of_two()
                && (8..=64).contains(&f.sg_min)
                && f.sg_min <= min
                && max <= 64
                && (f.workgroup == WORKGROUP || (f.workgroup == f.sg_min && min == max))
                && f.splits > 0;
            if !fits {
                return Err(GpuError::Runtime(format!(
                    "{what}: the subgroup-per-key form {f:?} does not fit this adapter \
                     (subgroups {}, sizes {min}..={max})",
                    gpu.features.subgroups
                )));
            }
        }
        check_sinks(what, spec, sinks)?;
        let step = tok.step;
        let rows = tok.max;
        check_rows(what, rows)?;
        check_heads(what, cache, spec)?;
        let AttnSpec {
            n_heads,
            n_kv_heads,
            head_dim,
            scale,
            window,
            ..
        } = *spec;
        let q_len = n_heads as u64 * head_dim as u64 * rows as u64;
        q.check("attention_decode query", q_len)?;
        out.check("attention_decode output", q_len)?;
        let max_chunks = cache.capacity.div_ceil(CHUNK);
        let max_wg = gpu.limits.max_compute_workgroups_per_dimension;
        if max_chunks > max_wg || n_heads > max_wg || rows > max_wg {
            return Err(GpuError::Runtime(format!(
                "{what}: {max_chunks} chunks x {n_heads} heads x {rows} tokens exceed the \
                 dispatch limit {max_wg}"
            )));
        }
        let scratch_bytes = partials_bytes(
            n_heads as u64,
            head_dim as u64,
            cache.capacity as u64,
            rows as u64,
        );
        let scratch_len = scratch_bytes / 4;
        if scratch_bytes > gpu.max_binding {
            return Err(GpuError::Runtime(format!(
                "{what}: scratch for {} positions x {n_heads} heads needs {scratch_bytes} bytes, \
                 above the device's largest storage binding ({} bytes)",
                cache.capacity, gpu.max_binding
            )));
        }
        to_u32("attention_decode scratch length", scratch_len)?;
        let group = n_heads / n_kv_heads;
        let heads = heads_per_workgroup(group);
        let vec4 = head_dim.is_multiple_of(4);
        let p = Params {
            n_heads,
            group,
            head_dim,
            kv_dim: cache.row_units(),
            capacity: cache.capacity,
            window: window.unwrap_or(0),
            max_chunks,
            q_offset: to_u32("q offset", q.offset)?,
            out_offset: to_u32("out offset", out.offset)?,
            scale,
            max_tokens: rows,
            heads,
            softcap: spec.cap_param(),
            splits: 1,
            balanced: 0,
            _pad: 0,
            half_dims: 0,
            src_stride: 0,
            k_offset: 0,
            v_offset: 0,
            eps: 0.0,
            mscale: 1.0,
            temp_scale: 0.0,
            temp_floor: 1,
        };
        to_u32("q length", q.offset + q_len)?;
        to_u32("out length", out.offset + q_len)?;
        let scratch = match shared {
            Some(b) if b.size() < scratch_bytes => {
                return Err(GpuError::Runtime(format!(
                    "{what}: a shared scratch of {} bytes, {scratch_bytes} needed",
                    b.size()
                )))
            }
            Some(b) => b.clone(),
            None => gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("attention_decode scratch"),
                size: scratch_bytes,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
        };
        let sg = gpu.features.subgroups;
        let range = range_chunks(max_chunks, window);
        let seq = form.is_some_and(|f| f.splits <= SEQ_SPLITS);
        let p = Params {
            splits: form.map_or(range, |f| f.splits.min(range)),
            balanced: seq as u32,
            ..p
        };
        let sgform = form.map(|f| (f, lane_cols(head_dim, f.sg_min)));
        let k1 = key(cache.kind, Pass::Chunks, vec4, heads, false, sg, sgform)?;
        let chunks = build_dispatch(
            gpu,
            &k1,
            k1.label(),
            &[
                (0, q.buffer),
                (1, &cache.k),
                (2, &cache.v),
                (4, &scratch),
                (STEP_BINDING, &step.buffer),
            ],
            &p,
            (p.splits, n_heads / heads, rows),
        )?;
        let k2 = key(
            KvType::F32,
            Pass::Combine,
            false,
            1,
            sinks.is_some(),
            sg,
            sgform,
        )?;
        let mut b2 = vec![(4, &scratch), (5, out.buffer), (STEP_BINDING, &step.buffer)];
        b2.extend(sinks.map(|s| (SINKS_BINDING, s)));
        let grid = match form.filter(|_| seq) {
            Some(f) => (head_dim.div_ceil(4).div_ceil(f.workgroup), n_heads, rows),
            None => (n_heads, rows, 1),
        };
        let combine = build_dispatch(gpu, &k2, k2.label(), &b2, &p, grid)?;
        // Pass 1 reads q and every cached K and V row once and writes one partial per chunk
        // and head; pass 2 reads the partials and writes the output.
        let (nh, hd, q_bytes) = (n_heads as f64, head_dim as f64, q_len as f64 * 4.0);
        let kv_row = cache.row_bytes() as f64;
        let partial = nh * (hd + 2.0) * 4.0 / CHUNK as f64;
        let shape = format!("{n_heads}x{head_dim}");
        let chunks = chunks.costed(
            shape.clone(),
            Work {
                c: q_bytes,
                k: 2.0 * kv_row + partial,
                ..Work::default()
            },
            Work {
                tk: 4.0 * nh * hd,
                ..Work::default()
            },
        );
        let combine = combine.costed(
            shape,
            Work {
                c: q_bytes,
                k: partial,
                ..Work::default()
            },
            Work {
                k: 3.0 * nh * hd / CHUNK as f64,
                ..Work::default()
            },
        );
        // A pass that reads q and the cache and writes the output itself (the single
        // pass, or pass 1 over one split): pass 1's reads, the output written once.
        let one_pass = |k: &PipelineKey, p: &Params, grid| {
            let mut b = vec![
                (0, q.buffer),
                (1, &cache.k),
                (2, &cache.v),
                (5, out.buffer),
                (STEP_BINDING, &step.buffer),
            ];
            b.extend(sinks.map(|s| (SINKS_BINDING, s)));
            Ok::<_, GpuError>(build_dispatch(gpu, k, k.label(), &b, p, grid)?.costed(
                format!("{n_heads}x{head_dim}"),
                Work {
                    c: 2.0 * q_bytes,
                    k: 2.0 * kv_row,
                    ..Work::default()
                },
                Work {
                    tk: 4.0 * nh * hd,
                    ..Work::default()
                },
            ))
        };
        // The in-order (CPU) form's single pass: pass 1 over one split, writing the
        // output itself.
        if let Some(f) = form.filter(|_| seq) {
            let kf = key(
                cache.kind,
                Pass::Final(None),
                vec4,
                heads,
                sinks.is_some(),
                sg,
                sgform,
            )?;
            let pf = Params {
                splits: 1,
                balanced: 1,
                ..p
            };
            let fin = one_pass(&kf, &pf, (1, n_heads / heads, rows))?;
            return Ok(Self {
                dispatches: vec![chunks, combine],
                single: vec![fin],
                scratch,
                window: window.unwrap_or(0),
                single_max: FINAL_MAX,
                fold: Some(Fold {
                    form: f,
                    params: pf,
                    vec4,
                    heads,
                    kind: cache.kind,
                }),
            });
        }
        let k3 = key(
            cache.kind,
            Pass::Single,
            vec4,
            SINGLE_HEADS,
            sinks.is_some(),
            sg,
            None,
        )?;
        let p3 = Params {
            heads: SINGLE_HEADS,
            ..p
        };
        let single = one_pass(&k3, &p3, (n_heads / SINGLE_HEADS, rows, 1))?;
        Ok(Self {
            dispatches: vec![chunks, combine],
            single: vec![single],
            scratch,
            window: window.unwrap_or(0),
            single_max: SINGLE_PASS_MAX,
            fold: None,
        })
    }

    /// Whether a step whose query sits at position `kv_len - 1` takes the single pass.
    fn short(&self, kv_len: u32) -> bool {
        let seen = if self.window > 0 {
            kv_len.min(self.window)
        } else {
            kv_len
        };
        seen <= self.single_max
    }

    /// Steps attending at most this many positions take the single pass ([`for_len`]).
    ///
    /// [`for_len`]: Self::for_len
    pub fn single_max(&self) -> u32 {
        self.single_max
    }

    /// The dispatches of a step whose query sits at position `kv_len - 1`: the single pass
    /// when it attends at most [`single_max`](Self::single_max) positions
    /// ([`SINGLE_PASS_MAX`], or 0 with balanced splits), else pass 1 and the combine.
    pub fn for_len(&self, kv_len: u32) -> &[Dispatch] {
        if self.short(kv_len) {
            &self.single
        } else {
            &self.dispatches
        }
    }
}

/// Binding of the per-head attention sinks in both attention shaders.
pub(crate) const SINKS_BINDING: u32 = 7;

/// Checks a sinks buffer against the spec's heads.
pub(crate) fn check_sinks(
    what: &str,
    spec: &AttnSpec,
    sinks: Option<&wgpu::Buffer>,
) -> Result<(), GpuError> {
    match sinks {
        Some(s) if s.size() < spec.n_heads as u64 * 4 => Err(GpuError::Runtime(format!(
            "{what}: attention sinks need {} bytes, the buffer has {}",
            spec.n_heads as u64 * 4,
            s.size()
        ))),
        _ => Ok(()),
    }
}

/// CPU twin: attention of one token at position `kv_len - 1`. `q` is `[n_heads][head_dim]`,
/// `k` and `v` are `[position][n_kv_heads * head_dim]` as the cache stores them (already
/// f16-rounded for an f16 cache); computed in f64.
pub fn cpu(spec: &AttnSpec, q: &[f32], k: &[f32], v: &[f32], kv_len: usize) -> Vec<f32> {
    cpu_sinks(spec, q, (k, v), kv_len, None)
}

/// `cpu` with per-head attention sinks: `exp(sink[h])` joins head h's softmax
/// denominator.
pub fn cpu_sinks(
    spec: &AttnSpec,
    q: &[f32],
    (k, v): (&[f32], &[f32]),
    kv_len: usize,
    sinks: Option<&[f32]>,
) -> Vec<f32> {
    let (n_heads, n_kv_heads, head_dim) = (
        spec.n_heads as usize,
        spec.n_kv_heads as usize,
        spec.head_dim as usize,
    );
    let (scale, window) = (spec.scale, spec.window);
    let kv_dim = n_kv_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let lo = match window {
        Some(w) if kv_len > w as usize => kv_len - w as usize,
        _ => 0,
    };
    let mut out = vec![0f32; n_heads * head_dim];
    for h in 0..n_heads {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let kb = (h / group) * head_dim;
        let scores: Vec<f64> = (lo..kv_len)
            .map(|p| {
                let kr = &k[p * kv_dim + kb..p * kv_dim + kb + head_dim];
                qh.iter()
                    .zip(kr)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    * scale as f64
            })
            .map(|s| spec.cap(s))
            .collect();
        let sink = sinks.map(|s| s[h] as f64);
        let m = scores
            .iter()
            .cloned()
            .chain(sink)
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let l: f64 = e.iter().sum::<f64>() + sink.map_or(0.0, |s| (s - m).exp());
        for d in 0..head_dim {
            let acc: f64 = (lo..kv_len)
                .zip(&e)
                .map(|(p, w)| w * v[p * kv_dim + kb + d] as f64)
                .sum();
            out[h * head_dim + d] = (acc / l) as f32;
        }
    }
    out
}

// The passes run in order: wgpu orders the second pass's read after the first's write.
impl super::Op for AttentionDecode {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    fn dispatches_at(&self, kv_len: u32) -> &[Dispatch] {
        self.for_len(kv_len)
    }
}

/// Decode attention with its preparation (rope_kv: per-head q/k norms, RoPE, the KV
/// append): steps short enough for the one-split pass run one dispatch that does both
/// (`ROPE`), longer ones rope_kv, pass 1 and the combine. Built by
/// [`AttentionDecode::with_rope`]. A batched step folds only when its rows are apart
/// (each a different sequence's only token): a row's pass reads the K and V rows of
/// earlier tokens of its sequence, which another workgroup of the same dispatch would
/// write.
pub struct RopeAttend {
    /// rope_kv's dispatch, then the attention's for long steps.
    long: Vec<Dispatch>,
    /// Short steps: the folded pass, or rope_kv and the single pass where it does not fold.
    short: Vec<Dispatch>,
    /// Short batched steps whose rows are not apart, where `short` folds: rope_kv and the
    /// single pass (`None` for one token per step, always apart).
    joined: Option<Vec<Dispatch>>,
    attn: AttentionDecode,
    /// The frequency table the folded pass reads.
    _freq: Option<wgpu::Buffer>,
}

impl AttentionDecode {
    /// This op (built for `tok`, its q the packed heads rope_kv writes) joined with the
    /// rope_kv op of `io` that fills that q and the cache. Where the adapter takes the
    /// one-split pass (a CPU rasterizer's balanced splits), the cache is f32 or f16, one
    /// workgroup holds a whole KV group (at most 8 query heads per KV head) and q, k and
    /// v are rows of one buffer at one stride (`io`, as `prep` reads them), short steps
    /// fold rope_kv into the pass (batched steps where their rows are apart: see
    /// [`RopeAttend`]); `out` is this op's output.
    pub fn with_rope(
        mut self,
        gpu: &Gpu,
        (spec, rope): (&AttnSpec, super::rope::RopeSpec),
        io: super::RopeKvIo,
        out: View,
        (cache, tok): (&KvCache, Tokens),
        sinks: Option<&wgpu::Buffer>,
    ) -> Result<RopeAttend, GpuError> {
        let one_buffer = io.k.view.buffer == io.q.view.buffer
            && io.v.view.buffer == io.q.view.buffer
            && io.k.stride == io.q.stride
            && io.v.stride == io.q.stride;
        let fold = self.fold.take().filter(|f| {
            f.heads == spec.n_heads / spec.n_kv_heads
                && f.kind != KvType::Q8_0
                && f.params.max_tokens == tok.max
                && one_buffer
        });
        let step = tok.step;
        let mut long = super::RopeKv::new(gpu, spec, rope, io, cache, tok)?.dispatches;
        let mut short: Vec<Dispatch> = Vec::new();
        let mut joined = None;
        let mut freq_keep = None;
        match fold {
            Some(f) => {
                let freq = super::rope::frequencies(gpu, rope, spec.head_dim, io.freq_factors)?;
                let eps = io.norms.map_or(0.0, |(_, e)| e);
                let p = Params {
                    q_offset: io.q.check("attention_decode q", tok.max)?,
                    k_offset: io.k.check("attention_decode k", tok.max)?,
                    v_offset: io.v.check("attention_decode v", tok.max)?,
                    src_stride: io.q.stride,
                    half_dims: rope.dims / 2,
                    eps,
                    mscale: rope.mscale,
                    temp_scale: io.q_temp.map_or(0.0, |t| t.0),
                    temp_floor: io.q_temp.map_or(1, |t| t.1.max(1)),
                    ..f.params
                };
                let flags = RopeFlags {
                    neox: rope.neox,
                    freq_factors: io.freq_factors.is_some(),
                    norm: io.norms.is_some(),
                };
                let k = key(
                    f.kind,
                    Pass::Final(Some(flags)),
                    f.vec4,
                    f.heads,
                    sinks.is_some(),
                    true,
                    Some((f.form, lane_cols(spec.head_dim, f.form.sg_min))),
                )?;
                let mut b = vec![
                    (0, io.q.view.buffer),
                    (1, &cache.k),
                    (2, &cache.v),
                    (5, out.buffer),
                    (6, &freq),
                    (STEP_BINDING, &step.buffer),
                ];
                b.extend(sinks.map(|s| (SINKS_BINDING, s)));
                b.extend(io.freq_factors.map(|f| (11, f)));
                if let Some(([qn, kn], _)) = io.norms {
                    b.extend([(9, qn), (10, kn)]);
                }
                let (nh, hd) = (spec.n_heads as f64, spec.head_dim as f64);
                let q_bytes = 4.0 * (nh + 2.0 * spec.n_kv_heads as f64) * hd;
                let grid = (1, spec.n_heads / f.heads, tok.max);
                let d = build_dispatch(gpu, &k, k.label(), &b, &p, grid)?.costed(
                    format!("{}x{}", spec.n_heads, spec.head_dim),
                    Work {
                        t: q_bytes + 4.0 * nh * hd,
                        k: 2.0 * cache.row_bytes() as f64,
                        ..Work::default()
                    },
                    Work {
                        tk: 4.0 * nh * hd,
                        ..Work::default()
                    },
                );
                short.push(d);
                freq_keep = Some(freq);
                long.append(&mut self.dispatches);
                if tok.max > 1 {
                    let mut j = super::RopeKv::new(gpu, spec, rope, io, cache, tok)?.dispatches;
                    j.append(&mut self.single);
                    joined = Some(j);
                }
            }
            None => {
                // No fold: rope_kv before either form.
                let mut rope_again =
                    super::RopeKv::new(gpu, spec, rope, io, cache, tok)?.dispatches;
                short.append(&mut rope_again);
                short.append(&mut self.single);
                long.append(&mut self.dispatches);
            }
        }
        Ok(RopeAttend {
            long,
            short,
            joined,
            attn: self,
            _freq: freq_keep,
        })
    }
}

impl RopeAttend {
    /// Whether steps at `kv_len` whose rows are apart take the folded pass (one
    /// dispatch).
    pub fn folds(&self, kv_len: u32) -> bool {
        self.attn.short(kv_len) && self.short.len() == 1
    }

    /// The dispatches of a step ending at `kv_len`; `apart` as `Op::dispatches_batch`.
    fn pick(&self, kv_len: u32, apart: bool) -> &[Dispatch] {
        match &self.joined {
            _ if !self.attn.short(kv_len) => &self.long,
            Some(j) if !apart => j,
            _ => &self.short,
        }
    }
}

impl super::Op for RopeAttend {
    fn dispatches(&self) -> &[Dispatch] {
        &self.long
    }

    fn dispatches_at(&self, kv_len: u32) -> &[Dispatch] {
        self.pick(kv_len, false)
    }

    fn dispatches_batch(&self, _n_tokens: u32, kv_len: u32, apart: bool) -> &[Dispatch] {
        self.pick(kv_len, apart)
    }
}
