//! Every weight kernel (matvec, matmul, get_rows) against its CPU twin on random blocks of
//! every GPU block type, with and without optional features, with forced sharding, over
//! awkward shapes: 1 row, 1 column, sizes that are not multiples of the workgroup or tile.

mod common;

use common::{
    assert_close, gpu, gpu_types, output, random_vec, read, storage, storage_u32, Config,
    SMALL_BINDING,
};
use hearth::gpu::{gpu_layout, Gpu, GpuTensor};
use hearth::kernels::matvec::{self, Geometry, TABLE};
use hearth::kernels::matvec_batch::Tile;
use hearth::kernels::{self, GetRows, MatMul, MatVec, Rows, Step, StepBuffer, Tokens, View};
use hearth::model::Activation;
use hearth::quant::{dequantize_to_vec, random_blocks, GgmlType};

/// NMSE bound per type: weights decode exactly (f16 scales widen to f32 losslessly), so
/// the only error is f32 accumulation order against the f64 CPU sum.
fn bound(_ty: GgmlType) -> f64 {
    1e-7
}

/// Shapes (rows, cols) for a type: cols must be whole blocks.
fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    let qk = ty.block_elems();
    let mut s = vec![(1, qk), (7, 3 * qk), (65, 2 * qk), (131, qk)];
    if ty.is_float() {
        // and rows of whole runs of 32 (the batched matvec's x-sharing form).
        s.extend([(1, 1), (5, 1), (3, 7), (67, 130), (9, 64), (70, 160)]);
    }
    s
}

struct Case {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    raw: Vec<u8>,
    w: Vec<f32>,
}

fn case(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Case {
    let blocks = rows * cols / ty.block_elems();
    let raw = random_blocks(ty, blocks, seed);
    let w = dequantize_to_vec(ty, &raw).unwrap();
    Case {
        ty,
        rows,
        cols,
        raw,
        w,
    }
}

/// With subgroups, x comes from a buffer that may be bound as uniform (as the model's
/// activations), so the CPU class's one-lane-per-row form reads it through a uniform
/// window (`XUNIFORM`); without, from a plain storage buffer.
fn check_matvec(cfg: Config, c: &Case, seed: u64) {
    check_matvec_geometry(cfg, c, seed, None, None, cfg == Config::Full);
}

/// The matvec of `c` with the adapter's geometry, or with `geometry` (and whether its
/// lanes sum with subgroup shuffles); with `act`, the gated form (y holds a gate vector
/// and becomes `act(gate) * W x`). With `uniform`, x's buffer may be bound as uniform
/// and holds a whole window past x (`kernels::X_WINDOW`): a one-lane-per-row geometry
/// whose x is on vec4 words must then read x through it.
fn check_matvec_geometry(
    cfg: Config,
    c: &Case,
    seed: u64,
    geometry: Option<(Geometry, bool)>,
    act: Option<Activation>,
    uniform: bool,
) {
    let g = gpu(cfg);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    // Offsets in x and y check that kernels honour them. Block types read x as vec4
    // words from a multiple of 4 (any other offset is refused); floats from any: rows of
    // whole runs of 32 from 4 (the run form), others from 3 (the generic form). A
    // uniform window starts at a multiple of the adapter's offset alignment (256 bytes
    // is usual): x further in starts inside it.
    let lead = if uniform { X_LEAD } else { 0 };
    let xo = lead
        + if c.ty.is_float() && !c.cols.is_multiple_of(32) {
            3
        } else {
            4
        };
    let x = random_vec(c.cols + xo, seed);
    let xb = match uniform {
        false => storage(&g, &x),
        true => uniform_input(&g, &x),
    };
    if !c.ty.is_float() {
        let odd = View {
            buffer: &xb,
            offset: 3,
        };
        let out = output(&g, c.rows);
        let err = MatVec::new(&g, &t, odd, View::of(&out))
            .err()
            .expect("offset 3 refused");
        assert!(err.to_string().contains("not a multiple of 4"), "{err}");
    }
    let gate = random_vec(c.rows + 2, seed + 1);
    let yb = match act {
        Some(_) => storage(&g, &gate),
        None => output(&g, c.rows + 2),
    };
    let xv = View {
        buffer: &xb,
        offset: xo as u64,
    };
    let yv = View {
        buffer: &yb,
        offset: 2,
    };
    let op = match geometry {
        None => MatVec::new(&g, &t, xv, yv),
        Some(geo) => MatVec::with_geometry(&g, &t, xv, yv, geo, act),
    }
    .unwrap();
    assert_eq!(
        matvec::float_runs(&t, xo as u32),
        c.ty.is_float() && xo % 4 == 0,
        "{}",
        c.ty
    );
    let geo = geometry.unwrap_or_else(|| matvec::geometry(&g, c.ty)).0;
    let x4 = !c.ty.is_float() || matvec::float_runs(&t, xo as u32);
    assert_eq!(
        op.dispatches.iter().all(|d| d.kind.contains("xuniform")),
        uniform && geo.lanes == 1 && x4,
        "{} {geo:?}: x through a uniform window",
        c.ty
    );
    // The CPU class's builds with subgroups claim their rows at run time (`CLAIM`) from
    // counters each dispatch resets when it ends: without the gate (which y's update
    // reads back), the op runs three times in one pass, each time from zeroed counters.
    let claims = op.dispatches.iter().all(|d| d.kind.contains("claim"));
    assert_eq!(
        claims,
        claims_on()
            && op.dispatches[0].kind.contains("xuniform")
            && op.dispatches[0].kind.contains("_sg_"),
        "{} {geo:?}: rows claimed at run time",
        c.ty
    );
    let times = if act.is_none() { 3 } else { 1 };
    let all: Vec<_> = (0..times).flat_map(|_| op.dispatches.iter()).collect();
    kernels::run(&g, &all);
    let got = read(&g, &yb, c.rows + 2);
    let mut want = kernels::matvec::cpu(&c.w, c.cols, &x[xo..]);
    if let Some(a) = act {
        want = kernels::gated_act::cpu(&gate[2..], &want, a);
    }
    let name = format!(
        "matvec {} {}x{} {cfg:?} {geometry:?} {act:?} ({} shards)",
        c.ty,
        c.rows,
        c.cols,
        t.shards.len()
    );
    assert_close(&name, &got[2..], &want, bound(c.ty));
}

/// `data` in a buffer that may also be bound as uniform, followed by a whole uniform
/// window (`kernels::X_WINDOW`), as the model's activations are sized.
fn uniform_input(g: &Gpu, data: &[f32]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    let mut padded = data.to_vec();
    padded.resize(data.len() + kernels::X_WINDOW as usize / 4, 0.5);
    g.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test input (uniform)"),
            contents: bytemuck::cast_slice(&padded),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC,
        })
}

/// One token's `width` values every `stride` elements of `b`.
fn strided(b: &wgpu::Buffer, width: usize, stride: usize) -> Rows<'_> {
    Rows {
        view: View::of(b),
        width: width as u32,
        rows: 1,
        stride: stride as u32,
    }
}

fn check_matmul(cfg: Config, c: &Case, tokens: usize, seed: u64) {
    let g = gpu(cfg);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let (xs, ys) = (c.cols + 1, c.rows + 3); // strides wider than a row
                                             // Built for more tokens than the step runs: rows past the step must stay untouched.
    let built = tokens + 3;
    let x = random_vec(built * xs, seed);
    let xb = storage(&g, &x);
    let yb = output(&g, built * ys);
    let step = StepBuffer::new(&g, Step::new(0, tokens as u32));
    let tok = Tokens {
        max: built as u32,
        step: &step,
    };
    let op = MatMul::new(
        &g,
        &t,
        strided(&xb, c.cols, xs),
        strided(&yb, c.rows, ys),
        tok,
    )
    .unwrap();
    // Both builds (64- and 32-token tiles), whatever the step's size; with cooperative
    // matrices there is one build (`MatMul::narrow` is empty).
    for (form, d) in [("wide", &op.dispatches), ("narrow", &op.narrow)] {
        if d.is_empty() {
            assert!(
                form == "narrow" && kernels::matmul::coop_for(&g, c.ty).is_some(),
                "matmul {form}: no dispatches"
            );
            continue;
        }
        g.queue
            .write_buffer(&yb, 0, bytemuck::cast_slice(&vec![f32::NAN; built * ys]));
        kernels::run(&g, &d.iter().collect::<Vec<_>>());
        let all = read(&g, &yb, built * ys);
        assert!(
            all[tokens * ys..].iter().all(|v| v.is_nan()),
            "matmul {form} wrote past the step's tokens"
        );
        let got = all[..tokens * ys].to_vec();
        let got: Vec<f32> = got
            .chunks_exact(ys)
            .flat_map(|r| r[..c.rows].to_vec())
            .collect();
        let xt: Vec<f32> = x[..tokens * xs]
            .chunks_exact(xs)
            .flat_map(|r| r[..c.cols].to_vec())
            .collect();
        // With cooperative matrices of f16 inputs, the twin rounds its inputs the same.
        let coop = kernels::matmul::coop_for(&g, c.ty);
        let want = match coop.is_some_and(|c| c.f16_inputs) {
            true => kernels::matmul::cpu_f16_inputs(&c.w, c.cols, &xt),
            false => kernels::matmul::cpu(&c.w, c.cols, &xt),
        };
        let name = format!(
            "matmul {form} {} {}x{} T={tokens} {cfg:?} ({} shards)",
            c.ty,
            c.rows,
            c.cols,
            t.shards.len()
        );
        assert_close(&name, &got, &want, bound(c.ty));
    }
}

