//! The mixture-of-experts kernels against their CPU twins on random data: the expert
//! projection (MUL_MAT_ID) for every GPU block type, shared and per-slot inputs, with and
//! without per-expert biases, sharded expert tensors whose experts straddle shards, with
//! and without optional features; the router for each gating and the weighted sum.

mod common;

use common::{
    assert_close, gpu, gpu_types, output, random_vec, read, storage, storage_u32, Config,
};
use hearth::gpu::{gpu_layout, GpuTensor};
use hearth::kernels::moe::{cpu_group, cpu_route, Gating};
use hearth::kernels::{
    self, ExpertIo, MatVecId, MoeGroup, MoeRoute, MoeSum, Rows, Step, StepBuffer, Tokens, View,
};
use hearth::quant::{dequantize_to_vec, random_blocks, GgmlType, Rng};

/// Random selections: `n_used` distinct experts of `n_expert` per token.
fn selections(tokens: usize, n_used: usize, n_expert: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..tokens {
        let mut chosen: Vec<u32> = Vec::new();
        while chosen.len() < n_used {
            let e = rng.below(n_expert as u64) as u32;
            if !chosen.contains(&e) {
                chosen.push(e);
            }
        }
        out.extend(chosen);
    }
    out
}

/// One expert-projection case: `n_expert` experts of `rows` x `cols` of type `ty`, over
/// `built` tokens (the step runs `run`), `n_used` experts each.
#[allow(clippy::too_many_arguments)]
fn check_id(
    cfg: Config,
    ty: GgmlType,
    (n_expert, rows, cols): (usize, usize, usize),
    (built, run): (usize, usize),
    n_used: usize,
    (per_slot, bias): (bool, bool),
    seed: u64,
) {
    for grouped in [false, true] {
        check_id_form(
            cfg,
            ty,
            (n_expert, rows, cols),
            (built, run),
            n_used,
            (per_slot, bias, grouped),
            seed,
        );
    }
}

/// One form of the expert projection: per (slot, token) or grouped by expert.
#[allow(clippy::too_many_arguments)]
fn check_id_form(
    cfg: Config,
    ty: GgmlType,
    (n_expert, rows, cols): (usize, usize, usize),
    (built, run): (usize, usize),
    n_used: usize,
    (per_slot, bias, grouped): (bool, bool, bool),
    seed: u64,
) {
    let g = gpu(cfg);
    let total = n_expert * rows;
    let raw = random_blocks(ty, total * cols / ty.block_elems(), seed);
    let w = dequantize_to_vec(ty, &raw).unwrap();
    let t = GpuTensor::upload(&g, "experts", ty, cols as u64, total as u64, &raw).unwrap();
    let x_rows = if per_slot { built * n_used } else { built };
    let x = random_vec(4 + x_rows * cols, seed + 1);
    let sel = selections(built, n_used, n_expert, seed + 2);
    let b = random_vec(total, seed + 3);
    let (xb, sb, bb) = (storage(&g, &x), storage_u32(&g, &sel), storage(&g, &b));
    let yb = output(&g, 2 + built * n_used * rows);
    let (order, offsets) = (output(&g, built * n_used), output(&g, 2 * n_expert + 2));
    let step = StepBuffer::new(&g, Step::new(0, run as u32));
    let io = ExpertIo {
        x: View {
            buffer: &xb,
            offset: 4,
        },
        per_slot,
        y: View {
            buffer: &yb,
            offset: 2,
        },
        sel: &sb,
        bias: bias.then_some(&bb),
        grouping: Some((&order, &offsets)),
    };
    let tok = Tokens {
        max: built as u32,
        step: &step,
    };
    let shape = (rows as u32, n_used as u32);
    let op = match grouped {
        true => MatVecId::grouped(&g, &t, shape, io, tok).unwrap(),
        false => MatVecId::new(&g, &t, shape, io, tok).unwrap(),
    };
    let group = MoeGroup::new(
        &g,
        &sb,
        (&order, &offsets),
        (n_expert as u32, n_used as u32),
        tok,
    )
    .unwrap();
    let mut ds: Vec<&kernels::Dispatch> = Vec::new();
    if grouped {
        ds.extend(&group.dispatches);
    }
    ds.extend(&op.dispatches);
    kernels::run(&g, &ds);
    let got = read(&g, &yb, 2 + run * n_used * rows);
    let mut want = vec![0f32; run * n_used * rows];
    for tk in 0..run {
        for j in 0..n_used {
            let e = sel[tk * n_used + j] as usize;
            let xr = if per_slot { tk * n_used + j } else { tk };
            let xs = &x[4 + xr * cols..4 + (xr + 1) * cols];
            for r in 0..rows {
                let wr = &w[(e * rows + r) * cols..(e * rows + r + 1) * cols];
                let mut s: f64 = wr.iter().zip(xs).map(|(a, b)| *a as f64 * *b as f64).sum();
                if bias {
                    s += b[e * rows + r] as f64;
                }
                want[(tk * n_used + j) * rows + r] = s as f32;
            }
        }
    }
    let case = format!(
        "matvec_id {ty} {n_expert}x{rows}x{cols} built {built} run {run} used {n_used} per_slot {per_slot} bias {bias} grouped {grouped} {cfg:?} ({} shards)",
        t.shards.len()
    );
    assert_close(&case, &got[2..], &want, 1e-7);
    if matches!(cfg, Config::SmallBinding) {
        assert!(t.shards.len() >= 2, "{case}: not sharded");
    }
}

