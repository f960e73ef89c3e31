//! Matrix-vector product over quantized weights (decode: one token). Shader: `matvec.wgsl`.

use super::{grid, to_u32, weight_bytes, weight_dispatches, Dispatch, View, WeightKernel, Work};
use crate::gpu::{Gpu, GpuError, GpuTensor};
use crate::model::Activation;
use crate::quant::GgmlType;

/// The kinds of adapter the matvec geometry is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterClass {
    /// A CPU rasterizer (lavapipe, SwiftShader, WARP): SIMD lanes, big caches.
    Cpu,
    /// NVIDIA: 32-wide warps.
    Nvidia,
    /// AMD: 32- or 64-wide waves.
    Amd,
    /// Apple: 32-wide SIMD-groups.
    Apple,
    /// Intel: 8-, 16- or 32-wide subgroups.
    Intel,
    /// Anything else (mobile GPUs, unknown vendors).
    Other,
}

impl AdapterClass {
    /// The class of `info`'s adapter.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        if info.device_type == wgpu::DeviceType::Cpu {
            return Self::Cpu;
        }
        match info.vendor {
            0x10de => Self::Nvidia,
            0x1002 | 0x1022 => Self::Amd,
            0x106b => Self::Apple,
            0x8086 => Self::Intel,
            _ => Self::Other,
        }
    }
}

/// How the matvec kernel maps rows onto an adapter: `workgroup` invocations, `lanes` of
/// them per row (so `workgroup / lanes` rows per workgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Invocations per workgroup.
    pub workgroup: u32,
    /// Invocations sharing one row (a power of two dividing `workgroup`).
    pub lanes: u32,
    /// Rows per invocation (1, 2 or 4): each x value it reads serves this many rows.
    pub rows: u32,
}