fn check_get_rows(cfg: Config, c: &Case, ids: &[u32]) {
    check_get_rows_scaled(cfg, c, ids, 1.0)
}

/// `GetRows::scaled` (`scale` 1: `new`) against its twin, exactly.
fn check_get_rows_scaled(cfg: Config, c: &Case, ids: &[u32], scale: f32) {
    let g = gpu(cfg);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let ib = storage_u32(&g, ids);
    let ob = output(&g, ids.len() * c.cols);
    let step = StepBuffer::new(&g, Step::new(0, ids.len() as u32));
    let tok = Tokens {
        max: ids.len() as u32,
        step: &step,
    };
    let out = Rows::packed(&ob, c.cols as u32);
    let op = match scale == 1.0 {
        true => GetRows::new(&g, &t, &ib, out, tok),
        false => GetRows::scaled(&g, &t, &ib, out, tok, scale),
    }
    .unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &ob, ids.len() * c.cols);
    let want = kernels::get_rows::cpu_scaled(&c.w, c.cols, ids, scale);
    let name = format!(
        "get_rows x{scale} {} {}x{} {cfg:?} ({} shards)",
        c.ty,
        c.rows,
        c.cols,
        t.shards.len()
    );
    // A copy: exact.
    assert_close(&name, &got, &want, 0.0);
}

#[test]
fn matvec_every_type_and_shape() {
    for (i, ty) in gpu_types().into_iter().enumerate() {
        for (j, (rows, cols)) in shapes(ty).into_iter().enumerate() {
            let c = case(ty, rows, cols, (i * 100 + j) as u64);
            for cfg in [Config::Full, Config::Bare] {
                check_matvec(cfg, &c, j as u64 + 7);
            }
        }
    }
}

/// Every geometry of the per-adapter table (and others: one to 32 lanes, one to four rows
/// per invocation) against the CPU twin, for every type: with subgroup shuffles where
/// this adapter's subgroups hold a row's lanes, with the shared-memory sum everywhere.
/// A geometry whose lanes fit a subgroup runs in one of the two forms per type, the
/// forms alternating across geometries and types (each type runs both, each geometry
/// both across the types), and each type takes three of the five extra geometries: every
/// variant is a shader for lavapipe's LLVM to compile, and the full product (429 of them)
/// took about 7 of CI's 42 test minutes with a cold shader cache (237 now).
#[test]
fn matvec_every_table_geometry() {
    let full = gpu(Config::Full);
    let sg_min = full.info.subgroup_min_size;
    // Rows per invocation beyond the table's: 37 and 9 rows leave partial groups. Each
    // type takes three of these five (a window moving one per type).
    let extra = [(1, 1), (4, 1), (1, 2), (4, 4), (32, 2)].map(|(lanes, rows)| Geometry {
        workgroup: 64,
        lanes,
        rows,
    });
    // Without subgroups no type takes the x-sharing form's one lane per row.
    let bare = gpu(Config::Bare);
    for ty in gpu_types() {
        assert_ne!(matvec::geometry(&bare, ty).0.lanes, 1, "{ty}");
        // With them, a CPU rasterizer takes it for the types that share x.
        let class = matvec::AdapterClass::of(&full.info);
        if class == matvec::AdapterClass::Cpu
            && full.features.subgroups
            && sg_min >= 8
            && matvec::shares_x(ty)
        {
            let share = matvec::class_geometry(class, ty);
            assert_eq!(share.lanes, 1, "{ty}");
            assert_eq!(matvec::geometry(&full, ty), (share, true));
        }
    }
    for (i, ty) in gpu_types().into_iter().enumerate() {
        // The table's entries, the extras of this type, and the entries as each class
        // builds them for this type.
        let picked = (0..3).map(|e| extra[(i + e) % extra.len()]);
        let own = TABLE
            .iter()
            .map(|(class, _)| matvec::class_geometry(*class, ty));
        let mut all: Vec<Geometry> = Vec::new();
        for geo in TABLE.iter().map(|(_, g)| *g).chain(picked).chain(own) {
            if !all.contains(&geo) {
                all.push(geo);
            }
        }
        let qk = ty.block_elems();
        // Float rows of whole runs of 32 take the run form as well.
        let runs = ty.is_float().then_some((37, 96));
        for (j, (rows, cols)) in [(37, 3 * qk), (9, 5 * qk)]
            .into_iter()
            .chain(runs)
            .enumerate()
        {
            let c = case(ty, rows, cols, (i * 10 + j) as u64);
            for (k, geo) in all.iter().enumerate() {
                if full.features.subgroups && geo.lanes <= sg_min && (i + k) % 2 == 1 {
                    check_matvec_geometry(Config::Full, &c, 4, Some((*geo, true)), None, false);
                } else {
                    check_matvec_geometry(Config::Bare, &c, 3, Some((*geo, false)), None, false);
                }
            }
            // The gated epilogue (the decode FFN's up projection): one activation per
            // shape, rotating (the epilogue follows the row sums, whatever the type).
            let k = i + j;
            let act = Activation::ALL[k % Activation::ALL.len()];
            let geo = (all[k % all.len()], false);
            check_matvec_geometry(Config::Bare, &c, 5, Some(geo), Some(act), false);
            let (own, shuffles) = matvec::geometry(&full, ty);
            check_matvec_geometry(Config::Full, &c, 6, Some((own, shuffles)), Some(act), true);
        }
    }
}

/// Whether the matvecs may claim their rows at run time (`HEARTH_CLAIM=0` turns it off).
fn claims_on() -> bool {
    std::env::var("HEARTH_CLAIM").as_deref() != Ok("0")
}

/// Tall matrices (an output head's rows) on the adapter's own geometry: on a CPU
/// rasterizer with subgroups of 8 the block types' invocations walk `ROW_RUNS` row
/// groups in turn (`row_runs`), plain, gated and with the residual add and the next
/// norm's inputs folded (each workgroup's sum of squares then covers its walked rows).
/// 16,421 rows leave the last workgroup a partial walk. Where a build claims its rows
/// (subgroups and x through a uniform window), shorter matrices walk 2, 4 or 8 groups,
/// leaving at least 8 items of a subgroup's walked rows, and an unclaimed build of them
/// (x in a storage buffer) walks one: each type also runs 700 rows (4 groups) or 300
/// (2), partial items, plain and folded, both ways.
#[test]
fn matvec_walks_row_runs_on_tall_matrices() {
    use matvec::{Fold, NormPrep, ROW_RUNS};
    let g = gpu(Config::Full);
    let sg = g.info.subgroup_min_size as u64;
    // A build that claims its rows walks the longest run that leaves 8 items of
    // sg * 2 * runs rows; an unclaimed one (no window, no subgroups) only the head's.
    let mid_runs = |rows: u64, claimed: bool| match claimed {
        true => [8, 4, 2]
            .into_iter()
            .find(|&s| rows / (sg * 2 * s as u64) >= 8)
            .unwrap_or(1),
        false => 1,
    };
    if sg == 8 {
        assert_eq!(
            [2048, 640, 300, 200].map(|r| mid_runs(r, true)),
            [8, 4, 2, 1],
            "subgroups of 8"
        );
    }
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let (geo, shuffles) = matvec::geometry(&g, ty);
        let walks = geo == matvec::SHARE_GEOMETRY && !ty.is_float();
        let want_runs = if walks { ROW_RUNS } else { 1 };
        let mid = [700, 300][i % 2];
        for claimed in [false, true] {
            let got = matvec::row_runs(&g, geo, ty, 16_421, claimed);
            assert_eq!(got, want_runs, "{ty}");
            for r in [2048, 640, mid, 200] {
                let want = if walks { mid_runs(r, claimed) } else { 1 };
                let got = matvec::row_runs(&g, geo, ty, r, claimed);
                assert_eq!(got, want, "{ty}: {r} rows, claimed {claimed}");
            }
        }
        if !walks {
            continue;
        }
        for rows in [16_421, mid as usize] {
            let tall = rows == 16_421;
            let c = case(ty, rows, ty.block_elems(), 900 + i as u64);
            check_matvec(Config::Full, &c, 11);
            let act = Activation::ALL[i % Activation::ALL.len()];
            if tall {
                check_matvec_geometry(Config::Full, &c, 12, Some((geo, shuffles)), Some(act), true);
            }
            // The residual add with the next norm's inputs: y += W x, h = y * w, and one
            // sum of squares of y per workgroup; with x through a uniform window (and
            // subgroups) the rows are claimed at run time and each invocation of a launched
            // workgroup leaves the sum of its own rows' squares.
            let cols = c.cols;
            let x = random_vec(cols, 13);
            let y0 = random_vec(rows, 14);
            let wn = random_vec(rows, 15);
            let t = GpuTensor::upload(&g, "w", ty, cols as u64, rows as u64, &c.raw).unwrap();
            let n = matvec::fold_parts(&g, &t, None).unwrap() as usize;
            let p = kernels::matvec::cpu(&c.w, cols, &x);
            let want: Vec<f32> = p.iter().zip(&y0).map(|(p, y)| p + y).collect();
            let h: Vec<f32> = want.iter().zip(&wn).map(|(y, w)| y * w).collect();
            for uniform in [false, true] {
                let xb = match uniform {
                    false => storage(&g, &x),
                    true => uniform_input(&g, &x),
                };
                // As the model's: one sum per row would fit.
                let (yb, wb, hb, pb) = (
                    storage(&g, &y0),
                    storage(&g, &wn),
                    output(&g, rows),
                    output(&g, rows),
                );
                let prep = Fold {
                    add: true,
                    prep: Some(NormPrep {
                        weights: &wb,
                        h: &hb,
                        ssq: &pb,
                    }),
                    ..Fold::NONE
                };
                let io = (View::of(&xb), View::of(&yb));
                let op = MatVec::folded(&g, &t, io, None, prep, None).unwrap();
                let claims = op.dispatches[0].kind.contains("claim");
                let kind = &op.dispatches[0].kind;
                // The walk the build took once it knew whether it claims.
                let runs = match tall {
                    true => ROW_RUNS,
                    false => mid_runs(rows as u64, claims),
                };
                assert!(
                    kind.contains(&format!("_seq{runs}_")),
                    "{ty} {rows} rows: {kind}"
                );
                let one_size = g.info.subgroup_min_size == g.info.subgroup_max_size;
                assert_eq!(
                    claims,
                    claims_on() && uniform && shuffles && one_size,
                    "{ty}: claimed with a window"
                );
                // Twice in one pass where claimed: the counters reset between dispatches
                // (y accumulates the product twice).
                let times = if claims { 2 } else { 1 };
                let all: Vec<_> = (0..times).flat_map(|_| op.dispatches.iter()).collect();
                kernels::run(&g, &all);
                let want: Vec<f32> = want
                    .iter()
                    .zip(&p)
                    .map(|(w, p)| w + p * (times - 1) as f32)
                    .collect();
                let h: Vec<f32> = match times {
                    1 => h.clone(),
                    _ => want.iter().zip(&wn).map(|(y, w)| y * w).collect(),
                };
                let name =
                    format!("matvec {ty} {rows}x{cols} add and norm inputs (uniform x: {uniform})");
                assert_close(&name, &read(&g, &yb, rows), &want, bound(ty));
                assert_close(&format!("{name} h"), &read(&g, &hb, rows), &h, bound(ty));
                let parts = op.prep_parts.expect("the prep's sums") as usize;
                let got = read(&g, &pb, parts);
                if claims {
                    // Each subgroup's own rows: only the total is fixed.
                    let per_wg = 32 / g.info.subgroup_min_size as usize;
                    assert_eq!(parts % per_wg, 0, "{name}: {parts} sums, one per subgroup");
                    let total: f32 = want.iter().map(|v| v * v).sum();
                    assert_close(
                        &format!("{name} total"),
                        &[got.iter().sum()],
                        &[total],
                        bound(ty),
                    );
                    continue;
                }
                // Each workgroup: 32 invocations of 2 rows, each walking `runs` groups.
                let per = 32 * 2 * runs as usize;
                assert_eq!(parts, n, "{name}: fold_parts");
                assert_eq!(n, rows.div_ceil(per), "{name}: one sum per workgroup");
                let sums: Vec<f32> = want
                    .chunks(per)
                    .map(|r| r.iter().map(|v| v * v).sum())
                    .collect();
                assert_close(&format!("{name} sums"), &got, &sums, bound(ty));
            }
        }
    }
}

