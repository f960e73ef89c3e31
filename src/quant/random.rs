//! Random block data for tests and benches: every quant bit random, every scale finite and
//! of a sane size, so decoders are exercised over the whole bit space without producing
//! infinities or NaNs.

use super::blocks::*;
use super::rng::Rng;
use super::GgmlType;
use std::mem::offset_of;

/// Byte offsets of a block's f16 scale fields (d, and dmin or m where the type has one).
fn f16_scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_K => &[],
        GgmlType::Q4_0 => &[offset_of!(BlockQ4_0, d)],
        GgmlType::Q4_1 => &[offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)],
        GgmlType::Q5_0 => &[offset_of!(BlockQ5_0, d)],
        GgmlType::Q5_1 => &[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)],
        GgmlType::Q8_0 => &[offset_of!(BlockQ8_0, d)],
        GgmlType::Q2_K => &[offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)],
        GgmlType::Q3_K => &[offset_of!(BlockQ3K, d)],
        GgmlType::Q4_K => &[offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)],
        GgmlType::Q5_K => &[offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)],
        GgmlType::Q6_K => &[offset_of!(BlockQ6K, d)],
        GgmlType::IQ4_NL => &[offset_of!(BlockIQ4NL, d)],
        // Its scale is an exponent byte (see `random_blocks`).
        GgmlType::MXFP4 => &[],
        GgmlType::IQ4_XS => &[offset_of!(BlockIQ4XS, d)],
    }
}

/// A scale of either sign with magnitude in [0.001, 0.1).
fn random_scale(rng: &mut Rng) -> f32 {
    let mag = rng.uniform(0.001, 0.1);
    if rng.next_u64() & 1 == 0 {
        mag
    } else {
        -mag
    }
}

/// `n_blocks` blocks of `ty` with random quant bits and finite scales d (and mins) in
/// ±[0.001, 0.1); float types get elements uniform in [-1, 1). Deterministic in `seed`.
pub fn random_blocks(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let bb = ty.block_bytes();
    let mut out = vec![0u8; n_blocks.saturating_mul(bb)];
    match ty {
        GgmlType::F32 => {
            for b in out.chunks_exact_mut(4) {
                b.copy_from_slice(&rng.uniform(-1.0, 1.0).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for b in out.chunks_exact_mut(2) {
                let v = half::f16::from_f32(rng.uniform(-1.0, 1.0));
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for b in out.chunks_exact_mut(2) {
                let v = half::bf16::from_f32(rng.uniform(-1.0, 1.0));
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            rng.fill_bytes(&mut out);
            for block in out.chunks_exact_mut(bb) {
                for &off in f16_scale_offsets(ty) {
                    let v = half::f16::from_f32(random_scale(&mut rng));
                    block[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
                if ty == GgmlType::Q8_K {
                    fix_q8_k(block, random_scale(&mut rng));
                }
                if ty == GgmlType::MXFP4 {
                    // Scales 2^-10 .. 2^-4 (values up to 6 x 2^-4 = 0.375).
                    block[0] = 117 + (rng.next_u64() % 7) as u8;
                }
            }
        }
    }
    out
}

/// Q8_K carries an f32 scale and per-16 sums of its quants; keep both consistent.
fn fix_q8_k(block: &mut [u8], d: f32) {
    let d_off = offset_of!(BlockQ8K, d);
    let qs_off = offset_of!(BlockQ8K, qs);
    let bs_off = offset_of!(BlockQ8K, bsums);
    block[d_off..d_off + 4].copy_from_slice(&d.to_le_bytes());
    for g in 0..QK_K / 16 {
        let sum: i16 = block[qs_off + 16 * g..qs_off + 16 * g + 16]
            .iter()
            .map(|&b| b as i8 as i16)
            .sum();
        let at = bs_off + 2 * g;
        block[at..at + 2].copy_from_slice(&sum.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_to_vec;

    #[test]
    fn random_blocks_decode_to_finite_sane_values() {
        for ty in GgmlType::ALL {
            let data = random_blocks(ty, 5, 42);
            assert_eq!(data.len(), 5 * ty.block_bytes(), "{ty}");
            assert_eq!(data, random_blocks(ty, 5, 42), "{ty} not deterministic");
            assert_ne!(data, random_blocks(ty, 5, 43), "{ty} ignores the seed");
            let vals = dequantize_to_vec(ty, &data).unwrap();
            // Largest possible: |d| 0.1 x 63 x 32 (Q3_K) or 0.1 x 127 x 128 (Q6_K, Q8_K).
            let bound = if ty.is_float() {
                1.0
            } else {
                0.1 * 128.0 * 128.0 + 0.1 * 63.0
            };
            for v in &vals {
                assert!(v.is_finite() && v.abs() <= bound, "{ty}: {v}");
            }
            let nonzero = vals.iter().filter(|v| **v != 0.0).count();
            assert!(nonzero > vals.len() / 2, "{ty}: only {nonzero} nonzero");
        }
    }

    #[test]
    fn q8_k_bsums_match_the_quants() {
        let data = random_blocks(GgmlType::Q8_K, 2, 9);
        for block in data.chunks_exact(GgmlType::Q8_K.block_bytes()) {
            let b: BlockQ8K = bytemuck::pod_read_unaligned(block);
            for g in 0..16 {
                let sum: i16 = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
                assert_eq!(b.bsums[g], sum);
            }
        }
    }
}
