//! Argmax over rows up to a whole Gemma 3 vocabulary (262144 entries).

use super::CONFIGS;
use crate::common::{gpu, random_vec, read, storage, Config};
use hearth::kernels::{self, Argmax, View};

fn check_argmax(cfg: Config, x: &[f32], case: &str) {
    // At an odd offset (x read one value at a time) and at a multiple of 4 (as vec4
    // words where the width is one too).
    // Each in a CPU adapter's workgroup of 8 and in the others' 256.
    for off in [5, 8] {
        for cpu in [false, true] {
            kernels::with_cpu_rows(cpu, || check_argmax_at(cfg, x, case, off));
        }
    }
}

fn check_argmax_at(cfg: Config, x: &[f32], case: &str, off: usize) {
    let g = gpu(cfg);
    let mut data = random_vec(off, 1);
    data.extend_from_slice(x);
    data.push(1e30); // past the row: must be ignored
    let xb = storage(&g, &data);
    let sentinel = f32::from_bits(0xDEAD_BEEF);
    let want = kernels::argmax::cpu(x);
    // Every chunk size: a GPU's and a CPU adapter's.
    for chunk in kernels::argmax::CHUNKS {
        let ob = storage(&g, &[sentinel; 4]);
        let view = View {
            buffer: &xb,
            offset: off as u64,
        };
        let op = Argmax::with_chunk(&g, view, (x.len() as u32, 1), &ob, 2, chunk).unwrap();
        kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
        let got: Vec<u32> = read(&g, &ob, 4).iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            got[2], want,
            "argmax {case} {cfg:?} chunk {chunk} offset {off}"
        );
        for k in [0, 1, 3] {
            assert_eq!(got[k], 0xDEAD_BEEF, "argmax {case} {cfg:?} wrote out[{k}]");
        }
    }
}

#[test]
fn argmax_planted_maxima_ties_and_nan() {
    const VOCAB: usize = 262144;
    let base = random_vec(VOCAB, 7);
    let planted = |at: &[(usize, f32)]| {
        let mut x = base.clone();
        for &(i, v) in at {
            x[i] = v;
        }
        x
    };
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("random", base.clone()),
        ("last index", planted(&[(VOCAB - 1, 5.0)])),
        ("first index", planted(&[(0, 5.0)])),
        (
            "tie across workgroups",
            planted(&[(200_000, 5.0), (100, 5.0)]),
        ),
        ("tie in one workgroup", planted(&[(5001, 5.0), (5000, 5.0)])),
        (
            "NaN is never the max",
            planted(&[(3, f32::NAN), (9, 5.0), (VOCAB - 1, f32::NAN)]),
        ),
        (
            "infinity",
            planted(&[(77, f32::INFINITY), (78, f32::INFINITY)]),
        ),
        ("all equal", vec![0.5; VOCAB]),
        ("all NaN", vec![f32::NAN; 3000]),
        ("one element", vec![-3.0]),
        ("NaN then one value", vec![f32::NAN, -7.0]),
        ("not a multiple of the workgroup", random_vec(1000, 8)),
        (
            "negative",
            random_vec(4099, 9).iter().map(|v| v.abs() - 2.0).collect(),
        ),
    ];
    for cfg in CONFIGS {
        for (name, x) in &cases {
            check_argmax(cfg, x, name);
        }
    }
}

/// Several rows in one op (a batched step's logits): each row's argmax lands at its own
/// index whatever the others hold, including a row whose maximum sits where another
/// row's would, an all-NaN row and a tie; nothing else of out is written.
#[test]
fn argmax_rows_each_their_own() {
    let width = 3000usize;
    let rows = 5usize;
    let mut x = random_vec(width * rows, 11);
    x[17] = 9.0; // row 0
    x[width + 17] = -9.0; // row 1: not where row 0's maximum is
    x[width + 2999] = 8.0;
    for v in &mut x[2 * width..3 * width] {
        *v = f32::NAN; // row 2
    }
    x[3 * width + 100] = 7.0; // row 3: a tie, the lower index wins
    x[3 * width + 2500] = 7.0;
    let off = 8usize;
    let mut data = random_vec(off, 2);
    data.extend_from_slice(&x);
    data.push(1e30);
    let want: Vec<u32> = x.chunks(width).map(kernels::argmax::cpu).collect();
    assert_eq!(want[..4], [17, 2999, u32::MAX, 100]);
    for cfg in CONFIGS {
        for cpu in [false, true] {
            kernels::with_cpu_rows(cpu, || {
                let g = gpu(cfg);
                let xb = storage(&g, &data);
                for chunk in kernels::argmax::CHUNKS {
                    let sentinel = f32::from_bits(0xDEAD_BEEF);
                    let ob = storage(&g, &[sentinel; 8]);
                    let view = View {
                        buffer: &xb,
                        offset: off as u64,
                    };
                    let shape = (width as u32, rows as u32);
                    let op = Argmax::with_chunk(&g, view, shape, &ob, 2, chunk).unwrap();
                    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
                    let got: Vec<u32> = read(&g, &ob, 8).iter().map(|v| v.to_bits()).collect();
                    let case = format!("argmax rows {cfg:?} chunk {chunk} cpu rows {cpu}");
                    assert_eq!(got[2..7], want[..], "{case}");
                    for k in [0, 1, 7] {
                        assert_eq!(got[k], 0xDEAD_BEEF, "{case} wrote out[{k}]");
                    }
                }
            });
        }
    }
}