/// A device configuration and a geometry (with whether its lanes sum by subgroup
/// shuffles).
type Run = (Config, (Geometry, bool));

/// The configurations the fused matvec forms are checked in: four geometries (table
/// entries and others), each without subgroups and, where its lanes fit the adapter's
/// smallest subgroup, with them.
fn fused_runs() -> Vec<Run> {
    let sg_min = gpu(Config::Full).info.subgroup_min_size;
    let geos = [(64, 1, 1), (64, 8, 2), (128, 32, 1), (64, 4, 4)].map(|(w, l, r)| Geometry {
        workgroup: w,
        lanes: l,
        rows: r,
    });
    geos.iter()
        .flat_map(|g| [(Config::Bare, (*g, false)), (Config::Full, (*g, true))])
        .filter(|(_, (g, sg))| !sg || g.lanes <= sg_min)
        .collect()
}

/// The fused-form runs type `i` checks, each with its index in `fused_runs`: four
/// consecutive runs (cyclically), the window moving one run per type, so that every
/// run is checked on about half the types, and every type runs both with and without
/// subgroups (every window of four holds both). Each run is a shader per type for
/// lavapipe's LLVM to compile: all seven for every type were 448 compiles in the three
/// tests that take runs per type (256 now), about 5 minutes of CI with a cold cache.
fn fused_runs_for(i: usize) -> Vec<(usize, Run)> {
    let runs = fused_runs();
    let n = runs.len();
    let picked: Vec<_> = runs
        .iter()
        .copied()
        .enumerate()
        .filter(|(k, _)| (k + n - i % n) % n < 4.min(n))
        .collect();
    for c in [Config::Bare, Config::Full] {
        let ran = runs.iter().any(|(cfg, _)| *cfg == c);
        let kept = picked.iter().any(|(_, (cfg, _))| *cfg == c);
        assert!(kept || !ran, "type {i}: no {c:?} run");
    }
    picked
}

/// A gated FFN's gate and up uploaded as one pair (`GpuTensor::upload_stack`), read by
/// one matvec: `act(gate x) * (up x)` against the twins, for every type, on table and
/// other geometries; tensors that are not a pair do not join, and an odd row count is
/// refused.
#[test]
fn matvec_gate_up_pair() {
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let qk = ty.block_elems();
        // 64 rows keep every type's half a multiple of the binding offset alignment;
        // float rows are runs of 32 (the run form; the q/k/v stack keeps the generic).
        let cols = if ty.is_float() { 96 } else { 3 * qk };
        let (gate, up) = (
            case(ty, 64, cols, 50 + i as u64),
            case(ty, 64, cols, 90 + i as u64),
        );
        for (j, (cfg, geo)) in fused_runs_for(i) {
            let g = gpu(cfg);
            let parts = [("gate", 64, &gate.raw[..]), ("up", 64, &up.raw[..])];
            let pair = GpuTensor::upload_stack(&g, ty, gate.cols as u64, &parts).unwrap();
            let Some([tg, tu]) = pair.map(|v| <[GpuTensor; 2]>::try_from(v).ok().unwrap()) else {
                let align = g.limits.min_storage_buffer_offset_alignment;
                panic!("{ty}: 64 rows not paired (offset alignment {align})");
            };
            let both = tg.joined(&tu).expect("the pair's views join");
            assert!(tu.joined(&tg).is_none(), "only in order");
            let x = random_vec(gate.cols + 4, 7 + j as u64);
            let xb = storage(&g, &x);
            let yb = output(&g, 64 + 1);
            let act = [Activation::Silu, Activation::GeluTanh][j % 2];
            let (xv, yv) = (
                View {
                    buffer: &xb,
                    offset: 4,
                },
                View {
                    buffer: &yb,
                    offset: 1,
                },
            );
            let op = MatVec::pair_with_geometry(&g, &both, xv, yv, geo, act).unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &yb, 65);
            let gw = kernels::matvec::cpu(&gate.w, gate.cols, &x[4..]);
            let uw = kernels::matvec::cpu(&up.w, up.cols, &x[4..]);
            let want = kernels::gated_act::cpu(&gw, &uw, act);
            let name = format!("gate/up pair {ty} {cfg:?} {geo:?} {act:?}");
            assert_close(&name, &got[1..], &want, bound(ty));
            // Apart, the two are not a pair.
            let lone = GpuTensor::upload(&g, "up", ty, up.cols as u64, 64, &up.raw).unwrap();
            assert!(tg.joined(&lone).is_none());
            let odd = case(ty, 63, 3 * qk, 5);
            let odd = GpuTensor::upload(&g, "odd", ty, odd.cols as u64, 63, &odd.raw).unwrap();
            let err = MatVec::gated_pair(&g, &odd, View::of(&xb), View::of(&yb), act).err();
            assert!(
                format!("{err:?}").contains("even number of rows"),
                "{err:?}"
            );
        }
    }
}

/// An attention's q, k and v (GQA shapes: 48, 16 and 16 rows) uploaded as one stack,
/// joined (`GpuTensor::joined`) and read by one matvec into `[q | k | v]` (the graph's
/// form), and q and k alone, against the twins for every type on table and other
/// geometries; stacks out of order or not in one buffer do not join, and stacks whose
/// parts do not end on a bindable offset are declined.
#[test]
fn matvec_qkv_stack() {
    let full = gpu(Config::Full);
    let rows = [48usize, 16, 16];
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let qk = ty.block_elems();
        let cases: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(j, &r)| case(ty, r, 3 * qk, 300 + (10 * i + j) as u64))
            .collect();
        let cols = cases[0].cols;
        for (j, (cfg, geo)) in fused_runs_for(i) {
            let g = gpu(cfg);
            let n = 2 + j % 2;
            let parts: Vec<(&str, u64, &[u8])> = ["q", "k", "v"][..n]
                .iter()
                .zip(&cases)
                .map(|(name, c)| (*name, c.rows as u64, &c.raw[..]))
                .collect();
            let stack = GpuTensor::upload_stack(&g, ty, cols as u64, &parts)
                .unwrap()
                .unwrap_or_else(|| panic!("{ty}: q/k/v not stacked"));
            let x = random_vec(cols + 4, 17 + j as u64);
            let xb = storage(&g, &x);
            let xv = View {
                buffer: &xb,
                offset: 4,
            };
            let joined = stack[1..]
                .iter()
                .try_fold(stack[0].clone(), |a, b| a.joined(b))
                .expect("the stack joins");
            // The output at offset 3, the parts' rows one after another.
            let out = output(&g, 3 + 80);
            let yv = View {
                buffer: &out,
                offset: 3,
            };
            let op = MatVec::with_geometry(&g, &joined, xv, yv, geo, None).unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &out, 3 + joined.rows as usize);
            let want: Vec<f32> = cases[..n]
                .iter()
                .flat_map(|c| kernels::matvec::cpu(&c.w, cols, &x[4..]))
                .collect();
            let name = format!("qkv stack {ty} of {n} parts {cfg:?} {geo:?}");
            assert_close(&name, &got[3..], &want, bound(ty));
            // Out of order, or one part uploaded apart: no join.
            assert!(
                stack[1].joined(&stack[0]).is_none(),
                "{ty}: reversed parts joined"
            );
            let lone = GpuTensor::upload(&g, "k", ty, cols as u64, 16, &cases[1].raw).unwrap();
            assert!(
                stack[0].joined(&lone).is_none(),
                "{ty}: separate buffers joined"
            );
        }
        // A first part that ends off the binding offset alignment is not stacked.
        let align = full.limits.min_storage_buffer_offset_alignment as u64;
        let row_bytes = gpu_layout(ty).unwrap().row_words(cols as u64) * 4;
        if !row_bytes.is_multiple_of(align) {
            let odd = case(ty, 1, cols, 9);
            let parts = [("q", 1, &odd.raw[..]), ("k", 16, &cases[1].raw[..])];
            let got = GpuTensor::upload_stack(&full, ty, cols as u64, &parts).unwrap();
            assert!(got.is_none(), "{ty}: misaligned part stacked");
        }
        // Data that does not match the rows given is declined, not read past.
        let short = [("q", 48, &cases[1].raw[..]), ("k", 16, &cases[1].raw[..])];
        let got = GpuTensor::upload_stack(&full, ty, cols as u64, &short).unwrap();
        assert!(got.is_none(), "{ty}: short data stacked");
    }
}