/// The geometry per adapter class. On GPUs a row takes a whole 32-wide subgroup (NVIDIA
/// warps, Apple SIMD-groups, AMD's wave32 or half a wave64) or 16 lanes (Intel, whose
/// subgroups may be 8 to 32 wide, and unknown vendors); workgroups hold 4 to 8 rows, one
/// per invocation group (measured on an H200, Llama-3.1-8B-shaped Q4_K_M tg64: 85.4
/// tokens/s with one row per invocation, 79.6 with two, 66.7 with four). On a CPU
/// rasterizer (lavapipe, 8-wide SIMD) the types that preload x (every block type with a
/// decoder since 2026-12-05) take `SHARE_GEOMETRY` and floats and Q6_K
/// `ONE_ROW_SHARE_GEOMETRY` (`class_geometry`); the table's entry (used before that by
/// Q2_K, IQ4_NL, IQ4_XS and MXFP4, and by float types before their run form) gives a row
/// one 8-lane subgroup and each invocation four rows (measured before `SHARE_GEOMETRY`
/// served the preloading types: lavapipe tg64 with `HEARTH_MATVEC=128,8,4` against 64
/// invocations and two rows, alternated, SmolLM2 25.5-27.3 tokens/s against 22.5-23.4,
/// Gemma 3 median 16.3 against 15.6). `geometry` decides whether the lanes may sum with
/// subgroup shuffles.
pub const TABLE: [(AdapterClass, Geometry); 6] = [
    (
        AdapterClass::Cpu,
        Geometry {
            workgroup: 128,
            lanes: 8,
            rows: 4,
        },
    ),
    (
        AdapterClass::Nvidia,
        Geometry {
            workgroup: 128,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Amd,
        Geometry {
            workgroup: 256,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Apple,
        Geometry {
            workgroup: 128,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Intel,
        Geometry {
            workgroup: 128,
            lanes: 16,
            rows: 1,
        },
    ),
    (
        AdapterClass::Other,
        Geometry {
            workgroup: 64,
            lanes: 16,
            rows: 1,
        },
    ),
];

/// The CPU class's geometry for the types that preload a part's x (see `shares_x`) on
/// adapters with subgroups of at least 8: one lane per row, two rows per invocation, 32
/// invocations per workgroup. The shader's `XSHARE` form then has lane j of each
/// subgroup load vec4 j of the part's x and broadcast it to the others, where the
/// table's 8 lanes per row load every x value in every lane (a CPU rasterizer runs a
/// load per lane, a broadcast as a register move).
///
/// On lavapipe (Mesa 25.0.7) every storage load at an address that differs between
/// lanes is a loop over the lanes with a bounds check per 32-bit component (about four
/// fifths of the instructions in the Q4_1 matvec's loop). One row per lane keeps the
/// loads to the row's own words, one x vec4 per 32 weights and a scale, and
/// 32-invocation workgroups spread even a 576-row matrix over 18 workgroups.
///
/// Measured on lavapipe, alternated runs of `hearth bench MODEL -p 0 -n 64 -r 1`:
/// Gemma 3 16.6-17.7 tokens/s against 12.2-14.8 with the table's 8 lanes per row for
/// Q4_K, Q5_0, Q6_K and Q8_0 (four rows per invocation for Q4_0 and Q4_1 before);
/// SmolLM2 27.8-29.6 against 22.7-26.5. In `hearth profile` every matvec of Gemma 3
/// took 0.69-0.98 of the table geometry's time, and four rows per invocation were
/// slower than one (the Gemma head 0.99, q/k/v 0.77 where one row gave 0.69). Two rows
/// per invocation (each x vec4 loaded and broadcast once for both) against one, later
/// (2026-12-03, `HEARTH_MATVEC=32,1,2` against the table, alternated, `hearth profile
/// MODEL -p 1 -n 8`): Gemma 3's decode step 52.0 against 54.7 ms on average over three
/// pairs, every matvec faster (the Q8_0 head 20.1-20.6 against 22.2 ms, Q4_K 106-107
/// against 127-132 us, Q5_0 155-186 against 176-205, Q6_K 297-300 against 320-326);
/// SmolLM2 26.3-27.4 against 27.4-27.6 ms, all but its gated gate/up pair faster (249
/// against 233 us: two matrices' rows per invocation already).
pub const SHARE_GEOMETRY: Geometry = Geometry {
    workgroup: 32,
    lanes: 1,
    rows: 2,
};

/// The CPU class's x-sharing geometry for float types (their run form, `float_runs`)
/// and Q6_K (`one_row`): one row per invocation. A float run's weights are 8 (F32) or 4
/// (F16, BF16) vec4 words against 8 vec4s of x, and a Q6_K part holds its scales and
/// two planes of bits, so a second row doubles many live registers (likely spilled on
/// a host with 16 vector registers, AVX2; not checked in the generated code).
///
/// Measured on lavapipe (Mesa 25.0.7, AMD EPYC Zen 3, 2026-12-04), alternated runs of
/// `HEARTH_MATVEC=32,1,1` against `SHARE_GEOMETRY` on random-weight SmolLM2-135M-shaped
/// files (`random_gguf ... smollm2-135m f16|bf16|f32`): `hearth bench FILE -p 0 -n 64
/// -r 1` F16 15.31 and 14.48 tokens/s against 10.74 and 9.36, BF16 17.40 and 15.56
/// against 10.62 and 11.60, F32 9.77 and 9.62 against 6.33 and 7.48; `hearth profile
/// FILE -p 16 -n 8` decode step F16 70-71 ms against 92-102, BF16 63-66 against 84, the
/// F16 head (49152 x 576) 9.2-9.7 against 13.8-15.6 ms. The quantized types were within
/// that host's noise both ways and keep `SHARE_GEOMETRY` (Q4_1 is faster there: 549-609
/// against 775-1019 us in `HEARTH_BENCH_ROWS=2048 HEARTH_BENCH_COLS=2048 cargo bench
/// --bench matvec`), except Q6_K: 1066-1237 against 1561-2372 us in that bench, and in
/// Gemma 3's decode (`hearth profile MODEL -p 16 -n 8`) its 640 x 2048 matvec 457-493
/// against 614-698 us. On an AVX-512 host (32 vector registers, 2026-12-03) two rows had
/// been 7% faster for Q6_K: 297-300 against 320-326 us in `hearth profile`.
pub const ONE_ROW_SHARE_GEOMETRY: Geometry = Geometry {
    workgroup: 32,
    lanes: 1,
    rows: 1,
};

/// Whether the CPU class runs `ty`'s matvec in the x-sharing form (`SHARE_GEOMETRY`,
/// `ONE_ROW_SHARE_GEOMETRY` for floats and Q6_K): every type that preloads a part's x
/// (the dtype's `XPRE`), float types through their run form (`float_runs`). Measured on
/// lavapipe (`benches/matvec`, 2048 x 2048, alternated, 2026-12-04, before floats moved
/// to one row): F16 1.90 ms, BF16 1.56-1.61, F32 3.14-3.88 in the run form at
/// `SHARE_GEOMETRY`, against 2.78-2.94,
/// 2.61-2.66 and 4.83-4.95 at the table's and 4.01-5.35, 3.82-3.86 and 4.88-5.89 in the
/// generic form before; float rows that are not runs (the generic form) ran 1.07-1.13x
/// slower at `SHARE_GEOMETRY` than at the table's geometry. Q2_K, IQ4_NL, IQ4_XS and
/// MXFP4 joined on 2026-12-05 (their decoders had read x per row through `xv4`):
/// `cargo bench --bench matvec` (4096 x 4096, lavapipe on a 2-vCPU Xeon) Q2_K 7,896 ->
/// 1,951-2,944 us, IQ4_NL 11,678 -> 2,484-3,123, IQ4_XS 7,801 -> 2,517-3,933, MXFP4
/// 7,816 -> 2,408-2,535 (one row per invocation, `HEARTH_MATVEC=32,1,1`, within the
/// noise of two).
pub fn shares_x(ty: GgmlType) -> bool {
    ty.is_float()
        || matches!(
            ty,
            GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::IQ4_NL
                | GgmlType::IQ4_XS
                | GgmlType::MXFP4
        )
}

/// Lane counts per row the shader supports (powers of two up to the widest subgroup).
const LANES: [u32; 6] = [1, 4, 8, 16, 32, 64];
/// Rows per invocation the shader supports.
const NR: [u32; 3] = [1, 2, 4];

/// Row groups per invocation (`SEQ`) the shader is built for: see `row_runs`.
const SEQ: [u32; 4] = [1, 2, 4, ROW_RUNS];

/// The row groups an invocation of the CPU class's x-sharing geometry walks in turn
/// where a matrix has rows enough (`row_runs`).
pub const ROW_RUNS: u32 = 8;

/// Workgroups a matrix keeps at least when its invocations walk `ROW_RUNS` row groups.
const ROW_RUNS_MIN_WORKGROUPS: u64 = 32;

/// Items (a subgroup's walked rows) a claimed matrix keeps at least when its
/// invocations walk row groups (`row_runs`).
const ROW_RUNS_MIN_ITEMS: u64 = 8;

/// Row groups (of `g.rows` rows) each invocation walks in turn for a matrix of type `ty`
/// whose smallest dispatch has `rows` rows: `ROW_RUNS` on a CPU rasterizer at
/// `SHARE_GEOMETRY` for block types where that leaves the matrix at least
/// `ROW_RUNS_MIN_WORKGROUPS` workgroups (an output head); where the build claims its
/// rows (`claimed`) the longest walk that leaves `ROW_RUNS_MIN_ITEMS` items (below);
/// else 1. A lane's row groups are consecutive, so it reads one contiguous stretch of
/// the weights instead of a row pair (hundreds of bytes) per invocation: the CPU's
/// prefetchers follow long streams and not short ones (the profile's streaming-read
/// probe read 2.9-4.2 GB/s in 512-byte runs per invocation and 11-14 in 16 KiB runs,
/// 2026-12-04).
///
/// Measured on lavapipe (AMD EPYC Zen 3, 2026-12-04), alternated, `benches/matvec` with
/// HEARTH_BENCH_ROWS=65536 HEARTH_BENCH_COLS=640 (Gemma's head width), four rounds:
/// Q8_0 2.57, 1.98, 2.03 and 2.41 GB/s walking one group, 3.18, 5.30, 2.42 and 4.60
/// walking 8 (4: 3.08, 4.62, 4.44, 2.87); Q5_0 2.21-3.06 against 2.36-3.75. At
/// 32768 x 1024: Q8_0 2.49-3.80 against 3.48-4.91, Q4_1 1.75-3.08 against 2.34-4.98,
/// Q4_K 2.01-2.85 against 2.34-3.55; F16 (one row per invocation) no faster, so floats
/// and Q6_K keep one group. In the models, alternated `hearth profile MODEL -p 0 -n 4`
/// and `-n 8`, six pairs: Gemma 3's Q8_0 head (two shards) 24.1-29.6 and 8.5-11.5 ms
/// walking 8 against 28.8-31.7 and 10.1-10.8, SmolLM2's 5.8-7.0 against 6.5-8.9 (13 of
/// the 15 comparisons faster; tg64 within this host's noise). Matrices of a few thousand
/// rows kept one group then: walking 8 (or 16) left Gemma 3's 640- to 2048-row matrices
/// a handful of workgroups for two threads, and its decode slower.
///
/// Where the rows are claimed at run time (`CLAIM`: subgroups, the CPU class's builds
/// with x through a window, which balance the threads whatever the items' count; the
/// build decides, `MatVec::folded`, and an unclaimed build keeps the head rule), a
/// smaller matrix walks the longest run of 2, 4 or 8 groups that leaves it at least
/// `ROW_RUNS_MIN_ITEMS` items (a subgroup's walked rows): Gemma 3's 2048-row gate/up pair
/// and 1280- and 1536-row projections 8, its 640-row ones 4, SmolLM2's 1536-row pair 8,
/// its 576- and 960-row ones 4. Alternated on the AVX-512 Xeon (2026-12-07, `hearth
/// bench MODEL -p 0 -n 64 -r 1`, five rounds each): SmolLM2 25.15 / 25.52 / 24.70 /
/// 26.29 / 26.11 -> 28.09 / 29.38 / 24.90 / 31.01 / 29.46 tokens/s (+12%), Gemma 3
/// 15.96 / 16.64 / 18.45 / 16.56 / 14.52 -> 17.69 / 15.93 / 18.49 / 16.60 / 16.56 (+4%:
/// its step is half the head, which walked 8 already); `hearth profile MODEL -p 4 -n 8`,
/// three rounds, the SmolLM2 gate/up pair 547 / 504 / 542 -> 409 / 361 / 353 us a call.
/// At least 16 or 32 items (shorter walks) measured between the two.
pub fn row_runs(gpu: &Gpu, g: Geometry, ty: GgmlType, rows: u64, claimed: bool) -> u32 {
    if AdapterClass::of(&gpu.info) != AdapterClass::Cpu || !may_walk(g, ty) {
        return 1;
    }
    let per = workgroup_rows(g, ROW_RUNS);
    if rows / per >= ROW_RUNS_MIN_WORKGROUPS {
        return ROW_RUNS;
    }
    if !claimed {
        return 1;
    }
    // Claimed (the subgroups take items of sg * g.rows * runs rows as they go): the
    // longest walk that leaves ROW_RUNS_MIN_ITEMS items.
    let sg = u64::from(gpu.info.subgroup_min_size.max(1));
    SEQ.iter()
        .rev()
        .copied()
        .find(|&s| rows / (sg * u64::from(g.rows * s)) >= ROW_RUNS_MIN_ITEMS)
        .unwrap_or(1)
}

/// Whether builds of `ty` at `g` may walk row groups (`row_runs`): block types at
/// `SHARE_GEOMETRY`.
fn may_walk(g: Geometry, ty: GgmlType) -> bool {
    g == SHARE_GEOMETRY && !ty.is_float()
}

/// `row_runs` for `w`'s dispatches: its smallest shard's output rows (a gate/up pair's
/// shard holds both projections, so half of it). `fold_parts` and the unclaimed build
/// share it, so the norm fold's sums match the workgroups that write them.
fn walks_of(gpu: &Gpu, g: Geometry, w: &GpuTensor, pair: bool, claimed: bool) -> u32 {
    let halve = if pair { 2 } else { 1 };
    let fewest = w.shards.iter().map(|s| s.rows / halve).min();
    row_runs(gpu, g, w.ty, fewest.unwrap_or(0), claimed)
}

/// Rows one workgroup of `g` covers when each invocation walks `seq` row groups.
fn workgroup_rows(g: Geometry, seq: u32) -> u64 {
    u64::from(g.workgroup / g.lanes * g.rows * seq)
}

/// What a matvec does with its rows besides `y = W x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `y = W x`.
    Plain,
    /// `y = act(y) * (W x)`: a gated FFN's up projection, `y` holding the gate's.
    Gated(Activation),
    /// `y = act(gate x) * (up x)`: W holds a gated FFN's gate rows, then its up rows.
    Pair(Activation),
}

/// What a decode matvec folds in around `W x` (see `matvec.wgsl`): the residual add
/// that ends a sub-block, with the next pre-norm's inputs (`prep`), and that pre-norm's
/// scale in the projections that read it (`norm`), so decode has no dispatch for either.
#[derive(Clone, Copy, Default)]
pub struct Fold<'a> {
    /// x is `x_res * w` (a pre-norm's weights applied by `prep`): the product is scaled
    /// by the norm's `1 / sqrt(mean(x_res^2) + eps)`.
    pub norm: Option<NormScale<'a>>,
    /// `y += W x`: y is the residual stream (the plain form only).
    pub add: bool,
    /// With `add`: the next pre-norm's inputs from the new y.
    pub prep: Option<NormPrep<'a>>,
    /// x is a sub-block's output that a post-norm, the residual add and the next
    /// pre-norm turn into this product's input (alone: no other fold with it).
    pub sandwich: Option<Sandwich<'a>>,
}

/// Gemma's sandwich norms folded into the projections that read their result: each
/// workgroup forms `v = res_in + RmsNorm(o) * post` (o the matvec's input binding) and
/// multiplies W by `RmsNorm(v) * norm`; with `write` the dispatch also stores v in
/// `res_out`, the residual stream from then on (`res_in` stays as it was: other
/// workgroups read it while one writes). `matvec.wgsl`'s `SANDWICH`.
#[derive(Clone, Copy)]
pub struct Sandwich<'a> {
    pub res_in: &'a wgpu::Buffer,
    pub res_out: &'a wgpu::Buffer,
    pub post: &'a wgpu::Buffer,
    pub norm: &'a wgpu::Buffer,
    pub eps: f32,
    pub write: bool,
}

