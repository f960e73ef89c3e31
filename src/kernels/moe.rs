//! Mixture-of-experts FFN kernels: the router's choice (`MoeRoute`, `moe_route.wgsl`),
//! the selected experts' projections (`MatVecId`, ggml's MUL_MAT_ID, `matvec_id.wgsl`:
//! each token reads only its experts' rows) and the weighted sum of their outputs
//! (`MoeSum`, `moe_sum.wgsl`). A decode step's weight traffic is `n_used / n_expert` of
//! the expert tensors.

use super::{
    build_dispatch, build_dispatch_with, to_u32, token_grid, weight_key, Dispatch, Rows, Tokens,
    View, Work, STEP_BINDING,
};
use crate::gpu::{Gpu, GpuError, GpuTensor, PipelineKey, ShaderVariant};
use crate::quant::GgmlType;

/// Lanes per output row of the expert projection.
const LANES: u32 = 8;
/// Workgroup size of the expert projection.
const WORKGROUP: u32 = 64;
/// The most experts one token may use (`MAX_USED` in `moe_route.wgsl`).
pub const MAX_USED: u32 = 32;
/// The most experts a router may choose from.
pub const MAX_EXPERTS: u32 = 1024;

/// How a router turns its logits into experts and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over every expert, the `n_used` largest, renormalized to sum to 1
    /// (Qwen3-MoE, Mixtral).
    SoftmaxNorm,
    /// Softmax over every expert, the `n_used` largest as they are.
    Softmax,
    /// The `n_used` largest logits, softmax over those alone (gpt-oss).
    TopKSoftmax,
}

params! {
    @binding(3)
    pub(crate) struct IdParams {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        n_tokens: u32,
        x_offset: u32,
        x_stride: u32,
        x_slot_stride: u32,
        y_offset: u32,
        y_stride: u32,
        expert_rows: u32,
        n_used: u32,
    }
}

/// `y[t, j, r] = W[e * expert_rows + r] . x[t, j] (+ bias)` with `e = sel[t, j]`, for the
/// step's tokens and each of their `n_used` experts.
pub struct MatVecId {
    /// One dispatch per shard of the expert tensor.
    pub dispatches: Vec<Dispatch>,
}

/// What an expert projection reads and writes.
#[derive(Clone, Copy)]
pub struct ExpertIo<'a> {
    /// The input: one row of `w.cols` per token (`per_slot` false) or per slot.
    pub x: View<'a>,
    /// Whether each of a token's slots has its own input row (the down projection).
    pub per_slot: bool,
    /// `[token][n_used][expert_rows]` outputs.
    pub y: View<'a>,
    /// `[token][n_used]` expert ids (`MoeRoute`'s output).
    pub sel: &'a wgpu::Buffer,
    /// Per-expert biases `[n_expert][expert_rows]`, when the model has them (gpt-oss).
    pub bias: Option<&'a wgpu::Buffer>,
    /// The step's slots grouped by expert (`MoeGroup`'s `order` and `offsets`): the
    /// grouped form reads them.
    pub grouping: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
}

fn id_defines(bias: bool, grouped: bool) -> &'static [&'static str] {
    match (bias, grouped) {
        (false, false) => &["LANES=8"],
        (true, false) => &["LANES=8", "BIAS"],
        (false, true) => &["LANES=8", "GROUPED"],
        (true, true) => &["LANES=8", "BIAS", "GROUPED"],
    }
}

