//! Round-to-nearest quantizers for Q4_K, Q5_K and Q6_K. They follow the shape of ggml's
//! reference quantizers (per-sub-block scale and min, then 6- or 8-bit quantization of
//! those against one f16 super-scale) without ggml's iterative scale search: simpler, a
//! little less accurate, and good enough for tests and small models.

use super::blocks::*;
use super::dequant::QuantizeBlock;
use half::f16;

/// Round half away from zero (C's `roundf`), clamped to `lo..=hi`.
fn round_clamp(v: f32, lo: i32, hi: i32) -> i32 {
    // NaN (from a NaN input) becomes 0 through the cast, then the clamp.
    (v.round() as i32).clamp(lo, hi)
}

/// Eight 32-element sub-blocks with min and max quantized to `nmax` levels: the packed
/// 6-bit scales and mins, the super-scales, and every element's quant (0..=nmax).
struct AsymmetricK {
    d: f16,
    dmin: f16,
    scales: [u8; 12],
    q: [u8; QK_K],
}

fn quantize_asymmetric(x: &[f32], nmax: i32) -> AsymmetricK {
    let mut scale = [0.0f32; 8];
    let mut min = [0.0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let lo = sub.iter().fold(0.0f32, |a, &v| a.min(v));
        let hi = sub.iter().fold(lo, |a, &v| a.max(v));
        // Mins are subtracted (x = d sc q - dmin m with m >= 0), so the offset is the
        // sub-block minimum clamped to at most zero, as ggml does.
        scale[j] = (hi - lo) / nmax as f32;
        min[j] = -lo;
    }
    let max_scale = scale.iter().fold(0.0f32, |a, &v| a.max(v));
    let max_min = min.iter().fold(0.0f32, |a, &v| a.max(v));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls: [u8; 8] = std::array::from_fn(|j| round_clamp(scale[j] * inv_scale, 0, 63) as u8);
    let lm: [u8; 8] = std::array::from_fn(|j| round_clamp(min[j] * inv_min, 0, 63) as u8);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);

    let mut q = [0u8; QK_K];
    for (j, (sub, qsub)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        // Quantize against the scale and min the decoder will actually see.
        let dl = d.to_f32() * ls[j] as f32;
        let ml = dmin.to_f32() * lm[j] as f32;
        if dl == 0.0 {
            continue;
        }
        for (qv, &v) in qsub.iter_mut().zip(sub) {
            *qv = round_clamp((v + ml) / dl, 0, nmax) as u8;
        }
    }
    AsymmetricK {
        d,
        dmin,
        scales: pack_scale_min_k4(&ls, &lm),
        q,
    }
}

/// Packs quants (below 16 after masking) of sub-blocks 2c and 2c + 1 into chunk c.
fn pack_k_nibbles(q: &[u8; QK_K]) -> [u8; QK_K / 2] {
    std::array::from_fn(|k| {
        let (c, l) = (k / 32, k % 32);
        (q[64 * c + l] & 0x0f) | ((q[64 * c + 32 + l] & 0x0f) << 4)
    })
}

impl QuantizeBlock for BlockQ4K {
    fn quantize(x: &[f32]) -> Self {
        let a = quantize_asymmetric(x, 15);
        Self {
            d: a.d,
            dmin: a.dmin,
            scales: a.scales,
            qs: pack_k_nibbles(&a.q),
        }
    }
}

impl QuantizeBlock for BlockQ5K {
    fn quantize(x: &[f32]) -> Self {
        let a = quantize_asymmetric(x, 31);
        let mut qh = [0u8; QK_K / 8];
        for (i, &q) in a.q.iter().enumerate() {
            qh[i % 32] |= ((q >> 4) & 1) << (i / 32);
        }
        Self {
            d: a.d,
            dmin: a.dmin,
            scales: a.scales,
            qh,
            qs: pack_k_nibbles(&a.q),
        }
    }
}

/// The value of largest magnitude, keeping its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

impl QuantizeBlock for BlockQ6K {
    fn quantize(x: &[f32]) -> Self {
        // Each 16-element sub-block's extreme maps to -32, the end of the range with one
        // more level; likewise the largest sub-block scale maps to -128.
        let sub_scale: [f32; 16] =
            std::array::from_fn(|j| signed_absmax(&x[16 * j..16 * j + 16]) / -32.0);
        let d = signed_absmax(&sub_scale) / -128.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let scales: [i8; 16] =
            std::array::from_fn(|j| round_clamp(sub_scale[j] * id, -128, 127) as i8);
        let d = f16::from_f32(d);

        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for (i, &v) in x.iter().enumerate() {
            let dl = d.to_f32() * scales[i / 16] as f32;
            let q = if dl != 0.0 {
                round_clamp(v / dl, -32, 31)
            } else {
                0
            };
            let q = (q + 32) as u8;
            let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
            ql[64 * h + 32 * (s % 2) + l] |= (q & 0x0f) << (4 * (s / 2));
            qh[32 * h + l] |= (q >> 4) << (2 * s);
        }
        Self { ql, qh, scales, d }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<B: QuantizeBlock>(x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; B::ELEMS];
        B::quantize(x).dequantize(&mut out);
        out
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let z = [0.0f32; QK_K];
        assert!(round_trip::<BlockQ4K>(&z).iter().all(|&v| v == 0.0));
        assert!(round_trip::<BlockQ5K>(&z).iter().all(|&v| v == 0.0));
        assert!(round_trip::<BlockQ6K>(&z).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_constant_positive_block_keeps_its_value_roughly() {
        let x = [0.75f32; QK_K];
        for got in [
            round_trip::<BlockQ4K>(&x),
            round_trip::<BlockQ5K>(&x),
            round_trip::<BlockQ6K>(&x),
        ] {
            for v in got {
                assert!((v - 0.75).abs() < 0.02, "{v}");
            }
        }
    }

    #[test]
    fn q6_k_small_integers_are_exact() {
        // Sub-block extremes of -32 give sub-scale 1 and, all equal, integer steps.
        let x: Vec<f32> = (0..QK_K)
            .map(|i| if i % 16 == 0 { -32.0 } else { (i % 16) as f32 })
            .collect();
        assert_eq!(round_trip::<BlockQ6K>(&x), x);
    }
}