/// Where a folded norm's scale comes from: the first `parts` values of `ssq` sum the
/// squares of the residual stream (a `NormPrep` wrote them), over `cols` values.
#[derive(Clone, Copy)]
pub struct NormScale<'a> {
    pub ssq: &'a wgpu::Buffer,
    pub parts: u32,
    pub eps: f32,
}

/// What an adding matvec leaves for the next pre-norm: `h[r] = y[r] * weights[r]` and
/// the sum of the squares of each workgroup's rows in `ssq` (`fold_parts` of them; where
/// its rows are claimed at run time, of each subgroup's: `MatVec::prep_parts` says).
#[derive(Clone, Copy)]
pub struct NormPrep<'a> {
    pub weights: &'a wgpu::Buffer,
    pub h: &'a wgpu::Buffer,
    pub ssq: &'a wgpu::Buffer,
}

impl Fold<'_> {
    /// Nothing folded.
    pub const NONE: Fold<'static> = Fold {
        norm: None,
        add: false,
        prep: None,
        sandwich: None,
    };
}

/// Whether a matvec of `w` on `gpu` (its geometry's workgroup size) can take a
/// `Sandwich`: rows whose x is read on vec4 words (k a multiple of 4), and the k values
/// of x in the adapter's workgroup memory beside the reductions' (two arrays of WG
/// values).
pub fn sandwich_fits(gpu: &Gpu, w: &GpuTensor) -> bool {
    sandwich_fits_in(gpu, w, geometry(gpu, w.ty).0.workgroup)
}