/// The folds of the decode matvec (`Fold`) against the twins, for every type, on table
/// and other geometries with and without subgroups: a pre-norm's scale taken from sums
/// of squares (`W (x * w)` scaled by `1 / sqrt(mean(x^2) + eps)`, in the plain, gated,
/// pair and q/k/v stack forms: `rmsnorm::cpu` then `matvec::cpu`), and the residual add
/// (`y += W x`) alone and leaving the next norm's inputs (`h = y * w`, each workgroup's
/// sum of its rows' squares); an add that would write its own input, too few sums, a
/// short weight vector and inputs without the add are refused.
#[test]
fn matvec_folds_norm_and_residual() {
    use matvec::{Fold, NormPrep, NormScale};
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let qk = ty.block_elems();
        // Float rows are runs of 32 here (the run form).
        let cols = if ty.is_float() { 96 } else { 3 * qk };
        let (a, b, c) = (
            case(ty, 64, cols, 500 + i as u64),
            case(ty, 64, cols, 600 + i as u64),
            case(ty, 16, cols, 700 + i as u64),
        );
        for (j, (cfg, geo)) in fused_runs_for(i) {
            let g = gpu(cfg);
            let seed = 40 + (10 * i + j) as u64;
            // The residual stream (scaled up, so a missing or doubled scale shows), the
            // norm's weights, x * w at offset 4, and the sums of squares in 5 parts.
            let xr: Vec<f32> = random_vec(cols, seed).iter().map(|v| 7.0 * v).collect();
            let nw = random_vec(cols, seed + 1);
            let eps = 1e-5;
            let mut xw = vec![0.5; 4];
            xw.extend(xr.iter().zip(&nw).map(|(x, w)| x * w));
            let mut ssq = vec![0f32; 5];
            for (k, v) in xr.iter().enumerate() {
                ssq[k % 5] += v * v;
            }
            let (xb, sb) = (storage(&g, &xw), storage(&g, &ssq));
            let xv = View {
                buffer: &xb,
                offset: 4,
            };
            let normed = kernels::rmsnorm::cpu(&xr, &nw, eps);
            let fold = Fold {
                norm: Some(NormScale {
                    ssq: &sb,
                    parts: 5,
                    eps,
                }),
                ..Fold::NONE
            };
            let y0 = random_vec(64 + 1, seed + 2);
            let yb = storage(&g, &y0);
            let yv = View {
                buffer: &yb,
                offset: 1,
            };
            let ta = GpuTensor::upload(&g, "a", ty, cols as u64, 64, &a.raw).unwrap();
            let act = [Activation::Silu, Activation::GeluTanh][j % 2];
            // The next norm's inputs of the add: its weights, h, the sums.
            let (wn, hb, pb) = (
                storage(&g, &random_vec(64, seed + 3)),
                output(&g, 64),
                output(&g, 64),
            );
            let prep = Fold {
                add: true,
                prep: Some(NormPrep {
                    weights: &wn,
                    h: &hb,
                    ssq: &pb,
                }),
                ..Fold::NONE
            };
            let form = (i + j) % 5;
            let (op, want, what) = match form {
                0 => {
                    let op = MatVec::folded(&g, &ta, (xv, yv), None, fold, Some(geo));
                    (op, kernels::matvec::cpu(&a.w, cols, &normed), "norm")
                }
                1 => {
                    let op = MatVec::folded(&g, &ta, (xv, yv), Some(act), fold, Some(geo));
                    let u = kernels::matvec::cpu(&a.w, cols, &normed);
                    (op, kernels::gated_act::cpu(&y0[1..], &u, act), "gated norm")
                }
                2 | 3 => {
                    let f = match form {
                        2 => Fold {
                            add: true,
                            ..Fold::NONE
                        },
                        _ => prep,
                    };
                    let op = MatVec::folded(&g, &ta, (xv, yv), None, f, Some(geo));
                    let p = kernels::matvec::cpu(&a.w, cols, &xw[4..]);
                    let want = p.iter().zip(&y0[1..]).map(|(p, y)| p + y).collect();
                    (op, want, ["add", "add and norm inputs"][form - 2])
                }
                _ => {
                    let parts = [("gate", 64, &a.raw[..]), ("up", 64, &b.raw[..])];
                    let pair = GpuTensor::upload_stack(&g, ty, cols as u64, &parts)
                        .unwrap()
                        .expect("a pair");
                    let both = pair[0].joined(&pair[1]).unwrap();
                    let op = MatVec::pair_folded(&g, &both, (xv, yv), act, fold, Some(geo));
                    let gw = kernels::matvec::cpu(&a.w, cols, &normed);
                    let uw = kernels::matvec::cpu(&b.w, cols, &normed);
                    (op, kernels::gated_act::cpu(&gw, &uw, act), "pair norm")
                }
            };
            let op = op.unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &yb, 65);
            let name = format!("matvec {what} {ty} {cfg:?} {geo:?}");
            assert_close(&name, &got[1..], &want, bound(ty));
            if form == 3 {
                // h = y * w, and each workgroup's sum of squares over its rows.
                let wv = read(&g, &wn, 64);
                let h: Vec<f32> = want.iter().zip(&wv).map(|(y, w)| y * w).collect();
                assert_close(&format!("{name} h"), &read(&g, &hb, 64), &h, bound(ty));
                let n = matvec::fold_parts(&g, &ta, Some(geo)).unwrap() as usize;
                let per = 64usize.div_ceil(n);
                let sums: Vec<f32> = want
                    .chunks(per)
                    .map(|r| r.iter().map(|v| v * v).sum())
                    .collect();
                assert_eq!(sums.len(), n, "{name}: {n} sums");
                assert_close(&format!("{name} sums"), &read(&g, &pb, n), &sums, bound(ty));
            }
            // The joined q/k/v stack with the norm: each part against its twin.
            let parts = [
                ("q", 64, &a.raw[..]),
                ("k", 64, &b.raw[..]),
                ("v", 16, &c.raw[..]),
            ];
            let stack = GpuTensor::upload_stack(&g, ty, cols as u64, &parts)
                .unwrap()
                .expect("a stack");
            let joined = stack[0]
                .joined(&stack[1])
                .and_then(|qk| qk.joined(&stack[2]))
                .expect("the stack joins");
            let out = output(&g, 144);
            let op = MatVec::folded(&g, &joined, (xv, View::of(&out)), None, fold, Some(geo));
            let op = op.unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &out, 144);
            let want: Vec<f32> = [&a, &b, &c]
                .iter()
                .flat_map(|case| kernels::matvec::cpu(&case.w, cols, &normed))
                .collect();
            let name = format!("matvec stack norm {ty} {cfg:?} {geo:?}");
            assert_close(&name, &got, &want, bound(ty));
            // Refused: an add into its own input, more sums than the buffer holds, a
            // short weight vector, the norm's inputs without the add.
            let big = output(&g, 64 + cols);
            let (bx, by) = (
                View {
                    buffer: &big,
                    offset: 64,
                },
                View::of(&big),
            );
            let add = Fold {
                add: true,
                ..Fold::NONE
            };
            let err = MatVec::folded(&g, &ta, (bx, by), None, add, Some(geo)).err();
            assert!(format!("{err:?}").contains("reads"), "{err:?}");
            let many = Fold {
                norm: Some(NormScale {
                    ssq: &sb,
                    parts: 6,
                    eps,
                }),
                ..Fold::NONE
            };
            let err = MatVec::folded(&g, &ta, (xv, yv), None, many, Some(geo)).err();
            assert!(format!("{err:?}").contains("folded norm"), "{err:?}");
            let short = storage(&g, &[1.0; 8]);
            let bad = Fold {
                add: true,
                prep: Some(NormPrep {
                    weights: &short,
                    h: &hb,
                    ssq: &pb,
                }),
                ..Fold::NONE
            };
            let err = MatVec::folded(&g, &ta, (xv, yv), None, bad, Some(geo)).err();
            assert!(format!("{err:?}").contains("norm's inputs"), "{err:?}");
            let alone = Fold { add: false, ..prep };
            let err = MatVec::folded(&g, &ta, (xv, yv), None, alone, Some(geo)).err();
            assert!(format!("{err:?}").contains("norm's inputs"), "{err:?}");
        }
    }
}

