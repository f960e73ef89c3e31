//! Matrix times a few token columns: the projections of a batched decode step, which
//! advances several sequences by one token each. Each weight group is read and decoded
//! once per step and multiplied into every sequence's column, so the step costs about one
//! sequence's weight traffic. Rows map onto lanes as in the matvec (its geometry table);
//! the tokens of a step are split into blocks of `COLS` columns per workgroup, and a
//! step of n tokens runs the smallest build that covers n. Shader: `matvec_batch.wgsl`.

use super::matmul::{per_step_cost, Params};
use super::matvec::{geometry, AdapterClass, Form, Geometry};
use super::X_WINDOW;
use super::{grid, uniform_window, weight_dispatches, Dispatch, Rows, Tokens, WeightKernel};
use crate::gpu::{Gpu, GpuError, GpuTensor};
use crate::model::Activation;
use crate::quant::GgmlType;

/// Rows per invocation (`BR` in the shader): each x value read serves this many rows.
const ROWS_PER_INVOCATION: u32 = 4;

/// Token columns per workgroup the shader is built for: 16 (`WIDE16`) only in the
/// x-sharing form, where each lane loads a second column's x and every weight word
/// decoded serves twice the columns. On lavapipe (`cargo bench --bench matvec`, 4096 x
/// 1024, 64 tokens, alternated) prefill ran F32 5.7 -> 7.5 GFLOP/s (medians), F16 9.4 ->
/// 11.1, BF16 9.5 -> 10.9, Q4_1 10.7 -> 12.3, Q5_0 10.0 -> 11.5, Q6_K 7.0 -> 8.0, Q4_K
/// within the noise, Q8_0 slower (it keeps 8 there: `widens`); lavapipe's code for the
/// 16-column step has 1.06x (Q4_K) to 1.53x (F32) fewer instructions per multiply-add
/// (`scripts/lavapipe-asm.py`).
pub const COLS: [u32; 3] = [4, 8, 16];

/// Whether `ty`'s x-sharing form takes 16 columns on this host: all types where the host
/// has AVX-512 (a CPU rasterizer runs on the host's own vector unit), all but Q8_0
/// elsewhere. On lavapipe on an AMD EPYC (Zen 3, AVX2, 16 vector registers; 2026-12-04)
/// Q8_0's 16-column step ran 4-5% slower (Gemma 3's 256 x 640 prefill projection
/// 108-110 ms against 101-105 in alternated `hearth profile` runs, `benches/matvec`
/// medians 14.0 against 14.6 GFLOP/s). On a 2-vCPU Xeon with AVX-512 (2026-12-05,
/// `cargo bench --bench matvec`, 16 sequences, 64-token prefill, two alternated rounds)
/// it ran faster at every shape: Gemma 3's head shard (131072 x 640) batched step 66.4
/// / 66.7 -> 59.2 / 60.7 ms, 2048 x 640 0.99 / 1.00 -> 0.87 / 0.90 ms and prefill 43.7 /
/// 43.6 -> 47.8 / 49.0 GFLOP/s, 4096 x 4096 prefill 44.3 / 46.1 -> 50.5 / 51.9, 256 x
/// 640 prefill 35.7 / 35.1 -> 36.3 / 40.4.
pub fn widens(ty: GgmlType) -> bool {
    ty != GgmlType::Q8_0 || avx512_host()
}

/// The register tile of the x-sharing form's builds: 16 columns (`widens`) or 8 past
/// eight tokens, and the 16-column builds of `tall` types at eight rows per invocation
/// (`eight_rows`) or four. The host's pick is `Tile::of`; the tests ask for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// 16 columns per workgroup past eight tokens.
    pub wide: bool,
    /// Eight rows per invocation in the 16-column builds of `tall` types.
    pub eight: bool,
}

impl Tile {
    /// This host's tile for `ty`.
    pub fn of(ty: GgmlType) -> Self {
        Self {
            wide: widens(ty),
            eight: eight_rows(ty),
        }
    }
}

/// Rows per invocation of the 16-column builds of the types that take eight (`tall`):
/// an 8-row x 16-column register tile (`BR8` in the shader).
const TALL_ROWS: u32 = 8;