/// Every other type (`half` 0 or 1 of the list) in `cfg`: four tests, so that the work
/// spreads over both test threads (each case compiles its own pipeline).
fn expert_projection_every_type_in(cfg: Config, half: usize) {
    for (i, ty) in gpu_types()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == half)
    {
        let cols = 2 * ty.block_elems().max(32);
        let seed = 100 * i as u64;
        // Decode (one token), a prefill step of several, an odd row count.
        check_id(cfg, ty, (8, 16, cols), (1, 1), 2, (false, false), seed);
        check_id(cfg, ty, (4, 13, cols), (9, 7), 3, (true, true), seed + 10);
        check_id(cfg, ty, (6, 65, cols), (3, 3), 6, (false, true), seed + 20);
        // A prefill-sized step: more slots than a workgroup gathers in one round,
        // experts chosen by many tokens (more than 8 at a time).
        check_id(cfg, ty, (4, 9, cols), (40, 37), 2, (true, false), seed + 30);
    }
}

#[test]
fn expert_projection_every_type_with_f16_and_subgroups_1() {
    expert_projection_every_type_in(Config::Full, 0);
}

#[test]
fn expert_projection_every_type_with_f16_and_subgroups_2() {
    expert_projection_every_type_in(Config::Full, 1);
}

#[test]
fn expert_projection_every_type_bare_1() {
    expert_projection_every_type_in(Config::Bare, 0);
}

#[test]
fn expert_projection_every_type_bare_2() {
    expert_projection_every_type_in(Config::Bare, 1);
}

#[test]
fn expert_projection_sharded() {
    // Expert tensors over several 64 KiB shards, experts straddling shard edges.
    for ty in [GgmlType::Q8_0, GgmlType::F32, GgmlType::Q4_K] {
        let cols = 256;
        let row_bytes = (gpu_layout(ty).unwrap().row_words(cols as u64) * 4) as usize;
        // Rows per expert a little over a third of a shard's worth: three experts span
        // more than one shard.
        let rows = (common::SMALL_BINDING as usize / row_bytes) / 3 + 5;
        check_id(
            Config::SmallBinding,
            ty,
            (8, rows, cols),
            (3, 3),
            4,
            (false, true),
            7,
        );
        check_id(
            Config::SmallBinding,
            ty,
            (8, rows, cols),
            (2, 2),
            2,
            (true, false),
            8,
        );
    }
}

/// The grouping of a step's slots by expert against its twin: every expert's slots in
/// increasing order, counts as offsets; slots past the step are left out.
#[test]
fn grouping_by_expert() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for (n_expert, n_used, built, run) in [
            (8usize, 2usize, 40usize, 37usize),
            (128, 8, 64, 64),
            (4, 4, 1, 1),
        ] {
            let sel = selections(built, n_used, n_expert, n_expert as u64);
            let sb = storage_u32(&g, &sel);
            let (order, offsets) = (output(&g, built * n_used), output(&g, 2 * n_expert + 2));
            let step = StepBuffer::new(&g, Step::new(0, run as u32));
            let tok = Tokens {
                max: built as u32,
                step: &step,
            };
            let op = MoeGroup::new(
                &g,
                &sb,
                (&order, &offsets),
                (n_expert as u32, n_used as u32),
                tok,
            )
            .unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let bits = |b: &wgpu::Buffer, n: usize| -> Vec<u32> {
                read(&g, b, n).iter().map(|f| f.to_bits()).collect()
            };
            let (want_order, want_offsets) = cpu_group(&sel[..run * n_used], n_expert);
            assert_eq!(
                bits(&offsets, n_expert + 1),
                want_offsets,
                "{n_expert}/{n_used} {cfg:?}"
            );
            assert_eq!(
                bits(&order, run * n_used),
                want_order,
                "{n_expert}/{n_used} {cfg:?}"
            );
        }
    }
}

