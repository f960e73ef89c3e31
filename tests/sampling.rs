//! GPU sampling kernels against their CPU twins: penalties over a window applied in place
//! to a 262144-entry vocabulary.

mod common;

use common::{assert_close, gpu, random_vec, read, storage, Config};
use hearth::kernels::{self, penalties, Penalties, View};

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