/// Whether `ty`'s 16-column x-sharing builds may take eight rows per invocation (this
/// host's pick: `eight_rows`): each column's x, loaded and taken from its lane once,
/// then serves eight rows (its loads and shuffles halve per multiply-add) for twice the
/// accumulators, which lavapipe keeps on the stack either way. On lavapipe on an AMD
/// EPYC (`cargo bench --bench matvec`, 2048 x 768, 64 tokens, alternated twice,
/// 2026-12-05) prefill ran F32 11.1 / 17.0 -> 18.9 / 19.0
/// GFLOP/s, F16 21.3 / 22.7 -> 23.7 / 24.1, BF16 22.8 / 23.5 -> 24.3 / 24.5, Q4_0
/// 24.0 / 23.6 / 25.0 -> 28.5 / 28.1 / 28.7, Q4_1 24.4 / 25.7 -> 27.6 / 29.6, Q2_K
/// 22.8 / 24.1 -> 26.0 / 26.8, Q3_K 16.1 / 16.5 -> 17.5 / 17.6, Q4_K 15.1 / 15.8 /
/// 15.5 -> 17.7 / 17.3 / 16.1, Q5_K 15.5 / 14.9 -> 17.0 / 17.2, Q6_K 15.2 / 15.6 / 15.7
/// -> 16.7 / 16.2 / 16.8; the others ran slower with eight (Q5_0 22.8 / 22.1 / 22.0 ->
/// 20.9 / 21.0 / 21.4, Q5_1 -8%, IQ4_NL and IQ4_XS -14%, MXFP4 -6%: their decoders hold
/// more per row, such as the high-bit word), and so did the 8-column builds of batched
/// decode (Q5_0, Q8_0 and F16 by 10-30%), which keep four. Q8_0 joined on 2026-12-06
/// (its 16-column builds, on hosts with AVX-512 the only ones that take 16: `widens`),
/// once its step loaded a row's words two at a time (`LAZY_W2`): see `eight_rows`.
pub fn tall(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// Whether `ty`'s 16-column x-sharing builds take eight rows per invocation on this
/// host (`tall` types; a CPU rasterizer runs on the host's own vector unit): on hosts
/// with AVX-512 only F16 and Q2_K do. On lavapipe on a 2-vCPU Xeon with AVX-512
/// (2026-12-05; `cargo bench --bench matvec`, 4096 x 4096, 64 tokens, two alternated
/// rounds) four rows ran prefill at F32 23.4 / 23.2 GFLOP/s against 17.9 / 18.1 with
/// eight, BF16 39.9 / 40.6 against 36.7 / 37.1, Q4_0 53.5 / 53.3 against 40.3 / 40.8,
/// Q4_1 52.5 / 52.8 against 40.7 / 41.5, Q3_K 51.4 / 52.4 against 41.1 / 41.4, Q4_K
/// 52.5 / 52.9 against 44.5 / 44.8, Q5_K 49.6 / 50.0 against 36.6 / 36.7, Q6_K 47.2 /
/// 47.1 against 37.0 / 37.1, where F16 (42.6 / 42.6 against 45.3 / 45.4) and Q2_K
/// (55.0 / 56.2 against 59.5 / 60.5) ran slower; `hearth bench -p 512 -n 0` SmolLM2
/// (Q4_1) 184.1 / 185.0 tokens/s against 149.2 / 152.5, and `--parallel 16` decode
/// 113.0 / 104.6 against 95.6 / 99.9. On the AMD EPYC (Zen 3, AVX2) of 2026-12-05,
/// eight rows had run those types 7-20% faster (`tall`). Two hosts, so the line is
/// drawn at the one difference in their vector units this code can see. Q8_0 takes
/// eight there too (same Xeon, 2026-12-06, `HEARTH_BENCH_SEQS=16 HEARTH_BENCH_ROWS=65536
/// HEARTH_BENCH_COLS=640 cargo bench --bench matvec -- q8_0`, alternated: the 16-sequence
/// step 26.0 / 25.4 ms against 22.8 / 23.2 with eight, prefill 47.9 / 49.1 against 52.7
/// / 52.1 GFLOP/s); without AVX-512 it never takes 16 columns (`widens`).
pub fn eight_rows(ty: GgmlType) -> bool {
    tall(ty) && (!avx512_host() || matches!(ty, GgmlType::F16 | GgmlType::Q2_K | GgmlType::Q8_0))
}

/// Whether this host's CPU has AVX-512 (32 vector registers, where AVX2 has 16).
fn avx512_host() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows per invocation and invocations per workgroup of a build of `cols` columns of
/// `ty`, in the x-sharing form or not (`share`), on a geometry of `workgroup`
/// invocations. Eight rows take half the invocations, so a workgroup covers as many rows
/// as with four: lavapipe runs the lanes of a partial last workgroup in full (clamped to
/// the last row), and with 256 rows a workgroup SmolLM2's 576-row projections computed
/// 768 (its 576 x 1536 prefill projection 1.14 -> 1.27 s with 32 invocations of eight
/// rows, where the workgroup size alone moved nothing).
/// `eight` asks for eight rows (`eight_rows` on this host; the tests ask for both forms)
/// and is honoured for `tall` types only.
fn tile(ty: GgmlType, cols: u32, share: bool, workgroup: u32, eight: bool) -> (u32, u32) {
    let half = workgroup / 2;
    let wide = cols == COLS[COLS.len() - 1];
    if share && wide && eight && tall(ty) && half >= 8 && half.is_multiple_of(8) {
        (TALL_ROWS, half)
    } else {
        (ROWS_PER_INVOCATION, workgroup)
    }
}

/// The most columns per workgroup of a build without the x-sharing form.
const PLAIN_COLS: u32 = 8;

/// The geometry of the CPU class's x-sharing form (`XSHARE`): one row per lane (four per
/// invocation), 32 invocations per workgroup (the 16-column builds of `tall` types: eight
/// rows, 16 invocations; `tile`).
pub const SHARE_GEOMETRY: Geometry = Geometry {
    workgroup: 32,
    lanes: 1,
    rows: ROWS_PER_INVOCATION,
};

/// Whether a build of `geo` may take the x-sharing form: one lane per row and subgroup
/// broadcasts over subgroups of at least 8 invocations (the rows must also fit it:
/// `share_fits`).
fn shares_x(gpu: &Gpu, (g, shuffles): (Geometry, bool)) -> bool {
    shuffles && g.lanes == 1 && super::matvec::broadcasts(gpu)
}

/// Whether rows of `w` read from x at `x_offset` with `stride` fit the x-sharing form:
/// whole runs of 32 elements (eight 4-element groups a step) with x on vec4 words. Block
/// types always are (rows of whole blocks, checked x views); float rows must be.
fn share_fits(w: &GpuTensor, x_offset: u32, stride: u32) -> bool {
    !w.ty.is_float()
        || (w.cols.is_multiple_of(32) && x_offset.is_multiple_of(4) && stride.is_multiple_of(4))
}

/// The geometry of the batched matvec for `gpu` and weights of type `ty`. On a CPU
/// rasterizer (lavapipe: each invocation a SIMD lane, each load of x a per-lane gather)
/// with subgroups, weights take the x-sharing form: `benches/matvec` (2048 x 1024,
/// 8 sequences) ran the batched step 1.4-2.5x faster than the table's 8 lanes per row.
/// Elsewhere the matvec's table geometry.
pub fn batch_geometry(gpu: &Gpu, ty: GgmlType) -> (Geometry, bool) {
    let share = (SHARE_GEOMETRY, gpu.features.subgroups);
    if AdapterClass::of(&gpu.info) == AdapterClass::Cpu && shares_x(gpu, share) {
        return share;
    }
    geometry(gpu, ty)
}

/// Whether the batched matvec takes the x-sharing form for `w` on `gpu` (x rows packed).
/// There it also serves prefill: on lavapipe it runs prompt projections at 25-55
/// GFLOP/s (`benches/matvec`, 4096 x 4096, 64 tokens: Q6_K lowest, Q4_0 and Q8_0
/// highest) where the tiled matmul made 11-14 (2048 x 1024), because each invocation's
/// loads and registers, not its arithmetic, bound both.
pub fn shares_x_on(gpu: &Gpu, w: &GpuTensor) -> bool {
    shares_x(gpu, batch_geometry(gpu, w.ty)) && share_fits(w, 0, w.cols as u32)
}

/// The shader defines of lanes per row, columns per workgroup (`WIDE`: 8 or more;
/// `WIDE16`: 16, the x-sharing form only), rows per invocation (`BR8`: eight, 16-column
/// builds only), the x-sharing form (with x through a uniform window: `XUNIFORM`) and
/// gated activation (kept for the process: `static_defines`).
fn defines_for(
    lanes: u32,
    cols: u32,
    rows: u32,
    share: bool,
    uniform_x: bool,
    form: Form,
    claim: bool,
) -> Result<&'static [&'static str], GpuError> {
    let mut d = vec![format!("LANES={lanes}"), format!("COLS={cols}")];
    if cols >= 8 {
        d.push("WIDE".into());
    }
    if cols == 16 {
        if !share {
            return Err(GpuError::Runtime(
                "matvec_batch: 16 columns need the x-sharing form".into(),
            ));
        }
        d.push("WIDE16".into());
    }
    if rows == TALL_ROWS {
        if cols != 16 {
            return Err(GpuError::Runtime(
                "matvec_batch: eight rows per invocation need 16 columns".into(),
            ));
        }
        d.push("BR8".into());
    } else if rows != ROWS_PER_INVOCATION {
        return Err(GpuError::Runtime(format!(
            "matvec_batch: {rows} rows per invocation"
        )));
    }
    if share {
        // LAZY_FORM: decoders that load each group's words where it is used
        // (`lib/lazy.wgsl`) do.
        d.push("XSHARE".into());
        d.push("LAZY_FORM".into());
        if uniform_x {
            d.push("XUNIFORM".into());
            if claim {
                d.push("CLAIM".into());
            }
        }
    } else if uniform_x {
        return Err(GpuError::Runtime(
            "matvec_batch: x through a uniform window needs the x-sharing form".into(),
        ));
    }
    let act = match form {
        Form::Plain => None,
        Form::Gated(a) | Form::Pair(a) => Some(a),
    };
    d.extend(super::act_defines(act).iter().map(|s| s.to_string()));
    if let Form::Pair(_) = form {
        if rows != ROWS_PER_INVOCATION {
            return Err(GpuError::Runtime(
                "matvec_batch: a gate/up pair takes four rows per invocation".into(),
            ));
        }
        d.push("PAIR".into());
    }
    super::static_defines(&d)
}

