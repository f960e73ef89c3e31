//! The row and element-wise kernels (rmsnorm, rope, add/scale, gated activation, softmax,
//! argmax) against their CPU twins on random data: sizes of 1, sizes that are not
//! multiples of the workgroup, Gemma 3 270M's real sizes, with and without subgroups, and
//! steps covering fewer tokens than the op was built for (those rows must stay untouched).

mod common;
#[path = "kernels_norm/errors.rs"]
mod errors;
#[path = "kernels_norm/vocab.rs"]
mod vocab;

use common::{assert_close, gpu, random_vec, read, storage, Config};
use hearth::kernels::{
    self, Add, GatedAct, LayerNorm, LayerNormIo, NormOut, ResidualNorm, ResidualNormIo, RmsNorm,
    Rope, RopeSpec, Rows, Scale, Step, StepBuffer, Tokens, View,
};
use hearth::model::Activation;

/// One row of `width` per token, `stride` apart, from element `offset` of `buffer`.
fn row(buffer: &wgpu::Buffer, offset: usize, width: usize, stride: usize) -> Rows<'_> {
    Rows {
        view: View {
            buffer,
            offset: offset as u64,
        },
        width: width as u32,
        rows: 1,
        stride: stride as u32,
    }
}

/// The step context of an op built for `built` tokens.
fn tokens(built: usize, step: &StepBuffer) -> Tokens<'_> {
    Tokens {
        max: built as u32,
        step,
    }
}

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
    let xr = Rows {
        view: xv,
        width: width as u32,
        rows: rows as u32,
        stride: stride as u32,
    };
    let op = RmsNorm::new(&g, xr, out, &wb, eps, tokens(built, &step)).unwrap();
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
    // (width, rows per token): 1, below/above the workgroup, Gemma's hidden and its
    // per-head q/k norms, and rows wide enough for the 512-wide workgroup.
    let shapes = [
        (1, 1),
        (1, 3),
        (127, 1),
        (129, 2),
        (640, 1),
        (256, 4),
        (256, 1),
        (2048, 1),
        (3001, 2),
    ];
    // Each in a CPU adapter's workgroup of 8 lanes and in the others' 128 and 512.
    for (cfg, cpu) in CONFIGS.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        for mode in [Mode::InPlace, Mode::To, Mode::AddTo] {
            for (i, (w, r)) in shapes.into_iter().enumerate() {
                kernels::with_cpu_rows(cpu, || {
                    check_rmsnorm(cfg, mode, w, r, 1, 1, i as u64);
                    check_rmsnorm(cfg, mode, w, r, 5, 3, 100 + i as u64);
                });
            }
        }
    }
}

/// RoPE: the angle is formed in fixed point and reduced to [-pi, pi) exactly (see
/// rope.wgsl), so the error is that of f32 sin/cos and one rotation at any position
/// (lavapipe: at most 9e-15, also at position 32767 with base 1e6). A plain f32 angle was
/// off by 2.5e-3 rad there, an NMSE of 8e-8.
const ROPE_BOUND: f64 = 1e-11;

struct RopeCase {
    heads: usize,
    head_dim: usize,
    rope_dims: usize,
    neox: bool,
    base: f32,
    pos_scale: f32,
    factors: bool,
    /// YaRN's ramp and a magnitude scale (gpt-oss-like: factor 32 over 64 positions).
    yarn: bool,
}