#[test]
fn matmul_every_type_and_shape() {
    for (i, ty) in gpu_types().into_iter().enumerate() {
        for (j, (rows, cols)) in shapes(ty).into_iter().enumerate() {
            let c = case(ty, rows, cols, (i * 100 + j) as u64 + 50);
            for tokens in [1, 5, 33, 70] {
                check_matmul(Config::Full, &c, tokens, j as u64);
            }
        }
    }
}

/// The cooperative-matrix matmul against its twin for every type, tile edges and
/// shards. It needs an adapter with cooperative matrices (wgpu's experimental feature: a
/// GPU, or lavapipe with VK_KHR_cooperative_matrix, Mesa 25.2 or later) and
/// `HEARTH_COOP_MATRIX=1` (hearth uses them only when asked): `HEARTH_COOP_MATRIX=1 cargo
/// test --release --test kernels -- --include-ignored`. Then every matmul test above runs
/// this kernel too; this one fails where there are none rather than passing unexercised.
#[test]
#[ignore = "needs cooperative matrices: HEARTH_COOP_MATRIX=1 on a GPU or on lavapipe from Mesa 25.2+"]
fn matmul_cooperative_matrices() {
    let g = gpu(Config::Full);
    let c = g.coop.unwrap_or_else(|| {
        panic!(
            "{} offers no cooperative matrices hearth builds for",
            g.info.name
        )
    });
    eprintln!("cooperative matrices: {c:?}");
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let cols = ty.block_elems().max(64) * 3;
        for (j, rows) in [1, 37, 4 * c.size as usize + 1].into_iter().enumerate() {
            let case = case(ty, rows, cols, (i * 10 + j) as u64 + 7000);
            for tokens in [1, 4 * c.size as usize - 1, 4 * c.size as usize + 3, 130] {
                check_matmul(Config::Full, &case, tokens, j as u64);
            }
        }
    }
    let sharded = gpu(Config::SmallBinding);
    assert!(sharded.coop.is_some(), "the small-binding device lost them");
    let ty = GgmlType::Q4_K;
    let row_bytes = (gpu_layout(ty).unwrap().row_words(512) * 4) as usize;
    let case = case(ty, (SMALL_BINDING as usize / row_bytes) * 2 + 3, 512, 7999);
    check_matmul(Config::SmallBinding, &case, 70, 3);
}

#[test]
fn get_rows_every_type() {
    for (i, ty) in gpu_types().into_iter().enumerate() {
        for (rows, cols) in [(9, ty.block_elems() * 2), (1, ty.block_elems())] {
            let c = case(ty, rows, cols, i as u64 + 900);
            let ids: Vec<u32> = (0..rows as u32)
                .rev()
                .chain([0, (rows - 1) as u32])
                .collect();
            check_get_rows(Config::Full, &c, &ids);
            // Gemma's embedding scale folded into the lookup, on every type.
            check_get_rows_scaled(Config::Full, &c, &ids, 25.298_221);
        }
    }
}

/// A scale that is not finite would fill the embedding with inf or NaN: refused.
#[test]
fn get_rows_refuses_a_scale_that_is_not_finite() {
    let g = gpu(Config::Full);
    let c = case(GgmlType::Q8_0, 3, 32, 5);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let ib = storage_u32(&g, &[0]);
    let ob = output(&g, c.cols);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = Tokens {
        max: 1,
        step: &step,
    };
    for scale in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let out = Rows::packed(&ob, c.cols as u32);
        let err = GetRows::scaled(&g, &t, &ib, out, tok, scale)
            .map(drop)
            .expect_err("a scale that is not finite");
        assert!(err.to_string().contains("not finite"), "{err}");
    }
}

/// `GetRows::normed` (decode's lookup leaving the first pre-norm's inputs) against its
/// twins: the scaled row exactly, `h = row * w` exactly, and the row's sum of squares;
/// float rows that end inside a group, quantized rows, and sharded weights with the row
/// in either shard (the other shard's dispatch writes nothing). More than one token, a
/// scale that is not finite, and h in the row's buffer are refused.
#[test]
fn get_rows_normed_leaves_the_norm_inputs() {
    use hearth::kernels::matvec::NormPrep;
    let runs = [
        (Config::Full, GgmlType::F32, 5, 7),
        (Config::Bare, GgmlType::Q8_0, 9, 64),
        (Config::Full, GgmlType::Q4_K, 3, 256),
        (Config::Bare, GgmlType::F16, 4, 70),
    ];
    let row_bytes = (gpu_layout(GgmlType::Q8_0).unwrap().row_words(256) * 4) as usize;
    let sharded = (SMALL_BINDING as usize / row_bytes) * 2 + 3;
    let runs = runs
        .into_iter()
        .chain([(Config::SmallBinding, GgmlType::Q8_0, sharded, 256)]);
    for (i, (cfg, ty, rows, cols)) in runs.enumerate() {
        let g = gpu(cfg);
        let c = case(ty, rows, cols, 1300 + i as u64);
        let t = GpuTensor::upload(&g, "w", c.ty, cols as u64, rows as u64, &c.raw).unwrap();
        let nw = random_vec(cols, 1400 + i as u64);
        let scale = 25.298_221;
        for id in [0, rows as u32 - 1, rows as u32 / 2] {
            let ib = storage_u32(&g, &[id]);
            // The row at offset 3 of its buffer (h at the same offset of its own).
            let (ob, hb, sb) = (output(&g, cols + 3), output(&g, cols + 3), output(&g, 1));
            let wb = storage(&g, &nw);
            let step = StepBuffer::new(&g, Step::new(0, 1));
            let tok = Tokens {
                max: 1,
                step: &step,
            };
            let out = Rows {
                view: View {
                    buffer: &ob,
                    offset: 3,
                },
                ..Rows::packed(&ob, cols as u32)
            };
            let prep = NormPrep {
                weights: &wb,
                h: &hb,
                ssq: &sb,
            };
            let op = GetRows::normed(&g, &t, &ib, (out, tok), scale, prep).unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let name = format!(
                "get_rows normed {ty} {rows}x{cols} row {id} {cfg:?} ({} shards)",
                t.shards.len()
            );
            let row = kernels::get_rows::cpu_scaled(&c.w, cols, &[id], scale);
            let (h, ss) = kernels::get_rows::cpu_norm_inputs(&row, &nw);
            assert_close(&name, &read(&g, &ob, cols + 3)[3..], &row, 0.0);
            assert_close(&name, &read(&g, &hb, cols + 3)[3..], &h, 0.0);
            let got = read(&g, &sb, 1)[0] as f64;
            assert!(
                (got - ss).abs() <= 1e-5 * ss.max(1e-6),
                "{name}: sum {got} against {ss}"
            );
            if i == 0 {
                let two = Tokens {
                    max: 2,
                    step: &step,
                };
                let ib2 = storage_u32(&g, &[id, id]);
                let err = GetRows::normed(&g, &t, &ib2, (out, two), scale, prep).map(drop);
                assert!(err.is_err(), "two tokens");
                let err = GetRows::normed(&g, &t, &ib, (out, tok), f32::NAN, prep).map(drop);
                assert!(err.is_err(), "a scale that is not finite");
                let own = NormPrep { h: &ob, ..prep };
                let err = GetRows::normed(&g, &t, &ib, (out, tok), scale, own).map(drop);
                assert!(err.is_err(), "h in the row's buffer");
            }
        }
        assert_eq!(
            t.shards.len() > 1,
            cfg == Config::SmallBinding,
            "{ty} {rows}x{cols}"
        );
    }
}

#[test]
fn float_rows_that_end_inside_a_group() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let c = case(ty, 6, 7, 77);
        check_get_rows(Config::Full, &c, &[5, 0, 3]);
        check_matmul(Config::Bare, &c, 3, 78);
    }
}

#[test]
fn sharded_weights_match() {
    // Rows sized so every type spans several 64 KiB shards.
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let cols = ty.block_elems().max(256) * 2;
        let row_bytes = (gpu_layout(ty).unwrap().row_words(cols as u64) * 4) as usize;
        let rows = (SMALL_BINDING as usize / row_bytes) * 2 + 3;
        let c = case(ty, rows, cols, 4000 + i as u64);
        check_matvec(Config::SmallBinding, &c, 1);
        check_matmul(Config::SmallBinding, &c, 9, 2);
        let ids: Vec<u32> = vec![0, rows as u32 - 1, (rows / 2) as u32, 1];
        check_get_rows(Config::SmallBinding, &c, &ids);
        check_get_rows_scaled(Config::SmallBinding, &c, &ids, -0.75);
        let t = GpuTensor::upload(
            &gpu(Config::SmallBinding),
            "w",
            ty,
            cols as u64,
            rows as u64,
            &c.raw,
        )
        .unwrap();
        assert!(
            t.shards.len() >= 3,
            "{ty}: expected >= 3 shards, got {}",
            t.shards.len()
        );
    }
}