/// `sandwich_fits` in workgroups of `workgroup` invocations.
fn sandwich_fits_in(gpu: &Gpu, w: &GpuTensor, workgroup: u32) -> bool {
    let shared = w.cols * 4 + workgroup as u64 * 20;
    w.cols.is_multiple_of(4)
        && w.cols > 0
        && shared <= gpu.limits.max_compute_workgroup_storage_size as u64
}

/// Bindings of `NormPrep`'s weights, h and of the sums of squares (both folds).
const PREP_WEIGHTS: u32 = 6;
const PREP_H: u32 = 7;
const SSQ: u32 = 8;
/// Bindings of `Sandwich`'s buffers (its pre-norm's weights at `PREP_WEIGHTS`).
const RES_IN: u32 = 9;
const POST: u32 = 10;
const RES_OUT: u32 = 11;

/// The sums of squares a `NormPrep` of `w` writes on geometry `geo` (the adapter's
/// when None): one per workgroup of rows, as an unclaimed build walks them (a claimed
/// one leaves one per subgroup of its launches instead: `MatVec::prep_parts`). None
/// when a shard does not start on a whole workgroup (the fold then does not apply).
pub fn fold_parts(gpu: &Gpu, w: &GpuTensor, geo: Option<(Geometry, bool)>) -> Option<u32> {
    let (g, _) = geo.unwrap_or_else(|| geometry(gpu, w.ty));
    let per = workgroup_rows(g, walks_of(gpu, g, w, false, false));
    if per == 0 || w.shards.iter().any(|s| !s.row_start.is_multiple_of(per)) {
        return None;
    }
    u32::try_from(w.rows.div_ceil(per)).ok()
}

const FORMS: [Form; 7] = [
    Form::Plain,
    Form::Gated(Activation::Silu),
    Form::Gated(Activation::GeluTanh),
    Form::Gated(Activation::SwigluOai),
    Form::Pair(Activation::Silu),
    Form::Pair(Activation::GeluTanh),
    Form::Pair(Activation::SwigluOai),
];

/// The folds a build has: `norm`, `add`, `prep` (as `Fold`), and `sandwich` with the
/// number of vec4 words of x it holds in workgroup memory.
type Folds = (bool, bool, bool, Option<u32>);

/// The shader defines of a geometry and form: `MATVEC`, `LANES=n`, `NR=n`, then the
/// gated activation or `PAIR`, the folds `XNORM` (`norm`), `ADDY` (`add`, the
/// plain form only), `PREP` (with `add`) and `SANDWICH` with `XW4=n` (alone), and
/// `FLOAT_RUNS` (`runs`: float rows of whole runs of 32, see `float_runs`) (kept for
/// the process: `static_defines`).
fn defines_for(
    g: Geometry,
    seq: u32,
    form: Form,
    (norm, add, prep, sandwich): Folds,
    runs: bool,
) -> Result<&'static [&'static str], GpuError> {
    if !LANES.contains(&g.lanes)
        || !NR.contains(&g.rows)
        || !SEQ.contains(&seq)
        || !FORMS.contains(&form)
    {
        return Err(GpuError::Runtime(format!(
            "matvec: no build for {} lanes and {} rows per invocation walking {seq} \
             groups ({form:?})",
            g.lanes, g.rows
        )));
    }
    if (add && form != Form::Plain) || (prep && !add) {
        return Err(GpuError::Runtime(format!(
            "matvec: the residual add (and the norm inputs with it) fold into the plain \
             form only, not {form:?}"
        )));
    }
    if sandwich.is_some() && (norm || add) {
        return Err(GpuError::Runtime(
            "matvec: the sandwich norms fold in alone".into(),
        ));
    }
    let mut d = vec![
        "MATVEC".to_string(),
        format!("LANES={}", g.lanes),
        format!("NR={}", g.rows),
        format!("SEQ={seq}"),
    ];
    let act = match form {
        Form::Gated(a) | Form::Pair(a) => Some(a),
        Form::Plain => None,
    };
    // One lane per row: the shader shares x across the subgroup where the build has
    // subgroups and the type preloads x.
    if g.lanes == 1 {
        d.push("XSHARE".into());
    }
    d.extend(super::act_defines(act).iter().map(|s| s.to_string()));
    if let Form::Pair(_) = form {
        d.push("PAIR".into());
    }
    if norm {
        d.push("XNORM".into());
    }
    if add {
        d.push("ADDY".into());
    }
    if prep {
        d.push("PREP".into());
    }
    if let Some(n) = sandwich {
        d.push("SANDWICH".into());
        d.push(format!("XW4={n}"));
    }
    if runs {
        d.push("FLOAT_RUNS".into());
    }
    super::static_defines(&d)
}