fn check_rope(cfg: Config, c: &RopeCase, pos: u32, built: usize, run: usize, seed: u64) {
    let g = gpu(cfg);
    let (off, stride) = (2, c.heads * c.head_dim + 3);
    let len = off + built * stride;
    let x = random_vec(len, seed);
    let xb = storage(&g, &x);
    // Llama 3's factors run from 1 to 8; starting at 0.3 also covers divisors below 1 and
    // below 1/2, which take other shifts in the shader's fixed-point division.
    let factors: Vec<f32> = (0..c.rope_dims / 2)
        .map(|i| 0.3 + 7.7 * i as f32 / (c.rope_dims / 2) as f32)
        .collect();
    let fb = storage(&g, &factors);
    // Built for another step: the op must read the step at run time.
    let step = StepBuffer::new(&g, Step::new(0, built as u32));
    let xr = Rows {
        view: View {
            buffer: &xb,
            offset: off as u64,
        },
        width: c.head_dim as u32,
        rows: c.heads as u32,
        stride: stride as u32,
    };
    let mut spec = RopeSpec::plain(c.rope_dims as u32, c.base, c.pos_scale, c.neox);
    if c.yarn {
        spec.yarn = Some(hearth::kernels::rope::YarnRamp::new(
            1.0 / 32.0,
            c.rope_dims as u32,
            c.base,
            64,
            (32.0, 1.0),
        ));
        spec.mscale = 1.3466;
    }
    let factors_buf = c.factors.then_some(&fb);
    let op = Rope::new(&g, xr, spec, factors_buf, tokens(built, &step)).unwrap();
    step.write(&g, Step::new(pos, run as u32));
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &xb, len);
    let mut want = x.clone();
    for t in 0..run {
        for h in 0..c.heads {
            let s = off + t * stride + h * c.head_dim;
            let r = kernels::rope::cpu(
                &x[s..s + c.head_dim],
                spec,
                pos + t as u32,
                c.factors.then_some(&factors[..]),
            );
            want[s..s + c.head_dim].copy_from_slice(&r);
        }
    }
    let case = format!(
        "rope {}x{} dims {} neox {} base {} scale {} factors {} pos {pos} built {built} run {run} {cfg:?}",
        c.heads, c.head_dim, c.rope_dims, c.neox, c.base, c.pos_scale, c.factors
    );
    check_buffer(
        &case,
        &got,
        &want,
        in_rows(off, stride, c.heads * c.head_dim, run),
        ROPE_BOUND,
    );
}

#[test]
fn rope_styles_positions_and_bases() {
    let rc = |heads, head_dim, rope_dims, neox, base, pos_scale, factors| RopeCase {
        heads,
        head_dim,
        rope_dims,
        neox,
        base,
        pos_scale,
        factors,
        yarn: false,
    };
    let yarn = |c: RopeCase| RopeCase { yarn: true, ..c };
    let cases = [
        // Gemma 3 q (4 heads) and k (1 head): NeoX, base 1e6 global and 1e4 local.
        rc(4, 256, 256, true, 1e6, 1.0, false),
        rc(1, 256, 256, true, 1e4, 1.0, false),
        // Llama: normal pairs; linear position scaling, one exact and one rounded.
        rc(3, 64, 64, false, 1e4, 0.25, false),
        rc(2, 64, 64, false, 5e5, 1.0 / 3.0, false),
        // Partial rotary dims, frequency factors, the smallest head.
        rc(2, 128, 32, true, 1e4, 1.0, false),
        rc(3, 128, 96, false, 5e5, 1.0, true),
        rc(2, 64, 64, true, 1e6, 1.0, true),
        rc(1, 2, 2, false, 1e4, 1.0, false),
        // YaRN: NeoX like gpt-oss, normal pairs with frequency factors.
        yarn(rc(4, 64, 64, true, 1.5e5, 1.0, false)),
        yarn(rc(2, 128, 96, false, 1e4, 1.0, true)),
    ];
    for cfg in CONFIGS {
        for (i, c) in cases.iter().enumerate() {
            let seed = 10 * i as u64;
            check_rope(cfg, c, 0, 1, 1, seed);
            check_rope(cfg, c, 17, 5, 3, seed + 1);
            check_rope(cfg, c, 32768 - 4, 4, 4, seed + 2);
        }
    }
}

/// Add and Scale: one f32 rounding (or a fused multiply-add) per element (lavapipe:
/// at most 1.3e-15).
const ADD_BOUND: f64 = 1e-13;

fn check_add(
    cfg: Config,
    width: usize,
    broadcast: bool,
    scale: f32,
    built: usize,
    run: usize,
    seed: u64,
) {
    let g = gpu(cfg);
    let (xs, ys) = (width + 1, width + 4);
    let (xoff, yoff) = (1, 3);
    let xlen = xoff + if broadcast { width } else { built * xs };
    let ylen = yoff + built * ys;
    let x = random_vec(xlen, seed);
    let y = random_vec(ylen, seed + 1);
    let (xb, yb) = (storage(&g, &x), storage(&g, &y));
    let step = StepBuffer::new(&g, Step::new(3, run as u32));
    let x_stride = if broadcast { 0 } else { xs };
    let (xr, yr) = (row(&xb, xoff, width, x_stride), row(&yb, yoff, width, ys));
    let op = Add::new(&g, xr, yr, scale, tokens(built, &step)).unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &yb, ylen);
    let mut want = y.clone();
    for t in 0..run {
        let xo = xoff + if broadcast { 0 } else { t * xs };
        let yo = yoff + t * ys;
        let r = kernels::add::cpu(&x[xo..xo + width], &y[yo..yo + width], scale);
        want[yo..yo + width].copy_from_slice(&r);
    }
    let case =
        format!("add {width} broadcast {broadcast} scale {scale} built {built} run {run} {cfg:?}");
    check_buffer(&case, &got, &want, in_rows(yoff, ys, width, run), ADD_BOUND);
}