/// Every variant of `ty` the matvec table can ask for: each geometry's lanes and
/// workgroup, each column block, plain, gated and gate/up pairs, with and without
/// subgroups.
pub(crate) fn variants(ty: GgmlType) -> Vec<crate::gpu::PipelineKey> {
    let mut v = Vec::new();
    let all = [
        Activation::Silu,
        Activation::GeluTanh,
        Activation::SwigluOai,
    ];
    let acts: Vec<Form> = [Form::Plain]
        .into_iter()
        .chain(all.map(Form::Gated))
        .chain(all.map(Form::Pair))
        .collect();
    let geos = super::matvec::TABLE
        .iter()
        .map(|(class, _)| (super::matvec::class_geometry(*class, ty), false))
        .chain([(SHARE_GEOMETRY, true)]);
    for (g, share) in geos {
        for sg in [false, true] {
            for cols in COLS {
                for (act, uniform_x) in acts.iter().flat_map(|&a| [(a, false), (a, true)]) {
                    let share = share && sg;
                    for eight in [false, true] {
                        let eight = eight && !matches!(act, Form::Pair(_));
                        let (rows, wg) = tile(ty, cols, share, g.workgroup, eight);
                        for claim in [false, true] {
                            let Ok(d) =
                                defines_for(g.lanes, cols, rows, share, uniform_x, act, claim)
                            else {
                                continue;
                            };
                            let key = super::weight_key("matvec_batch", ty, sg, wg, d);
                            if !v.contains(&key) {
                                v.push(key);
                            }
                        }
                    }
                }
            }
        }
    }
    v
}

