//! The handful of operations the forward pass is made of, on plain f32 slices. Every sum
//! is accumulated in f64, so the oracle's own rounding stays far below any GPU kernel's.

use crate::kernels::{AttnSpec, RopeSpec};

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * w`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (ss + eps as f64).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v as f64 * scale * g as f64) as f32;
    }
}

/// LayerNorm with bias: `out = (x - mean) / sqrt(var + eps) * w + b` (BERT).
pub fn layernorm(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / (var + eps as f64).sqrt();
    for ((o, &v), (&g, &c)) in out.iter_mut().zip(x).zip(w.iter().zip(b)) {
        *o = ((v as f64 - mean) * scale * g as f64 + c as f64) as f32;
    }
}

/// In-place RMSNorm of each `w.len()`-wide chunk of `x` (per-head q/k norm).
pub fn rmsnorm_heads(x: &mut [f32], w: &[f32], eps: f32) {
    for head in x.chunks_exact_mut(w.len()) {
        let copy = head.to_vec();
        rmsnorm(head, &copy, w, eps);
    }
}

/// Dot product accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// `out = W x` for `W` stored as `out.len()` rows of `x.len()` (GGUF `[cols, rows]`).
pub fn matvec(out: &mut [f32], w: &[f32], x: &[f32]) {
    let cols = x.len();
    for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
        *o = dot(row, x) as f32;
    }
}

/// `x += b`.
pub fn add(x: &mut [f32], b: &[f32]) {
    for (v, &d) in x.iter_mut().zip(b) {
        *v += d;
    }
}

/// Rotary position embedding of every head in `x` (`[n_heads][head_dim]`) at `pos`.
///
/// Pair `i` (of `rope_dims / 2`) turns by `theta = pos * pos_scale * base^(-2i/rope_dims)
/// / freq_factors[i]`. NeoX style pairs element `i` with `i + rope_dims/2`; the original
/// (GPT-J / Llama) style pairs `2i` with `2i + 1`. Dims past `rope_dims` pass unchanged.
pub fn rope(
    x: &mut [f32],
    head_dim: usize,
    pos: usize,
    spec: &RopeSpec,
    freq_factors: Option<&[f32]>,
) {
    let (neox, m) = (spec.neox, spec.mscale as f64);
    let half = spec.dims as usize / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let ff = freq_factors.map_or(1.0, |f| f[i] as f64);
            // The base's frequency, position scale and YaRN factor (`RopeSpec::theta`).
            let theta = pos as f64 * spec.theta(i) / ff;
            let (sin, cos) = theta.sin_cos();
            let (sin, cos) = (sin * m, cos * m);
            let (a, b) = if neox {
                (i, i + half)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (head[a] as f64, head[b] as f64);
            head[a] = (x0 * cos - x1 * sin) as f32;
            head[b] = (x0 * sin + x1 * cos) as f32;
        }
    }
}

/// SiLU (swish): `x * sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    let c = (2.0 / std::f64::consts::PI).sqrt();
    (0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())) as f32
}

/// The positions a query at `pos` sees: causal, `first..=pos` with `pos - t < w` under a
/// window `w`; non-causal over an input of `len` positions, every `t < len`, or under a
/// window those with `|pos - t| <= w / 2` (llama.cpp's symmetric window).
pub fn visible(pos: usize, window: Option<u32>, noncausal: Option<usize>) -> (usize, usize) {
    let w = window.map(|w| w as usize);
    match noncausal {
        None => (w.map_or(0, |w| (pos + 1).saturating_sub(w)), pos),
        Some(len) => match w {
            None => (0, len - 1),
            Some(w) => (pos.saturating_sub(w / 2), (pos + w / 2).min(len - 1)),
        },
    }
}