fn check_scale(cfg: Config, width: usize, scale: f32, built: usize, run: usize, seed: u64) {
    check_scale_or_cap(cfg, width, (scale, false), (built, run), seed)
}

/// `Scale` (or with `cap`, `Scale::softcap` with the cap `scale`) against its twin.
fn check_scale_or_cap(
    cfg: Config,
    width: usize,
    (scale, cap): (f32, bool),
    (built, run): (usize, usize),
    seed: u64,
) {
    let g = gpu(cfg);
    let (off, stride) = (2, width + 3);
    let len = off + built * stride;
    // Large values (up to 40 times the cap) reach tanh's flat tails.
    let x: Vec<f32> = random_vec(len, seed).iter().map(|v| v * 40.0).collect();
    let xb = storage(&g, &x);
    let step = StepBuffer::new(&g, Step::new(0, run as u32));
    let xr = row(&xb, off, width, stride);
    let op = match cap {
        true => Scale::softcap(&g, xr, scale, tokens(built, &step)).unwrap(),
        false => Scale::new(&g, xr, scale, tokens(built, &step)).unwrap(),
    };
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &xb, len);
    let mut want = x.clone();
    for t in 0..run {
        let o = off + t * stride;
        let r = match cap {
            true => kernels::add::cpu_softcap(&x[o..o + width], scale),
            false => kernels::add::cpu_scale(&x[o..o + width], scale),
        };
        want[o..o + width].copy_from_slice(&r);
    }
    let case = format!("scale {width} by {scale} softcap {cap} built {built} run {run} {cfg:?}");
    check_buffer(
        &case,
        &got,
        &want,
        in_rows(off, stride, width, run),
        ADD_BOUND,
    );
}

#[test]
fn add_and_scale_shapes() {
    for cfg in CONFIGS {
        for (i, width) in [1, 255, 257, 640, 2048].into_iter().enumerate() {
            let seed = 10 * i as u64;
            for broadcast in [false, true] {
                check_add(cfg, width, broadcast, 1.0, 1, 1, seed);
                check_add(cfg, width, broadcast, -0.7, 5, 3, seed + 1);
            }
            check_scale(cfg, width, 0.7, 1, 1, seed + 2);
            check_scale(cfg, width, 25.3, 4, 2, seed + 3);
            check_scale_or_cap(cfg, width, (1.0, true), (1, 1), seed + 4);
            check_scale_or_cap(cfg, width, (30.0, true), (4, 3), seed + 5);
        }
        // The embedding scale of Gemma over a whole vocabulary row (softcapping's 1/c).
        check_scale(cfg, 262144, 1.0 / 30.0, 2, 1, 99);
    }
}

/// Gated activations: f32 exp/tanh against f64 over inputs up to |x| = 12, plus a few
/// far past the clamps (lavapipe: at most 3.8e-15).
const ACT_BOUND: f64 = 1e-10;

fn check_gated_act(
    cfg: Config,
    act: Activation,
    width: usize,
    built: usize,
    run: usize,
    seed: u64,
) {
    let g = gpu(cfg);
    let stride = width + 2;
    let (goff, uoff) = (1, 4);
    let mut gate: Vec<f32> = random_vec(goff + built * stride, seed)
        .iter()
        .map(|v| 12.0 * v)
        .collect();
    let mut up = random_vec(uoff + built * stride, seed + 1);
    // Inputs far past the clamps, with up scaled so they do not dominate the NMSE.
    for (k, v) in [100.0f32, -100.0, 3e4, -3e4, 1e-3, -1e-3]
        .into_iter()
        .enumerate()
    {
        if k < width {
            gate[goff + k] = v;
            up[uoff + k] = 1.0 / v.abs().max(1.0);
        }
    }
    let (gb, ub) = (storage(&g, &gate), storage(&g, &up));
    let step = StepBuffer::new(&g, Step::new(0, run as u32));
    let row = |buffer, offset: usize| row(buffer, offset, width, stride);
    let op = GatedAct::new(
        &g,
        row(&gb, goff),
        row(&ub, uoff),
        act,
        tokens(built, &step),
    )
    .unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let got = read(&g, &gb, gate.len());
    let mut want = gate.clone();
    for t in 0..run {
        let (go, uo) = (goff + t * stride, uoff + t * stride);
        let r = kernels::gated_act::cpu(&gate[go..go + width], &up[uo..uo + width], act);
        want[go..go + width].copy_from_slice(&r);
    }
    let case = format!("gated_act {act:?} {width} built {built} run {run} {cfg:?}");
    check_buffer(
        &case,
        &got,
        &want,
        in_rows(goff, stride, width, run),
        ACT_BOUND,
    );
}