/// `Y[t, r] = sum_k W[r, k] * X[t, k]` for the step's tokens (up to `tok.max`), or with
/// an activation `Y[t, r] = act(Y[t, r]) * (W X)[t, r]` (a gated FFN's up projection),
/// or for a gate/up pair (`pair`) `Y[t, r] = act((G X)[t, r]) * (U X)[t, r]`.
pub struct MatVecBatch {
    /// By the most tokens each covers (ascending).
    builds: Vec<Build>,
}

/// One build of the batched matvec: the dispatches of a step of up to `covers` tokens.
struct Build {
    covers: u32,
    /// One per shard of W, or with per-block uniform windows one per shard and column
    /// block, block by block.
    dispatches: Vec<Dispatch>,
    /// With per-block windows: columns per block and dispatches per block (a step of n
    /// tokens records only the blocks holding them).
    per_block: Option<(u32, usize)>,
    /// Columns per block (of its last block, in a build with a narrower tail).
    cols: u32,
    /// Whether x comes through uniform windows (one, or one per block).
    windowed: bool,
}

impl Build {
    /// The dispatches of a step of `n` tokens (at most `covers`).
    fn for_n(&self, n: u32) -> &[Dispatch] {
        match self.per_block {
            Some((cols, per)) => {
                let end = (n.div_ceil(cols).max(1) as usize * per).min(self.dispatches.len());
                &self.dispatches[..end]
            }
            None => &self.dispatches,
        }
    }
}

/// Whole 16-column blocks up to which a step of a few tokens more takes a narrower
/// last block (the tail builds of `MatVecBatch::build`): the batched steps of a server
/// with up to 64 sequences (decode tokens of every sequence plus a short prompt's rows).
const TAIL_BLOCKS: u32 = 4;