impl MatVecId {
    /// Builds the dispatches over up to `tok.max` tokens: `w` holds `n_expert` experts
    /// of `expert_rows` rows (its rows are `n_expert * expert_rows`). One workgroup per
    /// (row block, slot, token): the decode form.
    pub fn new(
        gpu: &Gpu,
        w: &GpuTensor,
        shape: (u32, u32),
        io: ExpertIo,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, shape, io, tok, false)
    }

    /// The prefill form: one workgroup per (row block, expert) takes the step's slots
    /// that chose the expert (`io.grouping`, made by `MoeGroup`) and reads its rows once
    /// per 8 of them (tokens grouped by expert).
    pub fn grouped(
        gpu: &Gpu,
        w: &GpuTensor,
        shape: (u32, u32),
        io: ExpertIo,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, shape, io, tok, true)
    }

    fn build(
        gpu: &Gpu,
        w: &GpuTensor,
        (expert_rows, n_used): (u32, u32),
        io: ExpertIo,
        tok: Tokens,
        grouped: bool,
    ) -> Result<Self, GpuError> {
        let what = format!("matvec_id {}", w.name);
        let n_expert = if expert_rows == 0 {
            0
        } else {
            w.rows / expert_rows as u64
        };
        if expert_rows == 0
            || n_expert == 0
            || n_expert * expert_rows as u64 != w.rows
            || n_used == 0
            || n_used > MAX_USED
            || tok.max == 0
        {
            return Err(GpuError::Runtime(format!(
                "{what}: {} rows are not whole experts of {expert_rows}, or {n_used} experts \
                 per token is outside 1..={MAX_USED}",
                w.rows
            )));
        }
        let k = to_u32("matvec_id k", w.cols)?;
        let slots = tok.max as u64 * n_used as u64;
        let x_rows = if io.per_slot { slots } else { tok.max as u64 };
        io.x.check(&format!("{what} input"), x_rows * w.cols)?;
        io.y.check(&format!("{what} output"), slots * expert_rows as u64)?;
        if io.sel.size() < slots * 4 {
            return Err(GpuError::Runtime(format!(
                "{what}: the expert ids need {} bytes",
                slots * 4
            )));
        }
        if let Some(b) = io.bias {
            if b.size() < w.rows * 4 {
                return Err(GpuError::Runtime(format!(
                    "{what}: the expert biases need {} bytes",
                    w.rows * 4
                )));
            }
        }
        let x_offset = to_u32("matvec_id x offset", io.x.offset)?;
        let (x_stride, x_slot_stride) = match io.per_slot {
            true => (k * n_used, k),
            false => (k, 0),
        };
        if !w.ty.is_float() && (!x_offset.is_multiple_of(4) || !k.is_multiple_of(4)) {
            return Err(GpuError::Runtime(format!(
                "{what}: input offset {x_offset} and width {k} must be multiples of 4"
            )));
        }
        to_u32("matvec_id x end", io.x.offset + x_rows * w.cols)?;
        to_u32("matvec_id y end", io.y.offset + slots * expert_rows as u64)?;
        let p0 = IdParams {
            rows: 0,
            k,
            row_words: to_u32("row words", w.row_words)?,
            row_offset: 0,
            n_tokens: tok.max,
            x_offset,
            x_stride,
            x_slot_stride,
            y_offset: to_u32("matvec_id y offset", io.y.offset)?,
            y_stride: n_used * expert_rows,
            expert_rows,
            n_used,
        };
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        let row_blocks = expert_rows.div_ceil(WORKGROUP / LANES);
        if row_blocks > max || tok.max > max || n_expert > max as u64 {
            return Err(GpuError::Runtime(format!(
                "{what}: {expert_rows} rows x {} tokens exceed the dispatch limit",
                tok.max
            )));
        }
        let subgroups = gpu.features.subgroups
            && gpu.info.subgroup_min_size >= LANES
            && gpu.info.subgroup_min_size.is_power_of_two();
        let key = weight_key(
            "matvec_id",
            w.ty,
            subgroups,
            WORKGROUP,
            id_defines(io.bias.is_some(), grouped),
        );
        let grid = match grouped {
            true => (row_blocks, n_expert as u32, 1),
            false => (row_blocks, n_used, tok.max),
        };
        let n = w.shards.len();
        let mut dispatches = Vec::with_capacity(n);
        for (i, shard) in w.shards.iter().enumerate() {
            let p = IdParams {
                rows: to_u32("shard rows", shard.rows)?,
                row_offset: to_u32("shard start", shard.row_start)?,
                ..p0
            };
            let mut entries = vec![
                (0, w.binding(i)),
                (1, io.x.buffer.as_entire_binding()),
                (2, io.y.buffer.as_entire_binding()),
            ];
            if let Some(b) = io.bias {
                entries.push((5, b.as_entire_binding()));
            }
            // The grouped form reads the experts' slot lists (made for the step) instead
            // of `sel` and the step.
            if grouped {
                let Some((order, offsets)) = io.grouping else {
                    return Err(GpuError::Runtime(format!(
                        "{what}: the grouped form needs the slots grouped by expert"
                    )));
                };
                if order.size() < slots * 4 || offsets.size() < (2 * n_expert + 2) * 4 {
                    return Err(GpuError::Runtime(format!(
                        "{what}: grouping buffers of {} and {} bytes are too small",
                        order.size(),
                        offsets.size()
                    )));
                }
                entries.push((6, order.as_entire_binding()));
                entries.push((7, offsets.as_entire_binding()));
            } else {
                entries.push((4, io.sel.as_entire_binding()));
                entries.push((STEP_BINDING, tok.step.buffer.as_entire_binding()));
            }
            let label = format!("{} [{} shard {}/{n}]", key.label(), w.name, i + 1);
            let d = build_dispatch_with(gpu, &key, label, entries, &p, grid)?;
            // Per token: this shard's share of n_used experts' rows, decoded; read once per
            // token (per-token form), or once per step for every expert's (grouped: the
            // compulsory traffic, each expert's rows reread only per 8 of its tokens).
            let share = shard.rows as f64 / w.rows as f64;
            let rows = n_used as f64 * expert_rows as f64 * share;
            let read = w.row_words as f64 * 4.0;
            let io = w.cols as f64 * 4.0 + rows * 4.0;
            let (c, t) = match grouped {
                true => (shard.rows as f64 * read, io),
                false => (0.0, rows * read + io),
            };
            dispatches.push(d.costed(
                format!("{}x{}", w.rows, w.cols),
                Work {
                    c,
                    t,
                    ..Work::default()
                },
                Work::per_token(2.0 * rows * w.cols as f64),
            ));
        }
        Ok(Self { dispatches })
    }
}