#[test]
fn gemma_shapes() {
    // (type, rows, cols) of Gemma 3 270M's projections: q, k/v, o, gate/up, down.
    let shapes = [
        (GgmlType::Q5_0, 1024, 640),
        (GgmlType::Q8_0, 256, 640),
        (GgmlType::Q4_K, 640, 1024),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q6_K, 640, 2048),
        (GgmlType::F32, 1, 640),
    ];
    for (i, (ty, rows, cols)) in shapes.into_iter().enumerate() {
        let c = case(ty, rows, cols, 300 + i as u64);
        check_matvec(Config::Full, &c, i as u64);
        check_matmul(Config::Full, &c, 7, i as u64);
    }
}

#[test]
fn upload_rejects_bad_shapes() {
    let g = gpu(Config::Full);
    let err = |r: Result<GpuTensor, _>| {
        r.err()
            .map(|e: hearth::gpu::GpuError| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(GpuTensor::upload(
        &g,
        "a",
        GgmlType::Q4_K,
        100,
        1,
        &[0; 144]
    ))
    .contains("multiple"));
    assert!(err(GpuTensor::upload(
        &g,
        "b",
        GgmlType::Q4_K,
        256,
        2,
        &[0; 144]
    ))
    .contains("bytes"));
    assert!(err(GpuTensor::upload(
        &g,
        "c",
        GgmlType::Q8_K,
        256,
        1,
        &[0; 292]
    ))
    .contains("Q8_K"));
    assert!(err(GpuTensor::upload(&g, "d", GgmlType::F32, 0, 1, &[])).contains("empty"));
    let small = gpu(Config::SmallBinding);
    let huge_row = vec![0u8; SMALL_BINDING as usize * 2];
    let e = err(GpuTensor::upload(
        &small,
        "e",
        GgmlType::F32,
        SMALL_BINDING / 2,
        1,
        &huge_row,
    ));
    assert!(e.contains("largest binding"), "{e}");
}

/// The batched-decode matvec (`MatVecBatch`): every type and shape, plain and gated, on
/// table and other geometries with and without subgroups (rotating across cases), for
/// steps of 1 to 19 tokens of an op built for one token more (`batch_built`), against the
/// CPU twin; the token past the step stays untouched.
#[test]
fn matvec_batch_every_type_and_geometry() {
    let runs = fused_runs();
    for (i, ty) in gpu_types().into_iter().enumerate() {
        for (j, (rows, cols)) in shapes(ty).into_iter().enumerate() {
            let c = case(ty, rows, cols, (i * 100 + j) as u64 + 70);
            // One run per case, the runs rotating through geometries, token counts and
            // forms across cases.
            let k = i + j;
            let (cfg, geo) = runs[k % runs.len()];
            let n = [1, 2, 3, 5, 8, 13, 16, 19][(i * 3 + j) % 8];
            let act = [None, Some(Activation::Silu), Some(Activation::GeluTanh)][k % 3];
            check_matvec_batch(cfg, &c, batch_built(n), n, geo, act, k as u64, None, None);
        }
    }
}

/// A gated FFN's gate and up as one batched matvec (`MatVecBatch::pair`: the pair
/// uploaded as one stack and joined): `act(gate x) * (up x)` per token against the twins,
/// for every type, in the x-sharing form (8-column blocks and 16-column builds) and on
/// table and other geometries (some covering the rows with a partial workgroup), 1 to 19
/// tokens of an op built for one more; the outputs past the step and between tokens
/// untouched. An odd row count is refused.
#[test]
fn matvec_batch_gate_up_pair() {
    use hearth::kernels::matvec_batch::SHARE_GEOMETRY;
    use hearth::kernels::MatVecBatch;
    let runs = fused_runs();
    let share = gpu(Config::Full).features.subgroups;
    for (i, ty) in gpu_types().into_iter().enumerate() {
        // 64 rows each keep the up part on a bindable offset for every type.
        const R: usize = 64;
        let cols = if ty.is_float() {
            96
        } else {
            2 * ty.block_elems()
        };
        let (gc, uc) = (
            case(ty, R, cols, 800 + i as u64),
            case(ty, R, cols, 900 + i as u64),
        );
        // The x-sharing form with 8-column blocks and with 16 columns, then a table or
        // other geometry, rotating across types.
        let forms = [
            (Config::Full, (SHARE_GEOMETRY, share), false),
            (Config::Full, (SHARE_GEOMETRY, share), true),
            (runs[i % runs.len()].0, runs[i % runs.len()].1, true),
        ];
        for (j, (cfg, geo, wide)) in forms.into_iter().enumerate() {
            let g = gpu(cfg);
            let parts = [
                ("gate", R as u64, &gc.raw[..]),
                ("up", R as u64, &uc.raw[..]),
            ];
            let stack = GpuTensor::upload_stack(&g, ty, cols as u64, &parts)
                .unwrap()
                .unwrap_or_else(|| panic!("{ty}: gate/up not stacked"));
            let w = stack[0].joined(&stack[1]).expect("the pair joins");
            let n = [1, 5, 9, 16, 19][(i + 2 * j) % 5];
            let built = batch_built(n);
            let (xs, ys) = (cols + 4, R + 3);
            let x = random_vec(built * xs, 60 + i as u64);
            let (xb, yb) = (storage(&g, &x), output(&g, built * ys));
            let step = StepBuffer::new(&g, Step::new(0, n as u32));
            let tok = Tokens {
                max: built as u32,
                step: &step,
            };
            let act = [Activation::Silu, Activation::GeluTanh][(i + j) % 2];
            let io = (strided(&xb, cols, xs), strided(&yb, R, ys));
            let tile = Tile { wide, eight: true };
            let op = MatVecBatch::pair_with_tile(&g, &w, io, tok, act, geo, tile).unwrap();
            kernels::run(&g, &op.for_tokens(n as u32).iter().collect::<Vec<_>>());
            let all = read(&g, &yb, built * ys);
            let name = format!("matvec_batch pair {ty} n={n} {cfg:?} {geo:?} wide {wide} {act:?}");
            let mut got = Vec::new();
            let mut want = Vec::new();
            for t in 0..n {
                got.extend_from_slice(&all[t * ys..t * ys + R]);
                let xt = &x[t * xs..t * xs + cols];
                let (gv, uv) = (
                    kernels::matvec::cpu(&gc.w, cols, xt),
                    kernels::matvec::cpu(&uc.w, cols, xt),
                );
                want.extend(kernels::gated_act::cpu(&gv, &uv, act));
                assert!(
                    all[t * ys + R..(t + 1) * ys].iter().all(|v| v.is_nan()),
                    "{name}: wrote between tokens"
                );
            }
            assert!(
                all[n * ys..].iter().all(|v| v.is_nan()),
                "{name}: wrote past the step"
            );
            assert_close(&name, &got, &want, bound(ty));
            // Refused: an odd row count.
            let odd = GpuTensor::upload(
                &g,
                "odd",
                ty,
                cols as u64,
                3,
                &gc.raw[..3 * gc.raw.len() / R],
            );
            let odd = odd.unwrap();
            let err = MatVecBatch::pair_with_tile(&g, &odd, io, tok, act, geo, tile).err();
            assert!(format!("{err:?}").contains("even"), "{name}: {err:?}");
        }
    }
}

/// The batched matvec's x-sharing form (one lane per row, x passed by subgroup broadcast,
/// the types with a whole-block decoder loading eight groups at once): every type and
/// shape against the twin, 1 to 19 tokens (the 16-column build, `WIDE16`, from 9), plain
/// and gated. Where the adapter has
/// subgroups of at least 8 (lavapipe's are 8) block types must take the form.
#[test]
fn matvec_batch_shared_x_every_type() {
    use hearth::kernels::matvec_batch::SHARE_GEOMETRY;
    let g = gpu(Config::Full);
    let can = g.features.subgroups && g.info.subgroup_min_size >= 8;
    let geo = (SHARE_GEOMETRY, g.features.subgroups);
    for (i, ty) in gpu_types().into_iter().enumerate() {
        for (j, (rows, cols)) in shapes(ty).into_iter().enumerate() {
            let c = case(ty, rows, cols, (i * 100 + j) as u64 + 170);
            // Every type runs a 16-column build (more than 8 tokens) on its second shape.
            let n = match j {
                1 => [9, 22, 19][i % 3],
                _ => [1, 3, 4, 5, 8, 9, 16, 19][(i + j) % 8],
            };
            // One activation per type: each form is a large shader to compile.
            let act = [None, Some(Activation::Silu), Some(Activation::GeluTanh)][i % 3];
            let built = batch_built(n);
            // Every other case reads x through a uniform window (`XUNIFORM`): x's buffer
            // may be bound as uniform and holds the window, x starting X_LEAD elements in.
            let window = (i + j) % 2 == 0;
            let lead = window.then_some(X_LEAD);
            // Past eight tokens, 8-column blocks on the first shape and 16-column builds
            // elsewhere (Q8_0 too), those of `tall` types at eight rows per invocation on
            // the second shape and at four elsewhere, whatever this host picks (`Tile::of`).
            let (wide, eight) = (j != 0, j == 1);
            let (shared, uniform, tall, blocks) = check_matvec_batch(
                Config::Full,
                &c,
                built,
                n,
                geo,
                act,
                j as u64,
                lead,
                Some(Tile { wide, eight }),
            );
            // Float rows share x when they are whole runs of 32 (the strides here are
            // cols + 4, so x stays on vec4 words then).
            assert_eq!(
                shared,
                can && (!ty.is_float() || cols % 32 == 0),
                "{ty} {rows}x{cols}: x-sharing form"
            );
            // Every shape's tokens here fit the window (at most 20 tokens of 772).
            assert_eq!(uniform, shared && window, "{ty} {rows}x{cols}: uniform x");
            // The 16-column builds of some types take eight rows per invocation (`BR8`).
            let wide = wide && shared && n > 8;
            assert_eq!(
                tall,
                wide && eight && hearth::kernels::matvec_batch::tall(ty),
                "{ty} {rows}x{cols} n={n}: eight rows per invocation"
            );
            // Past 16 tokens a 16-column block, then a block of 4 (or 8) for the rest.
            if wide && n > 16 {
                let tail = if n <= 20 { 4 } else { 8 };
                assert!(
                    blocks.first() == Some(&16)
                        && blocks.last() == Some(&tail)
                        && blocks.iter().all(|&c| c == 16 || c == tail),
                    "{ty} {rows}x{cols} n={n}: blocks {blocks:?}"
                );
            }
        }
    }
    // Eight rows per invocation over several workgroups (256 rows each with lavapipe's
    // geometry), the last one partial.
    let c = case(GgmlType::Q4_K, 600, 512, 977);
    let (shared, _, tall, _) = check_matvec_batch(
        Config::Full,
        &c,
        batch_built(16),
        16,
        geo,
        None,
        3,
        None,
        Some(Tile {
            wide: true,
            eight: true,
        }),
    );
    assert_eq!(tall, shared, "Q4_K 600x512: eight rows per invocation");
    assert_eq!(shared, can, "Q4_K 600x512: x-sharing form");
}

/// The batched matvec's per-block uniform windows: where a prompt step's x fits no one
/// window, the types that gain from it read each column block's x through its own
/// window, a dispatch per block (16 columns, or 8 where 16 tokens of a wide input do
/// not fit). Against the twin, the last block partial, x not on the window's alignment;
/// a step of fewer tokens records only the blocks that hold them. Builds for a batched
/// decode step (at most 32 tokens) take them whatever the type (Q4_1 here), longer
/// prompts only for the types that gain (Q4_1's 37 tokens read storage x).
#[test]
fn matvec_batch_block_windows() {
    use hearth::kernels::matvec_batch::SHARE_GEOMETRY;
    let g = gpu(Config::Full);
    let can = g.features.subgroups && g.info.subgroup_min_size >= 8;
    let geo = (SHARE_GEOMETRY, g.features.subgroups);
    // (type, rows, cols, step tokens, columns of each block): 16 tokens of 1024 + 4
    // values are more than a window, 8 are not; 16 of 644 fit. 37 tokens on 16-column
    // blocks take two, then a block of 8 for the last five (`TAIL_BLOCKS`).
    let cases: [(_, _, _, _, &[u32], _); 5] = [
        (GgmlType::Q5_0, 520, 640, 37, &[16, 16, 8], None),
        (
            GgmlType::Q4_K,
            530,
            1024,
            21,
            &[8, 8, 8],
            Some(Activation::Silu),
        ),
        (GgmlType::Q6_K, 515, 1024, 17, &[8, 8, 8], None),
        (GgmlType::Q4_1, 530, 1024, 17, &[8, 8, 8], None),
        (GgmlType::Q4_1, 530, 1024, 37, &[], None),
    ];
    for (i, (ty, rows, cols, n, per, act)) in cases.into_iter().enumerate() {
        let c = case(ty, rows, cols, 990 + i as u64);
        let (shared, uniform, _, blocks) = check_matvec_batch(
            Config::Full,
            &c,
            n + 1,
            n,
            geo,
            act,
            40 + i as u64,
            Some(X_LEAD),
            None,
        );
        assert_eq!(shared, can, "{ty} {rows}x{cols}: x-sharing form");
        let windows = shared && !per.is_empty();
        assert_eq!(
            uniform, windows,
            "{ty} {rows}x{cols}, {n} tokens: per-block windows"
        );
        if windows {
            // One dispatch per block holding the step's tokens (one shard here).
            assert_eq!(blocks, per, "{ty}: blocks of a step of {n} tokens");
        }
    }
}

/// The tokens a batched matvec of `n`-token steps is built for in the twin tests: one
/// more, so a token past the step is checked untouched. An op compiles the pipelines of
/// every column block up to what it is built for (4, 8, 16 columns), the step runs one:
/// built for 19 whatever the step, the two twin tests compiled 225 pipelines (186 now),
/// a good part of them never run, each seconds of lavapipe's LLVM with a cold cache.
/// Steps of more than 4 (or 8) tokens still choose among several builds.
fn batch_built(n: usize) -> usize {
    n + 1
}

/// Elements before x in the buffers of the uniform-window twins: not a multiple of 64
/// (256 bytes, the usual uniform offset alignment), so the window starts before x.
const X_LEAD: usize = 100;

/// Runs one batched matvec against the twin; whether every dispatch took the x-sharing
/// form, whether every one read x through a uniform window, whether its 16-column blocks
/// took eight rows per invocation (`BR8`: some dispatch did), and each dispatch's columns
/// per block. With `lead`, x starts
/// that many elements into a buffer that may be bound as uniform and holds a whole
/// window after them (as the model's activations).
#[allow(clippy::too_many_arguments)]
fn check_matvec_batch(
    cfg: Config,
    c: &Case,
    built: usize,
    n: usize,
    geo: (Geometry, bool),
    act: Option<Activation>,
    seed: u64,
    lead: Option<usize>,
    tile: Option<Tile>,
) -> (bool, bool, bool, Vec<u32>) {
    use hearth::kernels::MatVecBatch;
    let g = gpu(cfg);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let (xs, ys) = (c.cols + 4, c.rows + 3); // strides wider than a row
    let x = random_vec(built * xs, seed);
    let xb = match lead {
        None => storage(&g, &x),
        Some(l) => {
            let mut lead = random_vec(l, seed + 2);
            lead.extend_from_slice(&x);
            uniform_input(&g, &lead)
        }
    };
    let gate = random_vec(built * ys, seed + 1);
    let yb = match act {
        Some(_) => storage(&g, &gate),
        None => output(&g, built * ys),
    };
    let step = StepBuffer::new(&g, Step::new(0, n as u32));
    let tok = Tokens {
        max: built as u32,
        step: &step,
    };
    let (mut xr, yr) = (strided(&xb, c.cols, xs), strided(&yb, c.rows, ys));
    xr.view.offset = lead.unwrap_or(0) as u64;
    // The host's pick of the register tile, or the one asked for.
    let op = match tile {
        None => MatVecBatch::with_geometry(&g, &t, xr, yr, tok, act, geo),
        Some(e) => MatVecBatch::with_tile(&g, &t, xr, yr, tok, act, geo, e),
    }
    .unwrap();
    // Twice without the gate (which y's update reads back): the claiming builds'
    // counters start from zero again for every dispatch.
    let times = if act.is_none() { 2 } else { 1 };
    let step = op.for_tokens(n as u32);
    kernels::run(
        &g,
        &(0..times).flat_map(|_| step.iter()).collect::<Vec<_>>(),
    );
    let all = read(&g, &yb, built * ys);
    let name = format!(
        "matvec_batch {} {}x{} n={n} {cfg:?} {geo:?} {act:?} ({} shards)",
        c.ty,
        c.rows,
        c.cols,
        t.shards.len()
    );
    let untouched = all[n * ys..].iter().zip(&gate[n * ys..]).all(|(a, b)| {
        if act.is_some() {
            a == b
        } else {
            a.is_nan()
        }
    });
    assert!(untouched, "{name}: wrote past the step's tokens");
    let mut got = Vec::new();
    let mut want = Vec::new();
    for t in 0..n {
        got.extend_from_slice(&all[t * ys..t * ys + c.rows]);
        let mut w = kernels::matvec::cpu(&c.w, c.cols, &x[t * xs..t * xs + c.cols]);
        if let Some(a) = act {
            w = kernels::gated_act::cpu(&gate[t * ys..t * ys + c.rows], &w, a);
        }
        want.extend(w);
        // The gaps between tokens' rows stay as they were.
        let gap = &all[t * ys + c.rows..(t + 1) * ys];
        assert!(
            gap.iter()
                .zip(&gate[t * ys + c.rows..(t + 1) * ys])
                .all(|(a, b)| if act.is_some() { a == b } else { a.is_nan() }),
            "{name}: wrote between tokens"
        );
    }
    assert_close(&name, &got, &want, bound(c.ty));
    let d = step;
    let all = |form: &str| d.iter().all(|d| d.kind.contains(form));
    let any = |form: &str| d.iter().any(|d| d.kind.contains(form));
    // The x-sharing form through a window claims its work at run time (`CLAIM`), from
    // counters each dispatch resets for the next (a step of per-block windows is
    // several such dispatches in one pass).
    for d in d {
        let window_share = d.kind.contains("xshare") && d.kind.contains("xuniform");
        assert_eq!(d.kind.contains("claim"), window_share, "{name}: {}", d.kind);
    }
    (
        all("xshare"),
        all("xuniform"),
        any("br8"),
        d.iter().map(block_cols).collect(),
    )
}

/// Columns per block of a batched matvec's dispatch (`cols16` in its kernel's name).
fn block_cols(d: &hearth::kernels::Dispatch) -> u32 {
    let tail = d.kind.split("_cols").nth(1).unwrap_or_default();
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{}: no columns in the name", d.kind))
}

/// The batched matvec refuses what it cannot run, by name: views that do not hold the
/// rows, a block type's x off its vec4 words, no tokens, and lanes that are not a power
/// of two.
#[test]
fn matvec_batch_refuses_bad_views() {
    use hearth::kernels::MatVecBatch;
    let g = gpu(Config::Full);
    let c = case(GgmlType::Q8_0, 8, 64, 5);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let (xb, yb) = (output(&g, 4 * 80), output(&g, 4 * 8));
    let step = StepBuffer::new(&g, Step::new(0, 4));
    let tok = |max| Tokens { max, step: &step };
    let geo = matvec::geometry(&g, c.ty);
    let err = |x: Rows, y: Rows, max: u32, geo: (Geometry, bool)| {
        MatVecBatch::with_geometry(&g, &t, x, y, tok(max), None, geo)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let y = strided(&yb, 8, 8);
    assert!(err(strided(&xb, 63, 64), y, 4, geo).contains("values per token"));
    assert!(err(strided(&xb, 64, 66), y, 4, geo).contains("multiples of 4"));
    let off = Rows {
        view: View {
            buffer: &xb,
            offset: 2,
        },
        ..strided(&xb, 64, 64)
    };
    assert!(err(off, y, 4, geo).contains("multiples of 4"));
    assert!(err(strided(&xb, 64, 64), y, 0, geo).contains("0 tokens"));
    let odd = Geometry {
        workgroup: 64,
        lanes: 3,
        rows: 1,
    };
    assert!(err(strided(&xb, 64, 64), y, 4, (odd, false)).contains("3 lanes"));
    assert!(err(strided(&xb, 64, 80), y, 5, geo).contains("needs"));
    // The same views with a good layout build.
    assert!(err(strided(&xb, 64, 64), y, 4, geo).is_empty());
}

/// BERT's position embeddings: `out[t] += W[pos + t]` for a step starting at `pos`,
/// positions past W's rows skipped, every type, sharded too.
fn check_add_positions(cfg: Config, c: &Case, pos: u32, n: usize) {
    let g = gpu(cfg);
    let t = GpuTensor::upload(&g, "w", c.ty, c.cols as u64, c.rows as u64, &c.raw).unwrap();
    let ib = storage_u32(&g, &vec![u32::MAX; n]);
    let base = random_vec(n * c.cols, pos as u64 + 3);
    let ob = storage(&g, &base);
    let step = StepBuffer::new(&g, Step::new(pos, n as u32));
    let tok = Tokens {
        max: n as u32,
        step: &step,
    };
    let out = Rows::packed(&ob, c.cols as u32);
    let op = GetRows::add_positions(&g, &t, &ib, out, tok).unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &ob, n * c.cols);
    let mut want = base.clone();
    for i in 0..n {
        let p = pos as usize + i;
        if p < c.rows {
            let row = kernels::get_rows::cpu(&c.w, c.cols, &[p as u32]);
            for (w, r) in want[i * c.cols..(i + 1) * c.cols].iter_mut().zip(row) {
                *w += r;
            }
        }
    }
    let name = format!(
        "get_rows add_positions {} {}x{} pos {pos} {cfg:?}",
        c.ty, c.rows, c.cols
    );
    assert_close(&name, &got, &want, 1e-12);
}

#[test]
fn get_rows_adds_position_rows() {
    for (i, ty) in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K]
        .into_iter()
        .enumerate()
    {
        let c = case(ty, 9, ty.block_elems(), 950 + i as u64);
        for cfg in [Config::Full, Config::Bare] {
            check_add_positions(cfg, &c, 0, 1);
            check_add_positions(cfg, &c, 2, 5);
            // Runs past the last row: those tokens are left as they were.
            check_add_positions(cfg, &c, 6, 5);
        }
    }
    let c = case(GgmlType::Q8_0, 3000, 256, 960);
    check_add_positions(Config::SmallBinding, &c, 1000, 67);
}