/// The folds (norm, add, prep, sandwich) each form is built with: none, the norm or
/// the sandwich (validated at Gemma 3 270M's width, 160 vec4 words), and for the plain
/// form the add with and without the norm's inputs.
fn folds(form: Form) -> &'static [Folds] {
    match form {
        Form::Plain => &[
            (false, false, false, None),
            (true, false, false, None),
            (false, true, false, None),
            (false, true, true, None),
            (false, false, false, Some(160)),
        ],
        _ => &[
            (false, false, false, None),
            (true, false, false, None),
            (false, false, false, Some(160)),
        ],
    }
}

/// The table's geometry for `gpu` and weights of type `ty`, and whether the row sums may
/// use subgroup shuffles: only when the adapter has subgroups and a row's lanes fit its
/// smallest subgroup.
pub fn geometry(gpu: &Gpu, ty: GgmlType) -> (Geometry, bool) {
    let class = AdapterClass::of(&gpu.info);
    let mut g = tuning_override().unwrap_or(class_geometry(class, ty));
    if [SHARE_GEOMETRY, ONE_ROW_SHARE_GEOMETRY].contains(&g) && !broadcasts(gpu) {
        g = table_geometry(class);
    }
    (g, row_shuffles(gpu, g))
}

/// Whether `gpu` can share values across a subgroup by broadcast from 8 lanes (the
/// matvecs' `XSHARE`, decode attention's `QSHARE`): subgroups of at least 8 invocations.
pub(crate) fn broadcasts(gpu: &Gpu) -> bool {
    gpu.features.subgroups && gpu.info.subgroup_min_size >= 8
}

/// Whether a build of `g` may use subgroups: a row's lanes fit the smallest subgroup,
/// and with one lane per row (the `XSHARE` broadcasts) it holds at least 8.
fn row_shuffles(gpu: &Gpu, g: Geometry) -> bool {
    let min = gpu.info.subgroup_min_size;
    gpu.features.subgroups
        && min >= g.lanes
        && min.is_power_of_two()
        && (g.lanes > 1 || broadcasts(gpu))
}

/// Tuning aid: `HEARTH_MATVEC=WORKGROUP,LANES[,ROWS]` overrides the table when it names
/// a geometry the shader is built for.
#[cfg(not(target_arch = "wasm32"))]
fn tuning_override() -> Option<Geometry> {
    let v = std::env::var("HEARTH_MATVEC").ok()?;
    let mut n = v.split(',').map(|s| s.trim().parse::<u32>());
    let g = Geometry {
        workgroup: n.next()?.ok()?,
        lanes: n.next()?.ok()?,
        rows: n.next().unwrap_or(Ok(1)).ok()?,
    };
    let ok = defines_for(g, 1, Form::Plain, (false, false, false, None), false).is_ok()
        && g.lanes <= g.workgroup
        && g.workgroup.is_multiple_of(g.lanes);
    ok.then_some(g)
}

/// The browser has no environment to tune from.
#[cfg(target_arch = "wasm32")]
fn tuning_override() -> Option<Geometry> {
    None
}

/// The table's geometry of `class`; on a CPU rasterizer, `SHARE_GEOMETRY` for the types
/// that preload x and `ONE_ROW_SHARE_GEOMETRY` for floats and Q6_K (where the adapter
/// lacks subgroups of 8, `geometry` falls back to the table's).
pub fn class_geometry(class: AdapterClass, ty: GgmlType) -> Geometry {
    match class {
        AdapterClass::Cpu if one_row(ty) => ONE_ROW_SHARE_GEOMETRY,
        AdapterClass::Cpu if shares_x(ty) => SHARE_GEOMETRY,
        _ => table_geometry(class),
    }
}

/// The types the CPU class runs at `ONE_ROW_SHARE_GEOMETRY`: floats and Q6_K.
fn one_row(ty: GgmlType) -> bool {
    ty.is_float() || ty == GgmlType::Q6_K
}

/// `class`'s entry of the table.
fn table_geometry(class: AdapterClass) -> Geometry {
    TABLE
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, g)| *g)
        .unwrap_or(TABLE[TABLE.len() - 1].1)
}

