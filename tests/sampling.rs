//! GPU sampling kernels against their CPU twins: penalties over a window applied in place
//! to a 262144-entry vocabulary, and the top-k over it (planted values, heavy ties, -inf
//! and NaN, small and odd widths) exactly equal to the CPU twin.

mod common;

use common::{assert_close, gpu, random_vec, read, storage, Config};
use hearth::kernels::{self, penalties, topk, Penalties, TopK, View};

const CONFIGS: [Config; 2] = [Config::Full, Config::Bare];

#[test]
fn penalties_match_the_cpu() {
    let vocab = 262_144usize;
    for cfg in CONFIGS {
        let g = gpu(cfg);
        let off = 5;
        let mut x = random_vec(off + vocab + 3, 11);
        x[off + 100] = 0.0;
        let xb = storage(&g, &x);
        let pen = Penalties::new(
            &g,
            View {
                buffer: &xb,
                offset: off as u64,
            },
            vocab as u32,
            70,
        )
        .expect("penalties");
        let window: Vec<(u32, u32)> = (0..70u32)
            .map(|i| ((i * 3739) % vocab as u32, i % 5))
            .chain([(100, 2)])
            .skip(1)
            .collect();
        pen.set(&g, &window, 1.3, 0.5, 0.25).expect("set");
        kernels::run(&g, &[&pen.dispatches[0]]);
        let mut want = x.clone();
        penalties::cpu(&mut want[off..off + vocab], &window, 1.3, 0.5, 0.25);
        let got = read(&g, &xb, x.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let touched = i >= off && window.iter().any(|w| w.0 as usize == i - off);
            if touched {
                assert_close(&format!("{cfg:?} logit {i}"), &[*a], &[*b], 1e-12);
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "{cfg:?}: element {i} untouched");
            }
        }
        // An empty window is a no-op; bad windows are refused.
        pen.set(&g, &[], 1.3, 0.5, 0.25).expect("empty");
        kernels::run(&g, &[&pen.dispatches[0]]);
        assert_eq!(read(&g, &xb, x.len()), got);
        assert!(pen.set(&g, &[(vocab as u32, 1)], 1.1, 0.0, 0.0).is_err());
        assert!(pen.set(&g, &[(1, 1), (1, 2)], 1.1, 0.0, 0.0).is_err());
        assert!(pen.set(&g, &vec![(0, 1); 71], 1.1, 0.0, 0.0).is_err());
        assert!(pen.set(&g, &[(1, 1)], 0.0, 0.0, 0.0).is_err());
    }
}

/// Runs the GPU top-k of `x` and returns (id, value) pairs, ids u32::MAX included.
fn gpu_topk(cfg: Config, x: &[f32], k: u32) -> Vec<(u32, f32)> {
    let g = gpu(cfg);
    let xb = storage(&g, x);
    let out = storage(&g, &vec![0.0; 2 * k as usize]);
    let t = TopK::new(&g, View::of(&xb), x.len() as u32, k, &out).expect("top-k");
    kernels::run(&g, &t.dispatches.iter().collect::<Vec<_>>());
    let r = read(&g, &out, 2 * k as usize);
    (0..k as usize)
        .map(|i| (r[i].to_bits(), r[k as usize + i]))
        .collect()
}

fn check_topk(case: &str, x: &[f32], k: u32) {
    let want = topk::cpu(x, k as usize);
    for cfg in CONFIGS {
        let got = gpu_topk(cfg, x, k);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.0 == w.0 && g.1.to_bits() == w.1.to_bits(),
                "{case} {cfg:?} k {k}: slot {i} got {g:?} want {w:?}"
            );
        }
        for g in &got[want.len()..] {
            assert_eq!(g.0, u32::MAX, "{case} {cfg:?} k {k}: empty slot");
        }
    }
}

#[test]
fn topk_matches_the_cpu_on_a_vocabulary() {
    let n = 262_144;
    let random = random_vec(n, 3);
    let mut planted = random_vec(n, 4);
    for (j, i) in [5usize, 1023, 1024, 77_777, 262_143]
        .into_iter()
        .enumerate()
    {
        planted[i] = 10.0 + j as f32;
    }
    // Four levels only: every top-k is decided by the index tie-break.
    let ties: Vec<f32> = random.iter().map(|v| (v * 2.0).floor()).collect();
    // Mostly -inf with a few finite values and NaN sprinkled in.
    let mut sparse = vec![f32::NEG_INFINITY; n];
    for i in (0..n).step_by(9973) {
        sparse[i] = random[i];
    }
    for i in (1..n).step_by(5003) {
        sparse[i] = f32::NAN;
    }
    for k in [1, 2, 3, 17, 40, 100, 255, 256] {
        check_topk("random", &random, k);
        check_topk("planted", &planted, k);
        check_topk("ties", &ties, k);
        check_topk("sparse -inf", &sparse, k);
    }
}