/// Column blocks up to which the x-sharing form has a build for every count (past it,
/// powers of two): a prompt chunk of up to 512 tokens launches only the blocks it needs.
/// On lavapipe a launched block costs about a full one: Gemma 3's prompt of 300 tokens
/// (`hearth profile MODEL -p 300 -n 0`, 2026-12-05) took 6.0 s with the 512-token build
/// against 3.2 s for 256 tokens and 7.0 s for 512.
const EXACT_BLOCKS: u32 = 32;

/// The fewest rows of a matrix whose prompt steps take per-block windows: each block is
/// a dispatch, and a matrix of a few workgroups per block pays more in launches than
/// the window saves (Gemma 3's 256 x 640 Q5_0 projection 238 -> 261 ms per prompt of
/// 512 tokens, its 640-row ones 25-42% faster).
const WINDOW_MIN_ROWS: u64 = 512;

/// Whether `w` takes per-block windows (`block_windows`) where the step's x fits no one
/// window: matrices of `WINDOW_MIN_ROWS` rows or more of the types measured faster so.
/// The K-quants read x at four runs per step of their loop (`LAZY_QUAD`), and gain the
/// most: Gemma 3's prompt of 512 tokens on lavapipe (`hearth profile MODEL -p 512 -n
/// 0`, 2026-12-05) ran its Q4_K 640 x 1024 projection 716 -> 414 ms, its 640 x 2048 Q4_K
/// and Q6_K ones (8-column blocks) 665 -> 494 and 715 -> 525; Q5_0 2048 x 640 1277 ->
/// 1162, 1024 x 640 640 -> 601. Not Q8_0 (Gemma 3's 256 x 640 50 -> 84 ms) nor Q4_1
/// (SmolLM2's 1536 x 576 no faster, 576 x 576 833 -> 1020 ms, 576 x 1536 in 8-column
/// blocks 1080 -> 1560); the other types were not measured and keep storage x. Builds
/// of at most `DECODE_WINDOW_TOKENS` tokens (batched decode steps) take them for every
/// type: SmolLM2's 576 x 1536 Q4_1 projection in a step of 16 sequences ran 1,492 us
/// from storage against 470 us for 8 sequences through a window (`hearth profile
/// SmolLM2-135M-Instruct.Q4_1.gguf -p 4 -n 4 --parallel 16` and `8`, 2026-12-06).
fn windows_pay(w: &GpuTensor, tokens: u32) -> bool {
    use GgmlType::*;
    w.rows >= WINDOW_MIN_ROWS
        && (tokens <= DECODE_WINDOW_TOKENS
            || matches!(w.ty, Q5_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K))
}

/// Tokens up to which a build takes per-block windows whatever its type (`windows_pay`):
/// a batched decode step of up to 16 sequences and 16 prompt rows.
const DECODE_WINDOW_TOKENS: u32 = 32;

/// The uniform windows of the column blocks of x that hold `tokens` tokens (from x's
/// element `x_offset`, one per block of `cols` tokens), where the step's x fits no one
/// window: each block's x then comes through its own window (`XUNIFORM`), with a
/// dispatch per block. Blocks of `cols` that fit none take blocks of `PLAIN_COLS` (a
/// 2048-wide input: 8 tokens are one window). None where even those do not fit (or the
/// buffer is not `UNIFORM`). Measured on lavapipe (`hearth profile MODEL -p 16` and
/// batched decode, where the step's x fits one window, alternated with storage x,
/// 2026-12-05): Q4_K 640 x 1024
/// 16 columns 25.7-28.6 GFLOP/s through a window against 13.6-14.0 from storage, 8
/// columns Q4_K 21.5-24.1 against 11.5-12.9, Q6_K 19.4-19.8 against 11.2-11.4, Q5_0
/// 18.0-19.4 against 15.0-16.4, Q8_0 the same.
fn block_windows(
    gpu: &Gpu,
    w: &GpuTensor,
    x: Rows,
    x_offset: u32,
    cols: u32,
    tokens: u32,
) -> Option<(u32, Vec<u64>)> {
    [cols, PLAIN_COLS]
        .into_iter()
        .filter(|&c| c <= cols && c >= PLAIN_COLS)
        .find_map(|c| {
            let span = (c as u64 - 1) * x.stride as u64 + w.cols;
            (0..tokens.div_ceil(c))
                .map(|b| {
                    let first = x_offset as u64 + (b * c) as u64 * x.stride as u64;
                    let first = u32::try_from(first).ok()?;
                    uniform_window(gpu, x.view.buffer, first, span)
                })
                .collect::<Option<Vec<u64>>>()
                .map(|starts| (c, starts))
        })
}