/// Every matvec variant of `ty` the table can ask for, with and without subgroups.
pub(crate) fn variants(ty: GgmlType) -> Vec<crate::gpu::PipelineKey> {
    let mut v = Vec::new();
    let geos = TABLE.iter().map(|(c, _)| class_geometry(*c, ty));
    for (g, sg) in geos.flat_map(|g| [(g, false), (g, true)]) {
        for seq in if may_walk(g, ty) { &SEQ[..] } else { &SEQ[..1] } {
            for (form, fold) in FORMS.iter().flat_map(|f| folds(*f).iter().map(|x| (*f, x))) {
                for runs in [false, ty.is_float()] {
                    let Ok(d) = defines_for(g, *seq, form, *fold, runs) else {
                        continue;
                    };
                    let uniform = [false, true].map(|claim| {
                        // Claiming builds need subgroups.
                        let claim = claim && sg;
                        reads_x4(g, ty, runs).then(|| with_uniform_x(d, claim).ok())
                    });
                    for d in std::iter::once(d).chain(uniform.into_iter().flatten().flatten()) {
                        let key = super::weight_key("matvec", ty, sg, g.workgroup, d);
                        if !v.contains(&key) {
                            v.push(key);
                        }
                    }
                }
            }
        }
    }
    v
}

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        x_offset: u32,
        y_offset: u32,
        eps: f32,
        parts: u32,
    }
}

/// Whether float rows of `w` read from x at `x_offset` take the matvec's run form
/// (`FLOAT_RUNS`, shaders/lib/float_runs.wgsl): rows of whole runs of 32 elements, each
/// read as vec4 words against x on vec4 words preloaded once per run for the
/// invocation's rows. The generic form reads a row's x four scalars at a time for every
/// row, with a bounds check per group (rows may end inside one).
pub fn float_runs(w: &GpuTensor, x_offset: u32) -> bool {
    w.ty.is_float() && w.cols.is_multiple_of(32) && x_offset.is_multiple_of(4)
}

/// Whether a build of `g` for `ty` (float rows read by runs: `runs`) may read x through
/// a uniform window (`XUNIFORM`): one lane per row (the CPU class's forms, where every
/// lane of a subgroup reads the same x) and x on vec4 words.
fn reads_x4(g: Geometry, ty: GgmlType, runs: bool) -> bool {
    g.lanes == 1 && (!ty.is_float() || runs)
}

/// `defines` with x through a uniform window, and with `claim` the rows claimed at run
/// time (`CLAIM`, see `kernels::claim_launches`).
fn with_uniform_x(
    defines: &'static [&'static str],
    claim: bool,
) -> Result<&'static [&'static str], GpuError> {
    let mut d: Vec<String> = defines.iter().map(|s| s.to_string()).collect();
    d.push("XUNIFORM".into());
    if claim {
        d.push("CLAIM".into());
    }
    super::static_defines(&d)
}

/// `y[y.offset + r] = sum_k W[r, k] * x[x.offset + k]` for every row r of W.
pub struct MatVec {
    /// One dispatch per shard of W.
    pub dispatches: Vec<Dispatch>,
    /// With `Fold::prep`: the sums of squares it leaves in the prep's `ssq`, the
    /// `NormScale::parts` of the norm's readers.
    pub prep_parts: Option<u32>,
}

impl MatVec {
    /// Builds the dispatches with the adapter's geometry; `x` must hold `w.cols` values
    /// and `y` `w.rows`.
    pub fn new(gpu: &Gpu, w: &GpuTensor, x: View, y: View) -> Result<Self, GpuError> {
        Self::with_geometry(gpu, w, x, y, geometry(gpu, w.ty), None)
    }

    /// `new` or `gated` (with `act`) with `fold` folded in, on the adapter's geometry or
    /// `geo` (tests).
    pub fn folded(
        gpu: &Gpu,
        w: &GpuTensor,
        (x, y): (View, View),
        act: Option<Activation>,
        fold: Fold,
        geo: Option<(Geometry, bool)>,
    ) -> Result<Self, GpuError> {
        let geo = geo.unwrap_or_else(|| geometry(gpu, w.ty));
        let form = act.map_or(Form::Plain, Form::Gated);
        Self::build(gpu, w, x, y, geo, form, fold)
    }

    /// The up projection of a gated FFN with the activation as its epilogue: `y` holds
    /// the gate projection, and row r becomes `y[r] = act(y[r]) * (W x)[r]`.
    pub fn gated(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        gate: View,
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::with_geometry(gpu, w, x, gate, geometry(gpu, w.ty), Some(act))
    }

    /// A gated FFN's gate and up projections in one dispatch: `w` holds the gate's rows
    /// then the up's (a [`GpuTensor::joined`] pair, one shard), and row r of `y` becomes
    /// `act(gate x)[r] * (up x)[r]`. x is read once for both.
    pub fn gated_pair(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::pair_folded(gpu, w, (x, y), act, Fold::NONE, None)
    }

    /// `gated_pair` with x's norm folded in (`fold.norm`), on the adapter's geometry or
    /// `geo` (tests).
    pub fn pair_folded(
        gpu: &Gpu,
        w: &GpuTensor,
        (x, y): (View, View),
        act: Activation,
        fold: Fold,
        geo: Option<(Geometry, bool)>,
    ) -> Result<Self, GpuError> {
        let geo = geo.unwrap_or_else(|| geometry(gpu, w.ty));
        Self::build(gpu, w, x, y, geo, Form::Pair(act), fold)
    }