/// Gemma's sandwich norms folded into the decode matvecs that read their result
/// (`matvec::Sandwich`): from a sub-block's output o, `v = res + RmsNorm(o) * post`,
/// then `W (RmsNorm(v) * norm)`, against `residual_norm::cpu` and `matvec::cpu`, for
/// every type in the plain, gated and pair forms and the q/k/v stack, on the fused runs'
/// geometries and the adapter's own, with storage and with uniform-capable inputs (the
/// CPU class's uniform bindings); the writing dispatch leaves v in res_out (a NaN-filled
/// buffer: a missed element shows), a second reader with `write: false` leaves it alone,
/// res_in is never written, and a residual written over its own input, the sandwich
/// beside another fold, or o at an offset are refused.
#[test]
fn matvec_folds_sandwich() {
    use matvec::{Fold, Sandwich};
    for (i, ty) in gpu_types().into_iter().enumerate() {
        let qk = ty.block_elems();
        let cols = if ty.is_float() { 96 } else { 3 * qk };
        let (a, b) = (
            case(ty, 64, cols, 900 + i as u64),
            case(ty, 64, cols, 950 + i as u64),
        );
        // Two of the type's fused runs (consecutive ones: one with subgroups, one
        // without) and the adapter's own geometry (on lavapipe the CPU class's form);
        // the gated and the pair form take turns (cold shader compiles are most of the
        // test's time in CI).
        let runs = fused_runs_for(i)
            .into_iter()
            .take(2)
            .map(|(j, (cfg, geo))| (j, cfg, Some(geo)))
            .chain([(99, Config::Full, None)]);
        for (j, cfg, geo) in runs {
            let g = gpu(cfg);
            let upload = |c: &Case| GpuTensor::upload(&g, "w", ty, cols as u64, 64, &c.raw);
            let (ta, tb) = (upload(&a).unwrap(), upload(&b).unwrap());
            let parts = [("gate", 64, &a.raw[..]), ("up", 64, &b.raw[..])];
            let pair = GpuTensor::upload_stack(&g, ty, cols as u64, &parts)
                .unwrap()
                .expect("a pair");
            let both = pair[0].joined(&pair[1]).unwrap();
            let seed = 300 + (10 * i + j) as u64;
            // Scaled inputs, so a missing or doubled scale shows.
            let scaled = |s: u64, k: f32| -> Vec<f32> {
                random_vec(cols, s).iter().map(|v| k * v).collect()
            };
            let (res, o, post, nw) = (
                scaled(seed, 5.0),
                scaled(seed + 1, 3.0),
                scaled(seed + 2, 1.5),
                scaled(seed + 3, 2.0),
            );
            let eps = 1e-6;
            let (v, h) = kernels::residual_norm::cpu(&res, &o, Some(&post), &nw, eps);
            let (pa, pb) = (
                kernels::matvec::cpu(&a.w, cols, &h),
                kernels::matvec::cpu(&b.w, cols, &h),
            );
            let gate0 = random_vec(64, seed + 4);
            let act = [Activation::GeluTanh, Activation::Silu][(i + j) % 2];
            for uniform in [false, true] {
                let make = |d: &[f32]| match uniform {
                    true => uniform_input(&g, d),
                    false => storage(&g, d),
                };
                let (rb, ob, postb, wb) = (make(&res), make(&o), make(&post), make(&nw));
                let (out, other) = (output(&g, cols), output(&g, cols));
                let sw = |res_out, write| Fold {
                    sandwich: Some(Sandwich {
                        res_in: &rb,
                        res_out,
                        post: &postb,
                        norm: &wb,
                        eps,
                        write,
                    }),
                    ..Fold::NONE
                };
                let name = format!("sandwich {ty} {cfg:?} {geo:?} uniform {uniform}");
                let ov = View::of(&ob);
                let check = |what: &str, op: Result<MatVec, _>, y: &wgpu::Buffer, want: &[f32]| {
                    let op: MatVec = op.unwrap();
                    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
                    let got = read(&g, y, want.len());
                    assert_close(&format!("{name} {what}"), &got, want, bound(ty));
                };
                // The q/k stack (the pair's rows as one plain product), writing the
                // residual.
                let sy = output(&g, 128);
                let f = sw(&out, true);
                let op = MatVec::folded(&g, &both, (ov, View::of(&sy)), None, f, geo);
                check("stack", op, &sy, &[&pa[..], &pb[..]].concat());
                assert_close(&format!("{name} res_out"), &read(&g, &out, cols), &v, 1e-12);
                assert_eq!(read(&g, &rb, cols), res, "{name}: res_in written");
                if (i + j) % 2 == 0 {
                    // Gated (y holds the gate), not writing: `other` stays NaN.
                    let gy = storage(&g, &gate0);
                    let f = sw(&other, false);
                    let op = MatVec::folded(&g, &tb, (ov, View::of(&gy)), Some(act), f, geo);
                    check("gated", op, &gy, &kernels::gated_act::cpu(&gate0, &pb, act));
                    assert!(
                        read(&g, &other, cols).iter().all(|x| x.is_nan()),
                        "{name}: a reader that does not write wrote the residual"
                    );
                } else {
                    let py = output(&g, 64);
                    let op = MatVec::pair_folded(&g, &both, (ov, View::of(&py)), act, f, geo);
                    check("pair", op, &py, &kernels::gated_act::cpu(&pa, &pb, act));
                }
                // Refused: the residual over its input, beside the add, o at an offset.
                let y = output(&g, 64);
                let err = MatVec::folded(&g, &ta, (ov, View::of(&y)), None, sw(&rb, true), geo);
                assert!(
                    format!("{:?}", err.err()).contains("of their own"),
                    "{name}"
                );
                let with_add = Fold { add: true, ..f };
                let err = MatVec::folded(&g, &ta, (ov, View::of(&y)), None, with_add, geo);
                assert!(format!("{:?}", err.err()).contains("alone"), "{name}");
                let long = make(&[&o[..], &o[..]].concat());
                let off = View {
                    buffer: &long,
                    offset: 4,
                };
                let err = MatVec::folded(&g, &ta, (off, View::of(&y)), None, f, geo);
                assert!(
                    format!("{:?}", err.err()).contains("from its start"),
                    "{name}"
                );
            }
        }
    }
}