impl MatVecBatch {
    /// Builds for up to `tok.max` tokens per step with the adapter's geometry. Each token
    /// of `x` holds `w.cols` values, of `y` `w.rows`.
    pub fn new(
        gpu: &Gpu,
        w: &GpuTensor,
        x: Rows,
        y: Rows,
        tok: Tokens,
        act: Option<Activation>,
    ) -> Result<Self, GpuError> {
        Self::with_geometry(gpu, w, x, y, tok, act, batch_geometry(gpu, w.ty))
    }

    /// `new` with a given geometry (tests run every table entry); one lane per row with
    /// subgroups of at least 8 takes the x-sharing form for block types.
    pub fn with_geometry(
        gpu: &Gpu,
        w: &GpuTensor,
        x: Rows,
        y: Rows,
        tok: Tokens,
        act: Option<Activation>,
        geo: (Geometry, bool),
    ) -> Result<Self, GpuError> {
        Self::with_tile(gpu, w, x, y, tok, act, geo, Tile::of(w.ty))
    }

    /// `with_geometry` with the x-sharing form's `tile`, whatever this host would pick:
    /// the tests run every form on every host.
    #[allow(clippy::too_many_arguments)]
    pub fn with_tile(
        gpu: &Gpu,
        w: &GpuTensor,
        x: Rows,
        y: Rows,
        tok: Tokens,
        act: Option<Activation>,
        geo: (Geometry, bool),
        tile: Tile,
    ) -> Result<Self, GpuError> {
        let form = act.map_or(Form::Plain, Form::Gated);
        Self::build(gpu, w, (x, y), tok, form, geo, tile)
    }

    /// A gated FFN's gate and up in one dispatch: `w` holds the gate's rows, then the
    /// up's (a joined pair, one shard), and `y` gets `act(gate x) * (up x)` (`w.rows / 2`
    /// values per token). Four rows per invocation (two of each).
    pub fn pair(
        gpu: &Gpu,
        w: &GpuTensor,
        (x, y): (Rows, Rows),
        tok: Tokens,
        act: Activation,
    ) -> Result<Self, GpuError> {
        let geo = batch_geometry(gpu, w.ty);
        Self::pair_with_tile(gpu, w, (x, y), tok, act, geo, Tile::of(w.ty))
    }

    /// `pair` with a given geometry and tile (tests).
    pub fn pair_with_tile(
        gpu: &Gpu,
        w: &GpuTensor,
        io: (Rows, Rows),
        tok: Tokens,
        act: Activation,
        geo: (Geometry, bool),
        tile: Tile,
    ) -> Result<Self, GpuError> {
        if w.shards.len() != 1 || !w.rows.is_multiple_of(2) {
            return Err(GpuError::Runtime(format!(
                "matvec_batch {}: a gate/up pair must be one shard of an even number of rows",
                w.name
            )));
        }
        Self::build(gpu, w, io, tok, Form::Pair(act), geo, tile)
    }

