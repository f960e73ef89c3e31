//! The row and element-wise kernels (rmsnorm, rope, add/scale, gated activation, softmax,
//! argmax) against their CPU twins on random data: sizes of 1, sizes that are not
//! multiples of the workgroup, Gemma 3 270M's real sizes, with and without subgroups, and
//! steps covering fewer tokens than the op was built for (those rows must stay untouched).

mod common;

use common::{assert_close, gpu, random_vec, read, storage, Config};
use hearth::kernels::{self, NormOut, RmsNorm, Step, StepBuffer, View};

const CONFIGS: [Config; 2] = [Config::Full, Config::Bare];

/// Compares a whole buffer against the expected one: elements where `touched` holds by
/// NMSE, all others bit for bit (NaN stays NaN, inputs stay as they were).
fn check_buffer(
    case: &str,
    got: &[f32],
    want: &[f32],
    touched: impl Fn(usize) -> bool,
    bound: f64,
) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let (mut g, mut w) = (Vec::new(), Vec::new());
    for i in 0..got.len() {
        if touched(i) {
            g.push(got[i]);
            w.push(want[i]);
        } else {
            assert_eq!(
                got[i].to_bits(),
                want[i].to_bits(),
                "{case}: element {i} should be untouched (got {}, want {})",
                got[i],
                want[i]
            );
        }
    }
    assert_close(case, &g, &w, bound);
}

/// Where a token-major layout puts its rows: `offset + t * stride + [0, len)` for t < run.
fn in_rows(offset: usize, stride: usize, len: usize, run: usize) -> impl Fn(usize) -> bool {
    move |i| i >= offset && (i - offset) / stride < run && (i - offset) % stride < len
}

/// RMSNorm: the sum of squares in f32 over at most a few thousand elements loses a few
/// ulps against the f64 twin (lavapipe: at most 1.2e-14).
const NORM_BOUND: f64 = 1e-12;

#[derive(Clone, Copy, Debug)]
enum Mode {
    InPlace,
    To,
    AddTo,
}

#[allow(clippy::too_many_arguments)]
fn check_rmsnorm(
    cfg: Config,
    mode: Mode,
    width: usize,
    rows: usize,
    built: usize,
    run: usize,
    seed: u64,
) {
    let g = gpu(cfg);
    let (off, stride) = (3, rows * width + 5);
    let len = off + built * stride;
    let x = random_vec(len, seed);
    let w = random_vec(width, seed + 1);
    let eps = 1e-6;
    let xb = storage(&g, &x);
    let wb = storage(&g, &w);
    let step = StepBuffer::new(&g, Step::new(7, run as u32));
    let before = match mode {
        Mode::InPlace => x.clone(),
        Mode::To => vec![f32::NAN; len],
        Mode::AddTo => random_vec(len, seed + 2),
    };
    let ob = storage(&g, &before);
    let view = View {
        buffer: &ob,
        offset: off as u64,
    };
    let out = match mode {
        Mode::InPlace => NormOut::InPlace,
        Mode::To => NormOut::To(view),
        Mode::AddTo => NormOut::AddTo(view),
    };
    let xv = View {
        buffer: &xb,
        offset: off as u64,
    };
    let op = RmsNorm::new(
        &g,
        xv,
        out,
        &wb,
        width as u32,
        rows as u32,
        stride as u32,
        eps,
        built as u32,
        &step,
    )
    .unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(
        &g,
        if matches!(mode, Mode::InPlace) {
            &xb
        } else {
            &ob
        },
        len,
    );
    let mut want = before.clone();
    for t in 0..run {
        for r in 0..rows {
            let s = off + t * stride + r * width;
            let n = kernels::rmsnorm::cpu(&x[s..s + width], &w, eps);
            for (i, v) in n.into_iter().enumerate() {
                match mode {
                    Mode::AddTo => want[s + i] = (want[s + i] as f64 + v as f64) as f32,
                    _ => want[s + i] = v,
                }
            }
        }
    }
    let case = format!("rmsnorm {mode:?} {width}x{rows} built {built} run {run} {cfg:?}");
    check_buffer(
        &case,
        &got,
        &want,
        in_rows(off, stride, rows * width, run),
        NORM_BOUND,
    );
}

#[test]
fn rmsnorm_shapes_modes_and_configs() {
    // (width, rows per token): 1, below/above the workgroup, Gemma's hidden and its per-head q/k norms.
    let shapes = [
        (1, 1),
        (1, 3),
        (127, 1),
        (129, 2),
        (640, 1),
        (256, 4),
        (256, 1),
        (2048, 1),
    ];
    for cfg in CONFIGS {
        for mode in [Mode::InPlace, Mode::To, Mode::AddTo] {
            for (i, (w, r)) in shapes.into_iter().enumerate() {
                check_rmsnorm(cfg, mode, w, r, 1, 1, i as u64);
                check_rmsnorm(cfg, mode, w, r, 5, 3, 100 + i as u64);
            }
        }
    }
}