#[test]
fn gated_act_every_activation() {
    for cfg in CONFIGS {
        for act in Activation::ALL {
            for (i, width) in [1, 255, 257, 2048].into_iter().enumerate() {
                check_gated_act(cfg, act, width, 1, 1, i as u64);
                check_gated_act(cfg, act, width, 5, 3, 50 + i as u64);
            }
        }
    }
}

/// The residual add fused with the next pre-norm, with and without the post-norm, against
/// its twin: x updated in place and h written for the step's tokens only. `aligned`: rows
/// start on whole vec4s (offset 4, stride width + 8), so widths that are whole vec4s take
/// the four-at-a-time form (asserted); otherwise offset 3 and stride width + 5.
fn check_residual_norm(
    cfg: Config,
    width: usize,
    post: bool,
    built: usize,
    run: usize,
    aligned: bool,
) {
    let g = gpu(cfg);
    let (off, stride) = if aligned {
        (4, width + 8)
    } else {
        (3, width + 5)
    };
    let len = off + built * stride;
    let seed = width as u64 + post as u64;
    let (x, o) = (random_vec(len, seed), random_vec(len, seed + 1));
    let (w, pw) = (random_vec(width, seed + 2), random_vec(width, seed + 3));
    let h0 = vec![f32::NAN; len];
    let (xb, ob, hb) = (storage(&g, &x), storage(&g, &o), storage(&g, &h0));
    let (wb, pwb) = (storage(&g, &w), storage(&g, &pw));
    let eps = 1e-6;
    let at = |buffer| View {
        buffer,
        offset: off as u64,
    };
    let io = ResidualNormIo {
        x: row(&xb, off, width, stride),
        o: at(&ob),
        h: at(&hb),
        post: post.then_some(&pwb),
        norm: &wb,
    };
    let step = StepBuffer::new(&g, Step::new(2, run as u32));
    let op = ResidualNorm::new(&g, io, eps, tokens(built, &step)).unwrap();
    let vec4 = op.dispatches[0].kind.contains("vec4");
    assert_eq!(
        vec4,
        aligned && width.is_multiple_of(4),
        "residual_norm {width}: {}",
        op.dispatches[0].kind
    );
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let (mut want_x, mut want_h) = (x.clone(), h0.clone());
    for t in 0..run {
        let s = off + t * stride;
        let post_w = post.then_some(&pw[..]);
        let (nx, nh) =
            kernels::residual_norm::cpu(&x[s..s + width], &o[s..s + width], post_w, &w, eps);
        want_x[s..s + width].copy_from_slice(&nx);
        want_h[s..s + width].copy_from_slice(&nh);
    }
    let case =
        format!("residual_norm {width} post {post} built {built} run {run} {cfg:?} vec4 {vec4}");
    let rows = || in_rows(off, stride, width, run);
    check_buffer(
        &format!("{case} x"),
        &read(&g, &xb, len),
        &want_x,
        rows(),
        NORM_BOUND,
    );
    check_buffer(
        &format!("{case} h"),
        &read(&g, &hb, len),
        &want_h,
        rows(),
        NORM_BOUND,
    );
}

#[test]
fn residual_norm_with_and_without_post_norm() {
    for (cfg, cpu) in CONFIGS.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        for post in [false, true] {
            for width in [1, 64, 640, 1000, 2049] {
                kernels::with_cpu_rows(cpu, || {
                    check_residual_norm(cfg, width, post, 1, 1, false);
                    check_residual_norm(cfg, width, post, 4, 3, false);
                    check_residual_norm(cfg, width, post, 4, 3, true);
                });
            }
        }
    }
}