#[test]
fn router_every_gating() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for (n_expert, n_used) in [(8usize, 2usize), (128, 8), (32, 4), (5, 5)] {
            for gating in [Gating::SoftmaxNorm, Gating::Softmax, Gating::TopKSoftmax] {
                let (built, run) = (70usize, 67usize);
                let logits: Vec<f32> = random_vec(1 + built * n_expert, n_expert as u64)
                    .iter()
                    .map(|v| 3.0 * v)
                    .collect();
                let lb = storage(&g, &logits);
                let sel = output(&g, built * n_used);
                let wts = output(&g, built * n_used);
                let step = StepBuffer::new(&g, Step::new(0, run as u32));
                let rows = Rows {
                    view: View {
                        buffer: &lb,
                        offset: 1,
                    },
                    width: n_expert as u32,
                    rows: 1,
                    stride: n_expert as u32,
                };
                let tok = Tokens {
                    max: built as u32,
                    step: &step,
                };
                let op =
                    MoeRoute::new(&g, rows, (&sel, &wts), (n_used as u32, gating), tok).unwrap();
                kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
                let got_w = read(&g, &wts, run * n_used);
                let got_s: Vec<u32> = read(&g, &sel, run * n_used)
                    .iter()
                    .map(|f| f.to_bits())
                    .collect();
                let mut want_w = Vec::new();
                for t in 0..run {
                    let row = &logits[1 + t * n_expert..1 + (t + 1) * n_expert];
                    let want = cpu_route(row, n_used, gating);
                    let ids: Vec<u32> = want.iter().map(|p| p.0 as u32).collect();
                    assert_eq!(
                        &got_s[t * n_used..(t + 1) * n_used],
                        &ids[..],
                        "{gating:?} {n_expert}/{n_used} token {t} {cfg:?}"
                    );
                    want_w.extend(want.iter().map(|p| p.1));
                }
                let case = format!("router {gating:?} {n_expert}/{n_used} {cfg:?}");
                assert_close(&case, &got_w, &want_w, 1e-10);
            }
        }
    }
}

#[test]
fn weighted_sum_of_experts() {
    let g = gpu(Config::Full);
    for (width, n_used, built, run) in [(64usize, 2usize, 1usize, 1usize), (300, 8, 9, 6)] {
        for shared in [false, true] {
            let y = random_vec(3 + built * n_used * width, 1);
            let w = random_vec(built * n_used, 2);
            let gates: Vec<f32> = random_vec(built, 3).iter().map(|v| 4.0 * v).collect();
            let prior = random_vec(built * (width + 1), 4);
            let (yb, wb, gb) = (storage(&g, &y), storage(&g, &w), storage(&g, &gates));
            let out = storage(&g, &prior);
            let step = StepBuffer::new(&g, Step::new(0, run as u32));
            let rows = Rows {
                view: View::of(&out),
                width: width as u32,
                rows: 1,
                stride: width as u32 + 1,
            };
            let tok = Tokens {
                max: built as u32,
                step: &step,
            };
            let yv = View {
                buffer: &yb,
                offset: 3,
            };
            let s = shared.then_some(&gb);
            let op = MoeSum::new(&g, yv, &wb, rows, (n_used as u32, s), tok).unwrap();
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &out, built * (width + 1));
            for t in 0..run {
                let at = t * (width + 1);
                let want: Vec<f32> = (0..width)
                    .map(|i| {
                        let routed: f64 = (0..n_used)
                            .map(|j| {
                                w[t * n_used + j] as f64
                                    * y[3 + (t * n_used + j) * width + i] as f64
                            })
                            .sum();
                        // A shared expert's output (already in out) weighed by its gate.
                        let sig = 1.0 / (1.0 + (-(gates[t] as f64)).exp());
                        let kept = if shared {
                            sig * prior[at + i] as f64
                        } else {
                            0.0
                        };
                        (routed + kept) as f32
                    })
                    .collect();
                let case = format!("moe_sum {width} x {n_used} shared {shared}");
                assert_close(&case, &got[at..at + width], &want, 1e-12);
            }
        }
    }
}