/// Multi-head attention of one query against the cached keys and values of positions
/// `first..=last` (`[positions][kv_dim]`, row `t` holding position `t`; see [`visible`]),
/// writing `[n_heads * head_dim]` into `out`. Query head `h` reads KV head
/// `h / (n_heads / n_kv_heads)` (GQA).
pub fn attention(
    out: &mut [f32],
    q: &[f32],
    (k_cache, v_cache): (&[f32], &[f32]),
    (first, pos): (usize, usize),
    (spec, sinks): (&AttnSpec, Option<&[f32]>),
) {
    let (n_heads, n_kv_heads, head_dim) = (
        spec.n_heads as usize,
        spec.n_kv_heads as usize,
        spec.head_dim as usize,
    );
    let scale = spec.scale;
    let kv_dim = n_kv_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let mut scores = vec![0f64; pos + 1 - first]; // [visible positions]
    for h in 0..n_heads {
        let qh = &q[h * head_dim..(h + 1) * head_dim]; // [head_dim]
        let off = (h / group) * head_dim;
        for (s, t) in scores.iter_mut().zip(first..=pos) {
            let kt = &k_cache[t * kv_dim + off..t * kv_dim + off + head_dim];
            *s = spec.cap(dot(qh, kt) * scale as f64);
        }
        // Softmax with the maximum subtracted, so exp never overflows; a sink (gpt-oss)
        // joins the denominator only.
        let sink = sinks.map(|s| s[h] as f64);
        let max = scores
            .iter()
            .copied()
            .chain(sink)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = sink.map_or(0.0, |s| (s - max).exp());
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let oh = &mut out[h * head_dim..(h + 1) * head_dim]; // [head_dim]
        for (d, o) in oh.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for (s, t) in scores.iter().zip(first..=pos) {
                acc += s * v_cache[t * kv_dim + off + d] as f64;
            }
            *o = (acc / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dims: u32, base: f32, neox: bool) -> RopeSpec {
        RopeSpec::plain(dims, base, 1.0, neox)
    }

    fn heads(n_heads: u32, n_kv_heads: u32, head_dim: usize, window: Option<usize>) -> AttnSpec {
        AttnSpec {
            n_heads,
            n_kv_heads,
            head_dim: head_dim as u32,
            scale: 1.0,
            window: window.map(|w| w as u32),
            softcap: None,
        }
    }

    #[test]
    fn rmsnorm_of_a_constant_is_the_weight() {
        let mut out = [0.0; 4];
        rmsnorm(&mut out, &[3.0; 4], &[1.0, 2.0, 0.5, -1.0], 0.0);
        assert_eq!(out, [1.0, 2.0, 0.5, -1.0]);
    }

    #[test]
    fn rope_turns_pairs_by_the_right_angle() {
        // head_dim 4, all dims rotated: pair 0 turns by pos, pair 1 by pos / base^(1/2).
        let (pos, base) = (3usize, 100.0f32);
        let mut neox = [1.0, 1.0, 0.0, 0.0];
        rope(&mut neox, 4, pos, &spec(4, base, true), None);
        let (t0, t1): (f64, f64) = (3.0, 3.0 / 10.0);
        let want = [t0.cos(), t1.cos(), t0.sin(), t1.sin()];
        for (g, w) in neox.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{neox:?}");
        }
        let mut normal = [1.0, 0.0, 1.0, 0.0];
        rope(
            &mut normal,
            4,
            pos,
            &spec(4, base, false),
            Some(&[1.0, 2.0]),
        );
        let t1 = t1 / 2.0;
        let want = [t0.cos(), t0.sin(), t1.cos(), t1.sin()];
        for (g, w) in normal.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{normal:?}");
        }
        // Only the first rope_dims rotate.
        let mut partial = [1.0, 0.0, 5.0, 6.0];
        rope(&mut partial, 4, pos, &spec(2, base, false), None);
        assert_eq!(&partial[2..], &[5.0, 6.0]);
    }

    /// Keys all zero give equal scores, and value `t` is the one-hot `e_t`, so each output
    /// element is `1 / visible` exactly where position `t` is visible to the query.
    #[test]
    fn attention_sees_the_causal_window_and_nothing_else() {
        let (n_pos, hd) = (8usize, 8usize);
        let k = vec![0.0f32; n_pos * hd];
        let mut v = vec![0.0f32; n_pos * hd];
        for t in 0..n_pos {
            v[t * hd + t] = 1.0;
        }
        let q = vec![1.0f32; 2 * hd]; // two query heads sharing the one KV head
        let mut out = vec![0.0f32; 2 * hd];
        let cases: [(usize, Option<usize>, &[usize]); 4] = [
            (5, Some(3), &[3, 4, 5]),
            (5, None, &[0, 1, 2, 3, 4, 5]),
            (0, Some(3), &[0]),
            (7, Some(1), &[7]),
        ];
        for (pos, window, seen) in cases {
            let keys = visible(pos, window.map(|w| w as u32), None);
            attention(
                &mut out,
                &q,
                (&k, &v),
                keys,
                (&heads(2, 1, hd, window), None),
            );
            for h in 0..2 {
                for t in 0..n_pos {
                    let want = if seen.contains(&t) {
                        1.0 / seen.len() as f32
                    } else {
                        0.0
                    };
                    let got = out[h * hd + t];
                    assert!(
                        (got - want).abs() < 1e-7,
                        "pos {pos} {window:?} t {t}: {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn gqa_maps_query_heads_to_their_kv_head() {
        // 4 query heads on 2 KV heads: heads 0,1 read KV head 0 (values 1), 2,3 read 2.
        let hd = 2;
        let k = vec![0.0f32; 2 * hd];
        let v = vec![1.0, 1.0, 2.0, 2.0];
        let q = vec![0.5f32; 4 * hd];
        let mut out = vec![0.0f32; 4 * hd];
        attention(
            &mut out,
            &q,
            (&k, &v),
            (0, 0),
            (&heads(4, 2, hd, None), None),
        );
        assert_eq!(out, [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn activations_match_known_values() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}