#[test]
fn topk_small_and_odd_widths() {
    for (w, k) in [(1, 1), (5, 5), (1000, 256), (1025, 3), (3000, 256)] {
        check_topk("small", &random_vec(w, w as u64), k);
    }
    let mut nan = vec![f32::NAN; 10];
    nan[4] = 1.0;
    check_topk("nan", &nan, 3);
    check_topk("all equal", &[0.5; 2049], 256);
    check_topk("signed zeros", &[0.0, -0.0, -0.0, 0.0], 4);
    let g = gpu(Config::Full);
    let xb = storage(&g, &[1.0; 8]);
    let out = storage(&g, &[0.0; 512]);
    for (w, k) in [(8, 9), (8, 0), (8, 257)] {
        assert!(TopK::new(&g, View::of(&xb), w, k, &out).is_err(), "{w} {k}");
    }
    // Past the widest vocabulary taken: refused by its width, before any buffer check.
    let wide = TopK::new(&g, View::of(&xb), (1 << 24) + 1, 1, &out).err();
    assert!(format!("{wide:?}").contains("width 16777217"), "{wide:?}");
}

/// One op built for k up to 256 serves any smaller k per run (`set_k`): the first k
/// slots are the top k, the rest empty; vocabularies past 262144 use larger groups
/// (300007 entries: groups of 19, the last one short); k outside 1..=k_max is refused.
#[test]
fn topk_k_per_run_and_large_vocabularies() {
    for cfg in CONFIGS {
        let g = gpu(cfg);
        for n in [300_007usize, 4097] {
            let mut x = random_vec(n, n as u64);
            x[n - 1] = 50.0; // in the short last group
            let xb = storage(&g, &x);
            let out = storage(&g, &[0.0; 512]);
            let t = TopK::new(&g, View::of(&xb), n as u32, 256, &out).unwrap();
            for k in [40u32, 1, 256, 7] {
                t.set_k(&g, k).unwrap();
                kernels::run(&g, &t.dispatches.iter().collect::<Vec<_>>());
                let r = read(&g, &out, 512);
                let want = topk::cpu(&x, k as usize);
                for (i, w) in want.iter().enumerate() {
                    let got = (r[i].to_bits(), r[256 + i]);
                    assert_eq!(got, *w, "{cfg:?} width {n} k {k}: slot {i}");
                }
                for (i, id) in r[k as usize..256].iter().enumerate() {
                    assert_eq!(
                        id.to_bits(),
                        u32::MAX,
                        "{cfg:?} k {k}: slot {} filled",
                        k as usize + i
                    );
                }
            }
            assert!(t.set_k(&g, 0).is_err() && t.set_k(&g, 257).is_err());
        }
    }
}

/// On a tiny model: the GPU top-k after a forward equals the CPU top-k of the read-back
/// logits and starts with the GPU argmax; penalties on the GPU match the CPU twin.
#[test]
fn model_top_k_and_penalties() {
    use hearth::gguf::GgufFile;
    use hearth::graph::{LoadOptions, Model};
    use hearth::model::{tiny::TinySpec, Arch};
    let f = GgufFile::from_bytes(TinySpec::new(Arch::Llama).build()).expect("tiny gguf");
    let opts = LoadOptions {
        context: 64,
        batch: 8,
        all_logits: false,
        sequences: 1,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(gpu(Config::Full), &f, &opts).expect("load");
    model.forward(&[1, 5, 9, 2]).expect("forward");
    let logits = pollster::block_on(model.logits()).expect("logits");
    let argmax = pollster::block_on(model.argmax()).expect("argmax");
    for k in [1, 40, 256] {
        let got = pollster::block_on(model.sample_top_k(k)).expect("top-k");
        assert_eq!(got, topk::cpu(&logits, k), "k {k}");
        assert_eq!(got[0].0, argmax);
    }
    let window = [(argmax, 2), (7, 1)];
    model
        .apply_penalties(&window, 1.5, 0.3, 0.1)
        .expect("penalties");
    let mut want = logits.clone();
    penalties::cpu(&mut want, &window, 1.5, 0.3, 0.1);
    let got = pollster::block_on(model.logits()).expect("logits");
    assert_close("penalised logits", &got, &want, 1e-12);
    let top = pollster::block_on(model.sample_top_k(40)).expect("top-k");
    assert_eq!(top, topk::cpu(&got, 40));
}