/// Every variant of the expert projection for `ty`, for validation tests.
pub(crate) fn id_variants(ty: GgmlType) -> Vec<PipelineKey> {
    let mut v = Vec::new();
    for sg in [false, true] {
        for bias in [false, true] {
            for grouped in [false, true] {
                let d = id_defines(bias, grouped);
                v.push(weight_key("matvec_id", ty, sg, WORKGROUP, d));
            }
        }
    }
    v
}

params! {
    @binding(3)
    pub(crate) struct RouteParams {
        n_expert: u32,
        n_used: u32,
        l_offset: u32,
        l_stride: u32,
        max_tokens: u32,
        _pad: [u32; 3],
    }
}

/// The router's choice per token: `[token][n_used]` expert ids and weights.
pub struct MoeRoute {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

/// Workgroup size of the router (one invocation per token).
const ROUTE_WG: u32 = 64;

fn route_key(g: Gating) -> PipelineKey {
    let defines: &'static [&'static str] = match g {
        Gating::SoftmaxNorm => &["NORM"],
        Gating::Softmax => &[],
        Gating::TopKSoftmax => &["TOPK_SOFTMAX"],
    };
    PipelineKey {
        op: "moe_route",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(ROUTE_WG)
        },
    }
}

impl MoeRoute {
    /// Builds the dispatch: `logits` holds `n_expert` values per token; `sel` and `wts`
    /// take `n_used` per token.
    pub fn new(
        gpu: &Gpu,
        logits: Rows,
        (sel, wts): (&wgpu::Buffer, &wgpu::Buffer),
        (n_used, gating): (u32, Gating),
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let n_expert = to_u32("moe_route experts", logits.per_token())?;
        if n_expert == 0 || n_expert > MAX_EXPERTS || n_used == 0 || n_used > n_expert.min(MAX_USED)
        {
            return Err(GpuError::Runtime(format!(
                "moe_route: {n_used} of {n_expert} experts (needs 1..={MAX_USED} of at most {MAX_EXPERTS})"
            )));
        }
        let slots = tok.max as u64 * n_used as u64 * 4;
        if sel.size() < slots || wts.size() < slots {
            return Err(GpuError::Runtime(format!(
                "moe_route: ids and weights need {slots} bytes each"
            )));
        }
        let p = RouteParams {
            n_expert,
            n_used,
            l_offset: logits.check("moe_route logits", tok.max)?,
            l_stride: logits.stride,
            max_tokens: tok.max,
            _pad: [0; 3],
        };
        let key = route_key(gating);
        let groups = (tok.max.div_ceil(ROUTE_WG), 1, 1);
        let buffers = [
            (1, logits.view.buffer),
            (2, sel),
            (4, wts),
            (STEP_BINDING, &tok.step.buffer),
        ];
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{n_used}/{n_expert}"),
            Work::per_token(n_expert as f64 * 4.0 + n_used as f64 * 8.0),
            Work::per_token(n_expert as f64 * (3.0 + n_used as f64)),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

params! {
    @binding(3)
    pub(crate) struct SumParams {
        width: u32,
        n_used: u32,
        y_offset: u32,
        out_offset: u32,
        out_stride: u32,
        max_tokens: u32,
        groups_per_token: u32,
        _pad: u32,
    }
}

/// `out[t] = sum_j wts[t, j] * y[t, j]`: the experts' outputs, weighted.
pub struct MoeSum {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

/// Workgroup size of the weighted sum (one invocation per element).
const SUM_WG: u32 = 256;

fn sum_key(shared: bool) -> PipelineKey {
    let defines: &'static [&'static str] = if shared { &["SHARED"] } else { &[] };
    PipelineKey {
        op: "moe_sum",
        variant: ShaderVariant {
            defines,
            ..ShaderVariant::new(SUM_WG)
        },
    }
}

impl MoeSum {
    /// Builds the dispatch: `y` holds `n_used` rows of `out.per_token()` per token. With
    /// `shared` (a shared expert's gate logits, one per token, its output already in
    /// `out`): `out[t] = sigmoid(shared[t]) * out[t] + sum_j ...`.
    pub fn new(
        gpu: &Gpu,
        y: View,
        wts: &wgpu::Buffer,
        out: Rows,
        (n_used, shared): (u32, Option<&wgpu::Buffer>),
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let width = to_u32("moe_sum width", out.per_token())?;
        let rows = tok.max as u64 * n_used as u64;
        y.check("moe_sum input", rows * width as u64)?;
        to_u32("moe_sum input end", y.offset + rows * width as u64)?;
        if n_used == 0 || wts.size() < rows * 4 || out.stride == 0 {
            return Err(GpuError::Runtime(format!(
                "moe_sum: {n_used} experts per token, weights of {} bytes (needs {})",
                wts.size(),
                rows * 4
            )));
        }
        let per_token = width.div_ceil(SUM_WG);
        let p = SumParams {
            width,
            n_used,
            y_offset: to_u32("moe_sum y offset", y.offset)?,
            out_offset: out.check("moe_sum output", tok.max)?,
            out_stride: out.stride,
            max_tokens: tok.max,
            groups_per_token: per_token,
            _pad: 0,
        };
        let groups = token_grid(gpu, "moe_sum", per_token as u64, tok.max)?;
        if shared.is_some_and(|s| s.size() < tok.max as u64 * 4) {
            return Err(GpuError::Runtime(
                "moe_sum: the shared expert's gates need one f32 per token".into(),
            ));
        }
        let key = sum_key(shared.is_some());
        let mut buffers = vec![
            (1, y.buffer),
            (2, out.view.buffer),
            (4, wts),
            (STEP_BINDING, &tok.step.buffer),
        ];
        buffers.extend(shared.map(|s| (5, s)));
        let w = width as f64 * n_used as f64;
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, groups)?.costed(
            format!("{n_used}x{width}"),
            Work::per_token(w * 4.0 + width as f64 * 4.0),
            Work::per_token(2.0 * w),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

params! {
    @binding(3)
    pub(crate) struct GroupParams {
        n_expert: u32,
        n_used: u32,
        max_tokens: u32,
        _pad: u32,
    }
}

/// Groups the step's slots by expert (a counting sort): `order[offsets[e]..offsets[e+1]]`
/// are expert e's slots `t * n_used + j`, in increasing order. `offsets` holds
/// `2 * (n_expert + 1)` words (the second half is scratch).
pub struct MoeGroup {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
}

fn group_key() -> PipelineKey {
    PipelineKey {
        op: "moe_group",
        variant: ShaderVariant::new(64),
    }
}

impl MoeGroup {
    /// Builds the dispatch over up to `tok.max` tokens of `n_used` experts each.
    pub fn new(
        gpu: &Gpu,
        sel: &wgpu::Buffer,
        (order, offsets): (&wgpu::Buffer, &wgpu::Buffer),
        (n_expert, n_used): (u32, u32),
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let slots = tok.max as u64 * n_used as u64 * 4;
        if n_expert == 0
            || n_expert > MAX_EXPERTS
            || sel.size() < slots
            || order.size() < slots
            || offsets.size() < (2 * n_expert as u64 + 2) * 4
        {
            return Err(GpuError::Runtime(format!(
                "moe_group: {n_expert} experts, buffers too small for {} tokens of {n_used}",
                tok.max
            )));
        }
        let p = GroupParams {
            n_expert,
            n_used,
            max_tokens: tok.max,
            _pad: 0,
        };
        let key = group_key();
        let buffers = [
            (1, sel),
            (2, order),
            (4, offsets),
            (STEP_BINDING, &tok.step.buffer),
        ];
        let d = build_dispatch(gpu, &key, key.label(), &buffers, &p, (1, 1, 1))?.costed(
            format!("{n_used}/{n_expert}"),
            Work {
                c: n_expert as f64 * 16.0,
                t: n_used as f64 * 12.0,
                ..Work::default()
            },
            Work::per_token(n_used as f64 * 4.0),
        );
        Ok(Self {
            dispatches: vec![d],
        })
    }
}

/// CPU twin of `MoeGroup`: (order, offsets[..n_expert + 1]).
pub fn cpu_group(sel: &[u32], n_expert: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n_expert + 1];
    for &e in sel {
        offsets[e as usize + 1] += 1;
    }
    for e in 0..n_expert {
        offsets[e + 1] += offsets[e];
    }
    let mut cursor = offsets.clone();
    let mut order = vec![0u32; sel.len()];
    for (i, &e) in sel.iter().enumerate() {
        order[cursor[e as usize] as usize] = i as u32;
        cursor[e as usize] += 1;
    }
    (order, offsets)
}

impl super::Op for MoeGroup {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

/// The router, grouping and sum variants, for validation tests.
pub(crate) fn variants() -> Vec<PipelineKey> {
    vec![
        route_key(Gating::SoftmaxNorm),
        route_key(Gating::Softmax),
        route_key(Gating::TopKSoftmax),
        group_key(),
        sum_key(false),
        sum_key(true),
    ]
}

/// CPU twin of the router on one token's logits: the chosen experts and their weights,
/// in f64 (ties to the lower id).
pub fn cpu_route(logits: &[f32], n_used: usize, gating: Gating) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(n_used);
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let total: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
    let top = order.first().map_or(0.0, |&e| logits[e] as f64);
    let raw: Vec<f64> = order
        .iter()
        .map(|&e| match gating {
            Gating::TopKSoftmax => (logits[e] as f64 - top).exp(),
            _ => (logits[e] as f64 - m).exp() / total,
        })
        .collect();
    let sum: f64 = raw.iter().sum();
    let div = match gating {
        Gating::TopKSoftmax => sum,
        Gating::SoftmaxNorm => sum.max(6.103515625e-5),
        Gating::Softmax => 1.0,
    };
    order
        .into_iter()
        .zip(raw)
        .map(|(e, w)| (e, (w / div) as f32))
        .collect()
}

/// Both forms of an expert projection for a multi-token plan: a step whose tokens pick
/// at least as many slots as there are experts runs the grouped form (each expert's rows
/// read once per 8 of its tokens), a smaller one the per-token form (no workgroups for
/// experts nobody chose).
pub struct ExpertProj {
    per_token: MatVecId,
    grouped: MatVecId,
    /// Experts per token, and the experts in the tensor.
    n_used: u32,
    n_expert: u32,
}

impl ExpertProj {
    /// Both forms over `w`, as `MatVecId::new` takes them.
    pub fn new(
        gpu: &Gpu,
        w: &GpuTensor,
        (expert_rows, n_used): (u32, u32),
        io: ExpertIo,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        let shape = (expert_rows, n_used);
        Ok(Self {
            per_token: MatVecId::new(gpu, w, shape, io, tok)?,
            grouped: MatVecId::grouped(gpu, w, shape, io, tok)?,
            n_used,
            n_expert: (w.rows / expert_rows.max(1) as u64) as u32,
        })
    }

    /// The form a step of `n_tokens` runs.
    pub fn for_tokens(&self, n_tokens: u32) -> &MatVecId {
        if n_tokens.saturating_mul(self.n_used) >= self.n_expert {
            &self.grouped
        } else {
            &self.per_token
        }
    }
}

impl super::Op for ExpertProj {
    fn dispatches(&self) -> &[Dispatch] {
        &self.grouped.dispatches
    }

    fn dispatches_for(&self, n_tokens: u32, _kv_len: u32) -> &[Dispatch] {
        &self.for_tokens(n_tokens).dispatches
    }
}

impl super::Op for MatVecId {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

impl super::Op for MoeRoute {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

impl super::Op for MoeSum {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
