//! The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): decoders and
//! ggml's reference round-to-nearest quantizers. In all the 4- and 5-bit ones, byte j of
//! `qs` holds element j in its low nibble and element j + 16 in its high nibble.

use super::blocks::*;
use super::dequant::{Block, QuantizeBlock};
use super::GgmlType;
use half::f16;

/// Element j's nibble in a 16-byte `qs` of a 32-element block.
pub(super) fn nibble(qs: &[u8; 16], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    }
}

/// Packs 32 values (each below 16 after masking) into the 16-byte nibble layout.
fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4))
}

/// Packs the fifth bits of 32 five-bit values into ggml's `qh` bytes.
fn pack_high_bits(q: &[u8; 32]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= u32::from((v >> 4) & 1) << j;
    }
    qh.to_le_bytes()
}

/// The value of largest magnitude, keeping its sign (the first one on ties, as ggml).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Q4_0 or Q5_0 blocks as Q8_0 blocks of the same values: each block keeps its scale d,
/// and each element's quant, recentred (q - 8 or q - 16), fits a signed byte, so every
/// value is unchanged (`d * (q - c)` either way). `None` for other types or for bytes
/// that are not whole blocks. Lets a stack of mixed 32-element types share one buffer
/// and one kernel (see `model::weights`).
pub fn widen_to_q8_0(ty: GgmlType, src: &[u8]) -> Option<Vec<u8>> {
    let bytes = ty.block_bytes();
    if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0) || !src.len().is_multiple_of(bytes) {
        return None;
    }
    let mut out = Vec::with_capacity(src.len() / bytes * std::mem::size_of::<BlockQ8_0>());
    for b in src.chunks_exact(bytes) {
        let (d, q): (f16, [i8; QK]) = match ty {
            GgmlType::Q4_0 => {
                let b: BlockQ4_0 = bytemuck::pod_read_unaligned(b);
                (b.d, std::array::from_fn(|j| nibble(&b.qs, j) as i8 - 8))
            }
            _ => {
                let b: BlockQ5_0 = bytemuck::pod_read_unaligned(b);
                let qh = b.qh();
                (
                    b.d,
                    std::array::from_fn(|j| {
                        (nibble(&b.qs, j) | (((qh >> j) & 1) as u8) << 4) as i8 - 16
                    }),
                )
            }
        };
        out.extend_from_slice(bytemuck::bytes_of(&BlockQ8_0 { d, qs: q }));
    }
    Some(out)
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, o) in out.iter_mut().enumerate() {
            *o = d * (nibble(&self.qs, j) as i32 - 8) as f32;
        }
    }
}

impl QuantizeBlock for BlockQ4_0 {
    fn quantize(x: &[f32]) -> Self {
        // The extreme value maps to -8 exactly, so the other sign gets 7 steps and its
        // extreme is clamped, the price of using all 16 levels.
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 8.5) as u8).min(15));
        Self {
            d: f16::from_f32(d),
            qs: pack_nibbles(&q),
        }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, o) in out.iter_mut().enumerate() {
            *o = d * nibble(&self.qs, j) as f32 + m;
        }
    }
}

impl QuantizeBlock for BlockQ4_1 {
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8).min(15));
        Self {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: pack_nibbles(&q),
        }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = self.qh();
        for (j, o) in out.iter_mut().enumerate() {
            let q = nibble(&self.qs, j) | (((qh >> j) & 1) as u8) << 4;
            *o = d * (q as i32 - 16) as f32;
        }
    }
}

impl QuantizeBlock for BlockQ5_0 {
    fn quantize(x: &[f32]) -> Self {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 16.5) as u8).min(31));
        Self {
            d: f16::from_f32(d),
            qh: pack_high_bits(&q),
            qs: pack_nibbles(&q),
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let qh = self.qh();
        for (j, o) in out.iter_mut().enumerate() {
            let q = nibble(&self.qs, j) | (((qh >> j) & 1) as u8) << 4;
            *o = d * q as f32 + m;
        }
    }
}

