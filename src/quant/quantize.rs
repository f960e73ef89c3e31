//! CPU quantization: the entry point that checks lengths and picks a per-type quantizer
//! (the block quantizers live in `legacy.rs` and `k_quantize.rs`), and the normalized
//! error used to judge any lossy conversion against its source.

use super::blocks::*;
use super::dequant::QuantizeBlock;
use super::{GgmlType, QuantError};

fn blocks<B: QuantizeBlock>(src: &[f32], dst: &mut Vec<u8>) {
    dst.reserve(src.len() / B::ELEMS * std::mem::size_of::<B>());
    for chunk in src.chunks_exact(B::ELEMS) {
        dst.extend_from_slice(bytemuck::bytes_of(&B::quantize(chunk)));
    }
}

/// Whether `quantize` can produce `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    !matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q8_K | GgmlType::IQ4_NL | GgmlType::IQ4_XS
    )
}

/// Quantizes `src` (a whole number of `ty` blocks of elements) to `ty` by rounding to
/// nearest and appends the blocks to `dst`.
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut Vec<u8>) -> Result<(), QuantError> {
    if !can_quantize(ty) {
        return Err(QuantError::NoQuantizer(ty));
    }
    let be = ty.block_elems();
    if !src.len().is_multiple_of(be) {
        return Err(QuantError::BadLength {
            ty,
            what: format!(
                "{} elements is not a whole number of {be}-element blocks",
                src.len()
            ),
        });
    }
    match ty {
        GgmlType::F32 => dst.extend(src.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::F16 => dst.extend(
            src.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
        ),
        GgmlType::BF16 => dst.extend(
            src.iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()),
        ),
        GgmlType::Q4_0 => blocks::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => blocks::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => blocks::<BlockQ8_0>(src, dst),
        GgmlType::Q4_K => blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5_K => blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6_K => blocks::<BlockQ6K>(src, dst),
        GgmlType::MXFP4 => blocks::<BlockMXFP4>(src, dst),
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q8_K | GgmlType::IQ4_NL | GgmlType::IQ4_XS => {
            return Err(QuantError::NoQuantizer(ty))
        }
    }
    Ok(())
}

/// Normalized mean squared error `mse(reference, got) / mse(reference, 0)`: 0 for equal
/// slices, infinite when they differ in length, NaN if either holds a NaN.
pub fn nmse(reference: &[f32], got: &[f32]) -> f64 {
    if reference.len() != got.len() {
        return f64::INFINITY;
    }
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&a, &b) in reference.iter().zip(got) {
        err += (a as f64 - b as f64).powi(2);
        norm += (a as f64).powi(2);
    }
    if err == 0.0 {
        0.0
    } else {
        err / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::rng::Rng;
    use crate::quant::{dequantize_to_vec, random_blocks};

    /// (type, NMSE bound on standard-normal data)
    const BOUNDS: [(GgmlType, f64); 11] = [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-6),
        (GgmlType::BF16, 2e-5),
        (GgmlType::Q8_0, 1e-4),
        (GgmlType::Q6_K, 1e-3),
        (GgmlType::Q5_0, 4e-3),
        (GgmlType::Q5_1, 4e-3),
        (GgmlType::Q5_K, 4e-3),
        (GgmlType::Q4_0, 1.5e-2),
        (GgmlType::Q4_1, 1.5e-2),
        (GgmlType::Q4_K, 1.5e-2),
    ];

    #[test]
    fn round_trip_error_is_within_bounds() {
        let mut rng = Rng::new(3);
        // Normal data with a few outliers and a scaled-up stretch, 16 K-blocks.
        let mut x = rng.normal_vec(4096);
        x[17] = 6.0;
        x[1000] = -7.5;
        for v in &mut x[2048..2560] {
            *v *= 20.0;
        }
        for (ty, bound) in BOUNDS {
            let mut q = Vec::new();
            quantize(ty, &x, &mut q).unwrap();
            assert_eq!(q.len(), 4096 / ty.block_elems() * ty.block_bytes(), "{ty}");
            let back = dequantize_to_vec(ty, &q).unwrap();
            let e = nmse(&x, &back);
            assert!(e <= bound, "{ty}: NMSE {e:.3e} above {bound:.1e}");
            if ty == GgmlType::F32 {
                assert_eq!(back, x);
            }
        }
    }

    #[test]
    fn requantizing_random_blocks_is_close() {
        // Random blocks (random bits, sane scales) re-quantized to their own type.
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let x = dequantize_to_vec(ty, &random_blocks(ty, 8, 11)).unwrap();
            let mut q = Vec::new();
            quantize(ty, &x, &mut q).unwrap();
            let e = nmse(&x, &dequantize_to_vec(ty, &q).unwrap());
            assert!(e < 2e-2, "{ty}: NMSE {e:.3e}");
        }
    }

    #[test]
    fn quantize_appends_and_checks_lengths() {
        let mut dst = vec![0xaa];
        quantize(GgmlType::Q8_0, &[1.0; 32], &mut dst).unwrap();
        assert_eq!(dst.len(), 1 + 34);
        assert_eq!(dst[0], 0xaa);
        assert!(matches!(
            quantize(GgmlType::Q4_K, &[0.0; 255], &mut dst),
            Err(QuantError::BadLength { .. })
        ));
        assert_eq!(dst.len(), 35, "a failed call must not write");
        for ty in GgmlType::ALL {
            let r = quantize(ty, &vec![0.5; 256], &mut Vec::new());
            assert_eq!(r.is_ok(), can_quantize(ty), "{ty}");
            if !can_quantize(ty) {
                assert_eq!(r, Err(QuantError::NoQuantizer(ty)));
            }
        }
    }

    #[test]
    fn nmse_basics() {
        assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert_eq!(nmse(&[1.0, 1.0], &[0.0, 0.0]), 1.0);
        assert_eq!(nmse(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }
}