    /// `gated_pair` with a given geometry (for tests).
    pub fn pair_with_geometry(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        geo: (Geometry, bool),
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, x, y, geo, Form::Pair(act), Fold::NONE)
    }

    /// `new` (or `gated`, with `act`) with a given geometry (tests run every table
    /// entry); `shuffles` asks for the subgroup form, which needs `g.lanes` to divide the
    /// adapter's subgroups.
    pub fn with_geometry(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        geo: (Geometry, bool),
        act: Option<Activation>,
    ) -> Result<Self, GpuError> {
        let form = act.map_or(Form::Plain, Form::Gated);
        Self::build(gpu, w, x, y, geo, form, Fold::NONE)
    }

    /// The dispatches of every form; `fold` as `Fold` says.
    fn build(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        (g, shuffles): (Geometry, bool),
        form: Form,
        fold: Fold,
    ) -> Result<Self, GpuError> {
        let shuffles = shuffles && row_shuffles(gpu, g);
        if !g.lanes.is_power_of_two() || !g.workgroup.is_multiple_of(g.lanes) {
            return Err(GpuError::Runtime(format!(
                "matvec: {} lanes per row in workgroups of {}",
                g.lanes, g.workgroup
            )));
        }
        let pair = matches!(form, Form::Pair(_));
        if pair && (w.shards.len() != 1 || !w.rows.is_multiple_of(2)) {
            return Err(GpuError::Runtime(format!(
                "matvec {}: a gate/up pair must be one shard of an even number of rows",
                w.name
            )));
        }
        let out_rows = if pair { w.rows / 2 } else { w.rows };
        x.check("matvec input", w.cols)?;
        y.check("matvec output", out_rows)?;
        let (k, row_words) = (to_u32("k", w.cols)?, to_u32("row words", w.row_words)?);
        let xo = to_u32("x offset", x.offset)?;
        let yo = to_u32("y offset", y.offset)?;
        // Block types read x as vec4 words (their rows are whole blocks of 32 or more).
        if !w.ty.is_float() && !xo.is_multiple_of(4) {
            return Err(GpuError::Runtime(format!(
                "matvec {}: input offset {xo} is not a multiple of 4",
                w.name
            )));
        }
        let mut extra: Vec<(u32, &wgpu::Buffer, Option<u64>)> = Vec::new();
        let bad = |what: String| Err(GpuError::Runtime(format!("matvec {}: {what}", w.name)));
        if let Some(n) = fold.norm {
            if n.parts == 0
                || n.ssq.size() < n.parts as u64 * 4
                || !(0.0..f32::INFINITY).contains(&n.eps)
            {
                return bad(format!(
                    "a folded norm of {} sums ({} bytes) with epsilon {}",
                    n.parts,
                    n.ssq.size(),
                    n.eps
                ));
            }
            extra.push((SSQ, n.ssq, None));
        }
        // The add reads y back: a shard's rows are its own, so y must not also be x.
        if fold.add && y.buffer == x.buffer {
            return bad("the residual add cannot write the buffer it reads".into());
        }
        // The norm's inputs: a sum per workgroup (or claimed, below, one per subgroup).
        let mut prep_parts = None;
        if let Some(pr) = fold.prep {
            let parts = fold_parts(gpu, w, Some((g, shuffles)));
            let Some(parts) = parts.filter(|_| fold.add && fold.norm.is_none()) else {
                return bad("the norm's inputs come with the residual add, from whole \
                            workgroups of rows"
                    .into());
            };
            let rows = w.rows * 4;
            if pr.weights.size() < rows || pr.h.size() < rows || pr.ssq.size() < parts as u64 * 4 {
                return bad(format!(
                    "the norm's inputs need {} weights, as many values of h and {parts} sums",
                    w.rows
                ));
            }
            if pr.h == x.buffer || pr.h == y.buffer {
                return bad("the norm's h cannot be the product's input or output".into());
            }
            prep_parts = Some(parts);
            extra.extend([
                (PREP_WEIGHTS, pr.weights, None),
                (PREP_H, pr.h, None),
                (SSQ, pr.ssq, None),
            ]);
        }
        if let Some(sw) = fold.sandwich {
            if fold.norm.is_some() || fold.add || !sandwich_fits_in(gpu, w, g.workgroup) {
                return bad(format!(
                    "the sandwich norms fold in alone, over x of a multiple of 4 values \
                     that fits workgroup memory ({} values)",
                    w.cols
                ));
            }
            if !(0.0..f32::INFINITY).contains(&sw.eps) {
                return bad(format!("the sandwich norms' epsilon {}", sw.eps));
            }
            let bytes = w.cols * 4;
            let small = [sw.res_in, sw.res_out, sw.post, sw.norm]
                .iter()
                .any(|b| b.size() < bytes);
            if small || xo != 0 {
                return bad(format!(
                    "the sandwich norms need {} values in each buffer, o from its start",
                    w.cols
                ));
            }
            let outs = [y.buffer, sw.res_out];
            if sw.res_out == sw.res_in || [x.buffer, sw.res_in].iter().any(|b| outs.contains(b)) {
                return bad(
                    "the sandwich's new residual and the product need buffers of \
                            their own"
                        .into(),
                );
            }
        }
        let runs = float_runs(w, xo);
        // With the sandwich, its inputs are read through uniform bindings beside x's
        // window (the CPU class's forms): they must allow it.
        let uniform = wgpu::BufferUsages::UNIFORM;
        let sandwich_uniform = fold.sandwich.is_none_or(|sw| {
            [sw.res_in, sw.post, sw.norm]
                .iter()
                .all(|b| b.usage().contains(uniform))
        });
        let window = reads_x4(g, w.ty, runs)
            .then(|| super::uniform_window(gpu, x.buffer, xo, w.cols))
            .flatten()
            .filter(|_| sandwich_uniform);
        if let Some(sw) = fold.sandwich {
            // Uniform bindings hold exactly x's k values (the shader's XW4 vec4s).
            let n = window.map(|_| w.cols * 4);
            extra.extend([
                (PREP_WEIGHTS, sw.norm, n),
                (RES_IN, sw.res_in, n),
                (POST, sw.post, n),
                (RES_OUT, sw.res_out, None),
            ]);
        }
        // Items of `seq`-walking workgroups of rows.
        let items_of = |rows: u64, seq: u32| rows.div_ceil(workgroup_rows(g, seq)) as u32;
        // Where x has a window and the adapter subgroups, the rows are claimed at run
        // time, walked as a claimed build walks them (`row_runs`).
        let claimed_seq = walks_of(gpu, g, w, pair, true);
        let claim = window.is_some() && super::claims_on() && shuffles && {
            // Claimed, the norm's inputs are one sum per subgroup of each launched
            // workgroup (of one shard, in the prep's ssq; subgroups of one size).
            let sg = gpu.info.subgroup_min_size.max(1);
            let per_wg = g.workgroup.div_ceil(sg) as u64;
            let claim_parts = super::claim_launches(items_of(w.rows, claimed_seq)) as u64 * per_wg;
            let fits = fold.prep.is_none_or(|pr| {
                w.shards.len() == 1
                    && sg == gpu.info.subgroup_max_size
                    && claim_parts * 4 <= pr.ssq.size()
            });
            if fits {
                prep_parts = prep_parts.map(|_| claim_parts as u32);
            }
            fits
        };
        let seq = match claim {
            true => claimed_seq,
            false => walks_of(gpu, g, w, pair, false),
        };
        let mut defines = defines_for(
            g,
            seq,
            form,
            (
                fold.norm.is_some(),
                fold.add,
                fold.prep.is_some(),
                fold.sandwich.map(|_| (w.cols / 4) as u32),
            ),
            runs,
        )?;
        if window.is_some() {
            defines = with_uniform_x(defines, claim)?;
        }
        if claim {
            extra.push((super::CLAIMS_BINDING, &gpu.claims, None));
        }
        let items = |rows: u64| items_of(rows, seq);
        let kernel = WeightKernel {
            op: "matvec",
            subgroups: shuffles,
            workgroup: g.workgroup,
            defines,
            inputs: [x.buffer, y.buffer],
            x_range: window.map(|o| (o, super::X_WINDOW)),
            extra: &extra,
            step: None,
            cost: match (fold.add, fold.prep.is_some(), fold.sandwich.is_some()) {
                (true, true, _) => cost::<4>,
                (true, false, _) => cost::<2>,
                (_, _, true) => sandwich_cost,
                _ => cost::<1>,
            },
        };
        // One dispatch (the first shard's) writes the sandwich's residual.
        let mut first = true;
        let dispatches = weight_dispatches(gpu, &kernel, w, |start, rows| {
            // A pair's shard holds both projections; the rows out are half of it.
            let rows = if pair { rows / 2 } else { rows };
            let p = Params {
                rows: rows as u32,
                k,
                row_words,
                row_offset: start as u32,
                x_offset: super::windowed_offset(xo, window),
                y_offset: yo,
                eps: fold
                    .norm
                    .map(|n| n.eps)
                    .or(fold.sandwich.map(|s| s.eps))
                    .unwrap_or(0.0),
                parts: match fold.sandwich {
                    Some(s) => (s.write && std::mem::take(&mut first)) as u32,
                    None => fold.norm.map_or(0, |n| n.parts),
                },
            };
            let launches = match defines.contains(&"CLAIM") {
                true => super::claim_launches(items(rows)),
                false => items(rows),
            };
            let (gx, gy) = grid(gpu, launches);
            (p, (gx, gy, 1))
        })?;
        Ok(Self {
            dispatches,
            prep_parts,
        })
    }
}