impl QuantizeBlock for BlockQ5_1 {
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8).min(31));
        Self {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh: pack_high_bits(&q),
            qs: pack_nibbles(&q),
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

impl QuantizeBlock for BlockQ8_0 {
    fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = inverse(d);
        // `round` is C's roundf (half away from zero), as in ggml's reference quantizer.
        Self {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|j| (x[j] * id).round() as i8),
        }
    }
}

impl Block for BlockMXFP4 {
    const TYPE: GgmlType = GgmlType::MXFP4;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = e8m0_half(self.e);
        for (j, o) in out.iter_mut().enumerate() {
            *o = d * KVALUES_MXFP4[nibble(&self.qs, j) as usize] as f32;
        }
    }
}

impl QuantizeBlock for BlockMXFP4 {
    /// gguf-py's rule: e = floor(log2(amax)) - 2 + 127 (0 for an all-zero block), then
    /// each value the nearest code (the first of equals).
    fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0).clamp(0.0, 255.0) as u8
        } else {
            0
        };
        let d = e8m0_half(e);
        let code = |v: f32| -> u8 {
            let mut best = 0;
            for (i, &k) in KVALUES_MXFP4.iter().enumerate() {
                if (d * k as f32 - v).abs() < (d * KVALUES_MXFP4[best] as f32 - v).abs() {
                    best = i;
                }
            }
            best as u8
        };
        Self {
            e,
            qs: std::array::from_fn(|j| code(x[j]) | (code(x[j + 16]) << 4)),
        }
    }
}