    fn build(
        gpu: &Gpu,
        w: &GpuTensor,
        (x, y): (Rows, Rows),
        tok: Tokens,
        form: Form,
        (g, shuffles): (Geometry, bool),
        Tile { wide, eight }: Tile,
    ) -> Result<Self, GpuError> {
        let pair = matches!(form, Form::Pair(_));
        // A pair's rows out: half the weights' (its gate rows).
        let out_rows = if pair { w.rows / 2 } else { w.rows };
        let eight = eight && !pair;
        if tok.max == 0 || !g.lanes.is_power_of_two() || !g.workgroup.is_multiple_of(g.lanes) {
            return Err(GpuError::Runtime(format!(
                "matvec_batch {}: {} tokens, {} lanes per row in workgroups of {}",
                w.name, tok.max, g.lanes, g.workgroup
            )));
        }
        let p0 = Params::over("matvec_batch", w, x, (y, out_rows), tok)?;
        // Block types read x as vec4 words (their rows are whole blocks of 32 or more).
        if !w.ty.is_float() && (!p0.x_offset.is_multiple_of(4) || !x.stride.is_multiple_of(4)) {
            return Err(GpuError::Runtime(format!(
                "matvec_batch {}: input offset {} and stride {} must be multiples of 4",
                w.name, p0.x_offset, x.stride
            )));
        }
        let share = shares_x(gpu, (g, shuffles)) && share_fits(w, p0.x_offset, x.stride);
        let widest = if share && wide {
            COLS[COLS.len() - 1]
        } else {
            PLAIN_COLS
        };
        if tok.max.div_ceil(widest) > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::Runtime(format!(
                "matvec_batch {}: {} tokens exceed the dispatch limit",
                w.name, tok.max
            )));
        }
        // Builds by the tokens they cover: 4 columns in one block, 8 (with the x-sharing
        // form, before 16), then blocks of the widest, a step running the smallest build
        // that covers it. On a GPU the blocks go in powers of two up to the most tokens:
        // a step launches at most twice the column blocks it needs, the others returning
        // at once. A CPU rasterizer (the x-sharing form) runs a launched workgroup's code
        // whatever it holds (lavapipe masks the lanes of an early return and runs on), so
        // there every count up to `EXACT_BLOCKS` has its build; where the blocks take
        // per-block windows, one build serves every count (below).
        let mut shapes = vec![(COLS[0], 1)];
        if widest > PLAIN_COLS && tok.max > COLS[0] {
            shapes.push((PLAIN_COLS, 1));
        }
        let mut blocks = 1;
        while shapes.last().is_some_and(|&(c, b)| c * b < tok.max) {
            shapes.push((widest, blocks));
            blocks = match share && blocks < EXACT_BLOCKS {
                true => blocks + 1,
                false => blocks * 2,
            };
        }
        // One set of dispatches (one per shard) over `z` blocks of `cols` columns from
        // token `t_first`, x through `window` where given; with `own`, each dispatch's
        // work is that of its blocks' tokens only.
        let set_of = |cols: u32, t_first: u32, window: Option<u64>, z: u32, own: bool| {
            let (rows, workgroup) = tile(w.ty, cols, share, g.workgroup, eight);
            // Output rows per workgroup (a pair's tile holds two gate and two up rows).
            let rows_per_wg = (workgroup / g.lanes * rows / (1 + pair as u32)) as u64;
            // The x-sharing form through a window claims its work (`CLAIM`).
            let claim = share && window.is_some() && super::claims_on();
            let claims = [(super::CLAIMS_BINDING, &gpu.claims, None)];
            let kernel = WeightKernel {
                op: "matvec_batch",
                subgroups: shuffles,
                workgroup,
                defines: defines_for(g.lanes, cols, rows, share, window.is_some(), form, claim)?,
                inputs: [x.view.buffer, y.view.buffer],
                x_range: window.map(|o| (o, X_WINDOW)),
                extra: if claim { &claims } else { &[] },
                step: Some(tok.step),
                cost: per_step_cost,
            };
            let set = weight_dispatches(gpu, &kernel, w, |start, rows| {
                // A pair is one shard, its rows out half of it.
                let rows = if pair { rows / 2 } else { rows };
                let groups = rows.div_ceil(rows_per_wg) as u32;
                let mut p = p0.shard(start, rows);
                p.t_first = t_first;
                p.x_offset = super::windowed_offset(p.x_offset + t_first * x.stride, window);
                if claim {
                    // The launches claim every block's rows (items); z is 1.
                    p.blocks = z;
                    let (gx, gy) = grid(gpu, super::claim_launches(groups.saturating_mul(z)));
                    return (p, (gx, gy, 1));
                }
                let (gx, gy) = grid(gpu, groups);
                (p, (gx, gy, z))
            })?;
            Ok::<_, GpuError>(
                set.into_iter()
                    .map(|d| {
                        if own {
                            d.for_tokens(t_first, cols * z)
                        } else {
                            d
                        }
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let mut builds: Vec<Build> = Vec::new();
        for (cols, blocks) in shapes {
            let covers = cols * blocks;
            let covered = covers.min(tok.max);
            // x of the covered tokens through a uniform window, where it fits; else, in
            // the x-sharing form, a window per column block (`block_windows`).
            let span = (covered.max(1) as u64 - 1) * x.stride as u64 + w.cols;
            let window = share
                .then(|| uniform_window(gpu, x.view.buffer, p0.x_offset, span))
                .flatten();
            // Per-block windows, where they pay, for every token: a step records the
            // blocks that hold its tokens, so this build serves every larger step.
            let per_block = match (share, window) {
                (true, None) if windows_pay(w, tok.max) => {
                    block_windows(gpu, w, x, p0.x_offset, cols, tok.max)
                }
                _ => None,
            };
            let covers = match per_block {
                Some(_) => covers.max(tok.max),
                None => covers,
            };
            let (cols, blocks) = per_block
                .as_ref()
                .map_or((cols, blocks), |b| (b.0, b.1.len() as u32));
            // One set over every column block, or with per-block windows one set per
            // block, each of one block from `t_first`.
            let mut dispatches = Vec::new();
            match &per_block {
                Some((_, starts)) => {
                    for (b, &o) in starts.iter().enumerate() {
                        dispatches.extend(set_of(cols, b as u32 * cols, Some(o), 1, true)?);
                    }
                }
                None => dispatches = set_of(cols, 0, window, blocks, false)?,
            }
            let last = per_block.is_some();
            builds.push(Build {
                covers,
                dispatches,
                per_block: per_block.map(|_| (cols, w.shards.len())),
                cols,
                windowed: last || window.is_some(),
            });
            if last {
                break;
            }
        }
        // Steps a few tokens past whole 16-column blocks: those blocks, then one block of
        // 4 or 8 columns, where the build covering them would launch a whole 16-column
        // block more (a CPU rasterizer runs every launched column). A batched decode step
        // of a server's 16 sequences with a short prompt's rows (20-24 tokens) ran two
        // blocks of 16 before.
        if share && widest == COLS[COLS.len() - 1] {
            let mut tails = Vec::new();
            for b in 1..=TAIL_BLOCKS {
                let full = widest * b;
                if full >= tok.max {
                    break;
                }
                let Some(base) = builds.iter().find(|x| x.covers >= full) else {
                    break;
                };
                if base.cols != widest {
                    break;
                }
                let base_d: Vec<Dispatch> = match base.per_block {
                    Some(_) => base.for_n(full).to_vec(),
                    None => base
                        .for_n(full)
                        .iter()
                        .map(|d| d.clone().for_tokens(0, full))
                        .collect(),
                };
                for tail in [COLS[0], PLAIN_COLS] {
                    let span = (tail as u64 - 1) * x.stride as u64 + w.cols;
                    let first = p0.x_offset as u64 + full as u64 * x.stride as u64;
                    let window = u32::try_from(first)
                        .ok()
                        .filter(|_| base.windowed)
                        .and_then(|f| uniform_window(gpu, x.view.buffer, f, span));
                    let mut dispatches = base_d.clone();
                    dispatches.extend(set_of(tail, full, window, 1, true)?);
                    tails.push(Build {
                        covers: (full + tail).min(tok.max),
                        dispatches,
                        per_block: None,
                        cols: tail,
                        windowed: window.is_some(),
                    });
                    if full + tail >= tok.max {
                        break;
                    }
                }
            }
            builds.extend(tails);
            // By cover, a tail before a build of whole blocks that covers as many.
            builds.sort_by_key(|b| (b.covers, b.cols == widest));
        }
        Ok(Self { builds })
    }

    /// The dispatches of a step of `n` tokens: the smallest build covering them.
    pub fn for_tokens(&self, n: u32) -> &[Dispatch] {
        let pick = self
            .builds
            .iter()
            .find(|b| b.covers >= n)
            .or(self.builds.last());
        pick.map_or(&[], |b| b.for_n(n))
    }
}

impl super::Op for MatVecBatch {
    fn dispatches(&self) -> &[Dispatch] {
        self.builds.last().map_or(&[], |b| &b.dispatches)
    }

    fn dispatches_for(&self, n_tokens: u32, _kv_len: u32) -> &[Dispatch] {
        self.for_tokens(n_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight rows per invocation stay among the `tall` types, all of them where the host
    /// has no AVX-512, and F16, Q2_K and Q8_0 everywhere; `tile` gives them only to 16-column
    /// x-sharing builds, on half the invocations.
    #[test]
    fn eight_rows_per_host() {
        for ty in GgmlType::ALL {
            // 16 columns for every type but Q8_0, and for Q8_0 too where the host has
            // AVX-512.
            assert_eq!(widens(ty), ty != GgmlType::Q8_0 || avx512_host(), "{ty}");
            assert_eq!(
                Tile::of(ty),
                Tile {
                    wide: widens(ty),
                    eight: eight_rows(ty)
                }
            );
            assert!(!eight_rows(ty) || tall(ty), "{ty}");
            if !avx512_host() || matches!(ty, GgmlType::F16 | GgmlType::Q2_K | GgmlType::Q8_0) {
                assert_eq!(eight_rows(ty), tall(ty), "{ty}");
            }
            assert_eq!(
                tile(ty, 16, true, 32, true).0 == TALL_ROWS,
                tall(ty),
                "{ty}"
            );
            assert_eq!(
                tile(ty, 16, true, 32, false),
                (ROWS_PER_INVOCATION, 32),
                "{ty}"
            );
            assert_eq!(
                tile(ty, 8, true, 32, true),
                (ROWS_PER_INVOCATION, 32),
                "{ty}"
            );
            assert_eq!(
                tile(ty, 16, false, 32, true),
                (ROWS_PER_INVOCATION, 32),
                "{ty}"
            );
        }
        assert_eq!(tile(GgmlType::Q4_K, 16, true, 32, true), (TALL_ROWS, 16));
    }
}