/// Bytes and FLOPs of `rows` rows of `w`: the weights once, x's `cols` values once,
/// and `YS` times y's `rows` values (read back by the add; and the norm's weights and h
/// with its inputs).
fn cost<const YS: u32>(w: &GpuTensor, rows: f64) -> (Work, Work) {
    let io = (w.cols as f64 + YS as f64 * rows) * 4.0;
    (
        Work {
            c: weight_bytes(w, rows) + io,
            ..Work::default()
        },
        Work {
            c: 2.0 * rows * w.cols as f64,
            ..Work::default()
        },
    )
}

/// `cost::<1>` plus the sandwich's reads of the residual, o again and the two norms'
/// weights, and its write of the new residual (once per dispatch: its workgroups read
/// the same values from cache).
fn sandwich_cost(w: &GpuTensor, rows: f64) -> (Work, Work) {
    let (mut bytes, flops) = cost::<1>(w, rows);
    bytes.c += w.cols as f64 * 4.0 * 4.0;
    (bytes, flops)
}

/// CPU twin: `y[r] = sum_k w[r * cols + k] * x[k]` over dequantized weights, in f64.
pub fn cpu(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    w.chunks_exact(cols)
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

impl super::Op for MatVec {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_a_buildable_geometry() {
        for (class, g) in TABLE {
            assert!(
                g.lanes.is_power_of_two() && g.workgroup.is_multiple_of(g.lanes),
                "{class:?}"
            );
            assert!((64..=256).contains(&g.workgroup), "{class:?}");
            assert!(
                defines_for(g, 1, Form::Plain, (false, false, false, None), false).is_ok(),
                "{class:?}"
            );
        }
        for g in [SHARE_GEOMETRY, ONE_ROW_SHARE_GEOMETRY] {
            let share = defines_for(g, 1, Form::Plain, (false, false, false, None), false).unwrap();
            assert!(share.contains(&"XSHARE"));
        }
        for ty in GgmlType::ALL {
            let cpu = class_geometry(AdapterClass::Cpu, ty);
            assert_eq!(cpu.lanes == 1, shares_x(ty), "{ty}");
            assert_eq!(cpu == ONE_ROW_SHARE_GEOMETRY, one_row(ty), "{ty}");
        }
    }

    /// `shares_x` lists the types whose decoder preloads x (`XPRE`, which brings the
    /// shader's `load_xpart`); the two stay in step, so no type that could share x is
    /// left on the table's geometry and none without it takes the x-sharing one.
    #[test]
    fn shares_x_matches_the_decoders() {
        let mut composed = 0;
        for ty in GgmlType::ALL {
            // Float types preload x in their run form.
            let runs = ty.is_float();
            let g = class_geometry(AdapterClass::Cpu, ty);
            let defines =
                defines_for(g, 1, Form::Plain, (false, false, false, None), runs).unwrap();
            let key = super::super::weight_key("matvec", ty, true, 32, defines);
            let Ok(src) = crate::gpu::compose(&key) else {
                assert!(!shares_x(ty), "{ty} shares x but has no matvec decoder");
                continue;
            };
            composed += 1;
            assert_eq!(src.contains("fn load_xpart"), shares_x(ty), "{ty}");
        }
        assert!(composed >= 7, "{composed} matvec decoders");
    }
}
