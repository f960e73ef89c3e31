//! CPU dequantization: the per-type block decoders live next to their block kind
//! (`legacy.rs`, `k_quants.rs`); this file holds the `Block` trait they implement, the
//! float types, and the one entry point that checks lengths and picks a decoder.

use super::blocks::*;
use super::{GgmlType, QuantError};
use bytemuck::Pod;
use half::{bf16, f16};

/// A quantized block type: its ggml type and how to expand it to f32. Crate-private: its
/// methods take slices of an exact length, which only the checked entry points guarantee.
pub trait Block: Pod {
    /// The ggml type whose blocks this struct lays out.
    const TYPE: GgmlType;
    /// Elements per block.
    const ELEMS: usize;
    /// Writes the block's `ELEMS` values, in ggml's element order, to `out`.
    ///
    /// `out.len()` must be `ELEMS`; the slice-level functions guarantee it.
    fn dequantize(&self, out: &mut [f32]);
}

/// Decodes one block into a fresh vector (tests of the per-type decoders).
#[cfg(test)]
pub(crate) fn decode_block<B: Block>(b: &B) -> Vec<f32> {
    let mut out = vec![0.0; B::ELEMS];
    b.dequantize(&mut out);
    out
}

/// A block type hearth can also produce from f32 values.
pub trait QuantizeBlock: Block {
    /// Quantizes `ELEMS` values (`x.len()` must be `ELEMS`) by rounding to nearest.
    fn quantize(x: &[f32]) -> Self;
}

/// Checks that `src` holds whole blocks of `ty` and returns the element count.
pub(crate) fn elems_in(ty: GgmlType, src_len: usize) -> Result<usize, QuantError> {
    let bb = ty.block_bytes();
    if !src_len.is_multiple_of(bb) {
        return Err(QuantError::BadLength {
            ty,
            what: format!("{src_len} bytes is not a whole number of {bb}-byte blocks"),
        });
    }
    (src_len / bb)
        .checked_mul(ty.block_elems())
        .ok_or_else(|| QuantError::BadLength {
            ty,
            what: format!("{src_len} bytes overflow the element count"),
        })
}

fn blocks<B: Block>(src: &[u8], dst: &mut [f32]) {
    let size = std::mem::size_of::<B>();
    debug_assert_eq!(size, B::TYPE.block_bytes());
    for (bytes, out) in src.chunks_exact(size).zip(dst.chunks_exact_mut(B::ELEMS)) {
        // Blocks in a file are not aligned for the struct (18-byte Q4_0, …), so copy.
        let b: B = bytemuck::pod_read_unaligned(bytes);
        b.dequantize(out);
    }
}

/// Dequantizes `src`, whole blocks of `ty`, into `dst`, which must hold exactly as many
/// elements as the blocks do.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let n = elems_in(ty, src.len())?;
    if dst.len() != n {
        return Err(QuantError::BadLength {
            ty,
            what: format!(
                "{} bytes hold {n} elements but the output has room for {}",
                src.len(),
                dst.len()
            ),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (b, o) in src.chunks_exact(4).zip(dst.iter_mut()) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, o) in src.chunks_exact(2).zip(dst.iter_mut()) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (b, o) in src.chunks_exact(2).zip(dst.iter_mut()) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => blocks::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => blocks::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => blocks::<BlockQ8_0>(src, dst),
        GgmlType::Q2_K => blocks::<BlockQ2K>(src, dst),
        GgmlType::Q3_K => blocks::<BlockQ3K>(src, dst),
        GgmlType::Q4_K => blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5_K => blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6_K => blocks::<BlockQ6K>(src, dst),
        GgmlType::Q8_K => blocks::<BlockQ8K>(src, dst),
        GgmlType::IQ4_NL => blocks::<BlockIQ4NL>(src, dst),
        GgmlType::MXFP4 => blocks::<BlockMXFP4>(src, dst),
        GgmlType::IQ4_XS => blocks::<BlockIQ4XS>(src, dst),
    }
    Ok(())
}

/// Dequantizes `src`, whole blocks of `ty`, into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8]) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0.0; elems_in(ty, src.len())?];
    dequantize(ty, src, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_block<B: Block>() {
        assert_eq!(
            std::mem::size_of::<B>(),
            B::TYPE.block_bytes(),
            "{}",
            B::TYPE
        );
        assert_eq!(B::ELEMS, B::TYPE.block_elems(), "{}", B::TYPE);
    }

    #[test]
    fn block_structs_match_the_type_table() {
        check_block::<BlockQ4_0>();
        check_block::<BlockQ4_1>();
        check_block::<BlockQ5_0>();
        check_block::<BlockQ5_1>();
        check_block::<BlockQ8_0>();
        check_block::<BlockQ2K>();
        check_block::<BlockQ3K>();
        check_block::<BlockQ4K>();
        check_block::<BlockQ5K>();
        check_block::<BlockQ6K>();
        check_block::<BlockQ8K>();
        check_block::<BlockIQ4NL>();
        check_block::<BlockMXFP4>();
        check_block::<BlockIQ4XS>();
    }

    #[test]
    fn lengths_are_checked_for_every_type() {
        for ty in GgmlType::ALL {
            let bb = ty.block_bytes();
            let be = ty.block_elems();
            let src = vec![0u8; 2 * bb];
            let mut ok = vec![0.0; 2 * be];
            assert_eq!(dequantize(ty, &src, &mut ok), Ok(()), "{ty}");
            let mut short = vec![0.0; 2 * be - 1];
            assert!(dequantize(ty, &src, &mut short).is_err(), "{ty}");
            let mut long = vec![0.0; 2 * be + 1];
            assert!(dequantize(ty, &src, &mut long).is_err(), "{ty}");
            if bb > 1 {
                assert!(dequantize_to_vec(ty, &src[..bb + 1]).is_err(), "{ty}");
            }
            assert_eq!(dequantize_to_vec(ty, &[]), Ok(vec![]), "{ty}");
        }
    }

    #[test]
    fn arbitrary_bytes_and_lengths_never_panic() {
        // Raw random bytes (NaN and infinite scales included) at every length up to a few
        // blocks: each call either decodes or returns an error.
        let mut rng = crate::quant::Rng::new(5);
        let mut bytes = vec![0u8; 3 * 292 + 1];
        rng.fill_bytes(&mut bytes);
        for ty in GgmlType::ALL {
            for len in 0..bytes.len() {
                let r = dequantize_to_vec(ty, &bytes[..len]);
                assert_eq!(r.is_ok(), len % ty.block_bytes() == 0, "{ty} {len}");
            }
        }
    }

    #[test]
    fn float_types_decode_known_values() {
        let vals = [1.0f32, -2.5, 0.0, 65504.0, 0.000061035156];
        let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize_to_vec(GgmlType::F32, &f32_bytes).unwrap(), vals);

        // f16: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff (max), 2^-14 = 0x0400.
        let f16_bits: [u16; 5] = [0x3c00, 0xc100, 0x0000, 0x7bff, 0x0400];
        let bytes: Vec<u8> = f16_bits.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize_to_vec(GgmlType::F16, &bytes).unwrap(), vals);

        // bf16 is the top half of an f32: 1.0 = 0x3f80, -2.5 = 0xc020, 3.0 = 0x4040.
        let bf16_bits: [u16; 4] = [0x3f80, 0xc020, 0x4040, 0x8000];
        let bytes: Vec<u8> = bf16_bits.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = dequantize_to_vec(GgmlType::BF16, &bytes).unwrap();
        assert_eq!(got, [1.0, -2.5, 3.0, -0.0]);
        assert!(got[3].is_sign_negative());
    }
}