/// BERT's LayerNorm with bias, alone and with the residual add, against its twin: x
/// normalized in place and copied to h for the step's tokens only. Rows with a large mean
/// check the two-pass variance.
fn check_layer_norm(cfg: Config, width: usize, residual: bool, built: usize, run: usize) {
    let g = gpu(cfg);
    let (off, stride) = (3, width + 5);
    let len = off + built * stride;
    let seed = 700 + width as u64 + residual as u64;
    let x: Vec<f32> = random_vec(len, seed)
        .iter()
        .map(|v| 40.0 + 3.0 * v)
        .collect();
    let o = random_vec(len, seed + 1);
    let (w, b) = (random_vec(width, seed + 2), random_vec(width, seed + 3));
    let h0 = vec![f32::NAN; len];
    let (xb, ob, hb) = (storage(&g, &x), storage(&g, &o), storage(&g, &h0));
    let (wb, bb) = (storage(&g, &w), storage(&g, &b));
    let eps = 1e-12;
    let at = |buffer| View {
        buffer,
        offset: off as u64,
    };
    let io = LayerNormIo {
        x: row(&xb, off, width, stride),
        o: residual.then(|| at(&ob)),
        h: at(&hb),
        w: &wb,
        b: &bb,
    };
    let step = StepBuffer::new(&g, Step::new(2, run as u32));
    let op = LayerNorm::new(&g, io, eps, tokens(built, &step)).unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let (mut want_x, mut want_h) = (x.clone(), h0.clone());
    for t in 0..run {
        let s = off + t * stride;
        let mut row = x[s..s + width].to_vec();
        if residual {
            for (r, v) in row.iter_mut().zip(&o[s..s + width]) {
                *r += v;
            }
        }
        let n = kernels::layer_norm::cpu(&row, &w, &b, eps);
        want_x[s..s + width].copy_from_slice(&n);
        want_h[s..s + width].copy_from_slice(&n);
    }
    let case = format!("layer_norm {width} residual {residual} built {built} run {run} {cfg:?}");
    let rows = || in_rows(off, stride, width, run);
    // A row of width 1 normalizes to its bias alone (x - mean = 0).
    let bound = 1e-9;
    check_buffer(
        &format!("{case} x"),
        &read(&g, &xb, len),
        &want_x,
        rows(),
        bound,
    );
    check_buffer(
        &format!("{case} h"),
        &read(&g, &hb, len),
        &want_h,
        rows(),
        bound,
    );
}

#[test]
fn layer_norm_with_and_without_residual() {
    for (cfg, cpu) in CONFIGS.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        for residual in [false, true] {
            for width in [1, 64, 384, 1000, 2049] {
                kernels::with_cpu_rows(cpu, || {
                    check_layer_norm(cfg, width, residual, 1, 1);
                    check_layer_norm(cfg, width, residual, 4, 3);
                });
            }
        }
    }
}

/// The ungated activation (BERT's GELU, and SiLU) in place against its twin.
fn check_plain_act(cfg: Config, act: Activation, width: usize, built: usize, run: usize) {
    let g = gpu(cfg);
    let (off, stride) = (2, width + 3);
    let mut x: Vec<f32> = random_vec(off + built * stride, 800 + width as u64)
        .iter()
        .map(|v| 8.0 * v)
        .collect();
    for (k, v) in [100.0f32, -100.0, 1e-3].into_iter().enumerate() {
        if k < width {
            x[off + k] = v / 50.0;
        }
    }
    let xb = storage(&g, &x);
    let step = StepBuffer::new(&g, Step::new(0, run as u32));
    let op = GatedAct::plain(&g, row(&xb, off, width, stride), act, tokens(built, &step)).unwrap();
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
    let mut want = x.clone();
    for t in 0..run {
        let s = off + t * stride;
        let r = kernels::gated_act::cpu_plain(&x[s..s + width], act);
        want[s..s + width].copy_from_slice(&r);
    }
    let case = format!("plain {act:?} {width} built {built} run {run} {cfg:?}");
    let got = read(&g, &xb, x.len());
    check_buffer(
        &case,
        &got,
        &want,
        in_rows(off, stride, width, run),
        ACT_BOUND,
    );
}

#[test]
fn plain_activation_gelu_and_silu() {
    for cfg in CONFIGS {
        for act in [Activation::GeluTanh, Activation::Silu] {
            for width in [1, 255, 257, 1536] {
                check_plain_act(cfg, act, width, 1, 1);
                check_plain_act(cfg, act, width, 5, 3);
            }
        }
    }
    let g = gpu(Config::Full);
    let xb = storage(&g, &[0.0; 8]);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    assert!(GatedAct::plain(
        &g,
        row(&xb, 0, 8, 8),
        Activation::SwigluOai,
        tokens(1, &step)
    )
    .is_err());
}