impl Block for BlockIQ4NL {
    const TYPE: GgmlType = GgmlType::IQ4_NL;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, o) in out.iter_mut().enumerate() {
            *o = d * KVALUES_IQ4NL[nibble(&self.qs, j) as usize] as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Widened Q4_0 and Q5_0 blocks decode to exactly the values of the originals (random
    /// blocks, every quant and scale sign), and other types or partial blocks are refused.
    #[test]
    fn widened_blocks_keep_every_value() {
        use crate::quant::{dequantize_to_vec, random_blocks};
        for ty in [GgmlType::Q4_0, GgmlType::Q5_0] {
            let src = random_blocks(ty, 64, 7);
            let wide = widen_to_q8_0(ty, &src).unwrap();
            assert_eq!(wide.len(), 64 * 34);
            let (a, b) = (
                dequantize_to_vec(ty, &src).unwrap(),
                dequantize_to_vec(GgmlType::Q8_0, &wide).unwrap(),
            );
            assert!(a.iter().any(|&v| v < 0.0) && a.iter().any(|&v| v > 0.0));
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty}"
            );
            assert!(
                widen_to_q8_0(ty, &src[1..]).is_none(),
                "{ty}: a partial block"
            );
        }
        let q41 = random_blocks(GgmlType::Q4_1, 2, 1);
        assert!(widen_to_q8_0(GgmlType::Q4_1, &q41).is_none());
    }

    #[test]
    fn mxfp4_decodes_and_quantizes_by_the_spec() {
        // e = 127: scale 1, values the E2M1 codes; low nibbles first, then high.
        let mut b = BlockMXFP4::zeroed();
        b.e = 127;
        for j in 0..16 {
            b.qs[j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut got = [0f32; 32];
        b.dequantize(&mut got);
        let e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for j in 0..8 {
            assert_eq!(got[j], e2m1[j]);
            assert_eq!(got[j + 8], -e2m1[j]);
        }
        assert_eq!(got[16], -6.0);
        assert_eq!(e8m0_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_half(200), 2f32.powi(72));
        // Quantizing: amax 6 -> e = floor(log2 6) - 2 + 127 = 127, so codes are exact.
        let x: Vec<f32> = (0..32)
            .map(|j| e2m1[j % 8] * if j % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let q = BlockMXFP4::quantize(&x);
        assert_eq!(q.e, 127);
        q.dequantize(&mut got);
        assert_eq!(&got[..], &x[..]);
        // Other values round to the nearest code; gguf-py's exponent leaves amax / 2^(e-127)
        // in [4, 8), so values past the largest code (6) clip: errors up to 2 units.
        let y: Vec<f32> = (0..32)
            .map(|j| ((j * 37 % 19) as f32 - 9.0) * 0.013)
            .collect();
        let q = BlockMXFP4::quantize(&y);
        q.dequantize(&mut got);
        let step = 2f32.powi(q.e as i32 - 127);
        for (a, b) in got.iter().zip(&y) {
            assert!(
                (a - b).abs() <= 2.0 * step + 1e-6,
                "{a} vs {b} (unit {step})"
            );
        }
    }
    use bytemuck::Zeroable;

    use crate::quant::dequant::decode_block as decode;

    #[test]
    fn q8_0_scale_two_over_one_to_32() {
        let b = BlockQ8_0 {
            d: f16::from_f32(2.0),
            qs: std::array::from_fn(|j| j as i8 + 1),
        };
        let want: Vec<f32> = (1..=32).map(|v| 2.0 * v as f32).collect();
        assert_eq!(decode(&b), want);
        // Through the byte-level entry point too.
        let got = super::super::dequantize_to_vec(GgmlType::Q8_0, bytemuck::bytes_of(&b));
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn q4_0_nibbles_are_split_low_then_high() {
        let mut b = BlockQ4_0::zeroed();
        b.d = f16::from_f32(0.5);
        for j in 0..16 {
            // Element j gets q = j, element j + 16 gets q = 15 - j.
            b.qs[j] = j as u8 | ((15 - j as u8) << 4);
        }
        let got = decode(&b);
        for j in 0..16 {
            assert_eq!(got[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(got[j + 16], 0.5 * (7.0 - j as f32));
        }
    }

    #[test]
    fn q5_0_and_q5_1_use_qh_bit_j_for_element_j() {
        let mut b = BlockQ5_0::zeroed();
        b.d = f16::from_f32(1.0);
        b.qh = (1u32 << 3 | 1 << 20).to_le_bytes();
        let got = decode(&b);
        assert_eq!(got[3], 0.0);
        assert_eq!(got[20], 0.0);
        assert_eq!(got[4], -16.0);

        let b1 = BlockQ5_1 {
            d: f16::from_f32(1.0),
            m: f16::from_f32(-1.0),
            qh: (1u32 << 31).to_le_bytes(),
            qs: [0xff; 16],
        };
        let got = decode(&b1);
        assert_eq!(got[31], 31.0 - 1.0);
        assert_eq!(got[0], 15.0 - 1.0);
    }

    #[test]
    fn iq4_nl_reads_the_codebook() {
        let mut b = BlockIQ4NL::zeroed();
        b.d = f16::from_f32(1.0);
        for j in 0..16 {
            b.qs[j] = j as u8 | ((15 - j as u8) << 4);
        }
        let got = decode(&b);
        for j in 0..16 {
            assert_eq!(got[j], KVALUES_IQ4NL[j] as f32);
            assert_eq!(got[j + 16], KVALUES_IQ4NL[15 - j] as f32);
        }
    }

    #[test]
    fn quantizers_hit_exact_grid_values() {
        // Values already on each grid survive a round trip unchanged.
        let x: Vec<f32> = (0..32).map(|j| (j as f32 - 16.0) * 0.25).collect();
        let q8 = BlockQ8_0::quantize(&x);
        let back = decode(&q8);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
        let x4: Vec<f32> = (0..32).map(|j| (j % 16) as f32 - 8.0).collect();
        assert_eq!(decode(&BlockQ4_0::quantize(&x4)), x4);
        let x5: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
        assert_eq!(decode(&BlockQ5_0::quantize(&x5)), x5);
        let x41: Vec<f32> = (0..32).map(|j| (j % 16) as f32 + 3.0).collect();
        assert_eq!(decode(&BlockQ4_1::quantize(&x41)), x41);
        let x51: Vec<f32> = (0..32).map(|j| j as f32 - 3.0).collect();
        assert_eq!(decode(&BlockQ5_1::quantize(&x51)), x51);
        // An all-zero block has scale 0 and decodes to zeros.
        assert_eq!(decode(&BlockQ4_0::quantize(&[0.0; 32])), vec![0.0; 32]);
    }
}
