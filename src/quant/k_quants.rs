//! Decoders for the 256-element super-block types (Q2_K … Q8_K, IQ4_XS). Each keeps
//! ggml's arithmetic order (sub-block scale first, then times the quant) so results match
//! ggml and gguf-py bit for bit. The element order is spelled out per type because it is
//! where the formats differ most: the quant bits of one element are spread over several
//! arrays.

use super::blocks::*;
use super::dequant::Block;
use super::GgmlType;

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        // Element 128 h + 32 s + l is bits 2s..2s+2 of qs[32 h + l]; sub-block = element / 16.
        for (i, o) in out.iter_mut().enumerate() {
            let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
            let q = (self.qs[32 * h + l] >> (2 * s)) & 3;
            let sc = self.scales[i / 16];
            let dl = d * (sc & 0x0f) as f32;
            let ml = dmin * (sc >> 4) as f32;
            *o = dl * q as f32 - ml;
        }
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // Low bits as in Q2_K; the high bit of element 32 k + l is bit k of hmask[l], and a
        // clear bit subtracts 4.
        for (i, o) in out.iter_mut().enumerate() {
            let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
            let lo = ((self.qs[32 * h + l] >> (2 * s)) & 3) as i8;
            let hi = (self.hmask[l] >> (i / 32)) & 1;
            let q = lo - if hi == 0 { 4 } else { 0 };
            let dl = d * self.scale(i / 16) as f32;
            *o = dl * q as f32;
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        // Sub-block j (32 elements) is the low (even j) or high (odd j) nibbles of the
        // 32-byte chunk j / 2.
        for (j, sub) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min_k4(j, &self.scales);
            let dl = d * sc as f32;
            let ml = dmin * m as f32;
            let chunk = &self.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            for (o, &b) in sub.iter_mut().zip(chunk) {
                *o = dl * ((b >> shift) & 0x0f) as f32 - ml;
            }
        }
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        // Low nibbles as in Q4_K; the fifth bit of sub-block j, element l is bit j of qh[l].
        for (j, sub) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min_k4(j, &self.scales);
            let dl = d * sc as f32;
            let ml = dmin * m as f32;
            let chunk = &self.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            for (l, o) in sub.iter_mut().enumerate() {
                let q = ((chunk[l] >> shift) & 0x0f) | (((self.qh[l] >> j) & 1) << 4);
                *o = dl * q as f32 - ml;
            }
        }
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // Element 128 h + 32 s + l: low nibble from ql[64 h + 32 (s % 2) + l] (low half for
        // s < 2, high half otherwise), high two bits from bits 2s..2s+2 of qh[32 h + l].
        for (i, o) in out.iter_mut().enumerate() {
            let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
            let lo = (self.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0f;
            let hi = (self.qh[32 * h + l] >> (2 * s)) & 3;
            let q = (lo | (hi << 4)) as i8 - 32;
            let dl = d * self.scales[i / 16] as f32;
            *o = dl * q as f32;
        }
    }
}

impl Block for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * self.d;
        }
    }
}

impl Block for BlockIQ4XS {
    const TYPE: GgmlType = GgmlType::IQ4_XS;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // Sub-block j: low nibbles of qs[16 j..16 j + 16], then their high nibbles.
        for (j, sub) in out.chunks_exact_mut(32).enumerate() {
            let dl = d * self.scale(j) as f32;
            // Each 32-element sub-block is laid out like an IQ4_NL block.
            let qs: &[u8; 16] = self.qs[16 * j..16 * j + 16]
                .try_into()
                .expect("16-byte slice");
            for (l, o) in sub.iter_mut().enumerate() {
                *o = dl * KVALUES_IQ4NL[super::legacy::nibble(qs, l) as usize] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;
    use half::f16;

    use crate::quant::dequant::decode_block as decode;

    #[test]
    fn q4_k_applies_chosen_scales_and_mins() {
        let sc = [1, 2, 3, 4, 60, 61, 62, 63];
        let m = [0, 10, 20, 30, 40, 50, 33, 17];
        let mut b = BlockQ4K::zeroed();
        b.d = f16::from_f32(0.5);
        b.dmin = f16::from_f32(0.25);
        b.scales = pack_scale_min_k4(&sc, &m);
        // Chunk c: low nibble = l % 16, high nibble = 15 - l % 16.
        for (k, q) in b.qs.iter_mut().enumerate() {
            let l = (k % 16) as u8;
            *q = l | ((15 - l) << 4);
        }
        let got = decode(&b);
        for j in 0..8 {
            for l in 0..32 {
                let q = if j % 2 == 0 { l % 16 } else { 15 - l % 16 } as f32;
                let want = 0.5 * sc[j] as f32 * q - 0.25 * m[j] as f32;
                assert_eq!(got[32 * j + l], want, "sub-block {j} element {l}");
            }
        }
    }

    #[test]
    fn q5_k_fifth_bit_is_bit_j_of_qh() {
        let mut b = BlockQ5K::zeroed();
        b.d = f16::from_f32(1.0);
        b.scales = pack_scale_min_k4(&[1; 8], &[0; 8]);
        b.qh[5] = 1 << 6;
        let got = decode(&b);
        assert_eq!(got[6 * 32 + 5], 16.0);
        assert_eq!(got.iter().filter(|&&v| v != 0.0).count(), 1);
    }

    #[test]
    fn q6_k_known_values() {
        let mut b = BlockQ6K::zeroed();
        b.d = f16::from_f32(0.5);
        for (j, s) in b.scales.iter_mut().enumerate() {
            *s = j as i8 - 8;
        }
        // All quants zero decode to -32 * scale.
        let got = decode(&b);
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, 0.5 * ((i / 16) as f32 - 8.0) * -32.0, "element {i}");
        }
        // Element 128 + 64 + 7 (h = 1, s = 2, l = 7): high nibble of ql[64 + 7], bits 4..6
        // of qh[32 + 7]. Set q = 0b10_1011 = 43 → 11 after the offset.
        b.ql[64 + 7] = 0xb0;
        b.qh[32 + 7] = 0b10 << 4;
        let i = 128 + 64 + 7;
        let got = decode(&b);
        assert_eq!(got[i], 0.5 * b.scales[i / 16] as f32 * 11.0);
    }

    #[test]
    fn q8_k_is_q_times_d() {
        let mut b = BlockQ8K::zeroed();
        b.d = 0.125;
        for (i, q) in b.qs.iter_mut().enumerate() {
            *q = (i as i32 - 128) as i8;
        }
        let got = decode(&b);
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, (i as f32 - 128.0) * 0.125);
        }
    }

    #[test]
    fn q2_k_and_q3_k_known_values() {
        let mut b = BlockQ2K::zeroed();
        b.d = f16::from_f32(1.0);
        b.dmin = f16::from_f32(0.5);
        b.scales[9] = 3 | (4 << 4);
        // Element 128 + 32 + 3 (h 1, s 1, l 3) in sub-block 10; element 144 in 9.
        b.qs[32 + 3] = 0b11 << 2;
        b.qs[32 + 16] = 0b10;
        let got = decode(&b);
        assert_eq!(got[144], 3.0 * 2.0 - 2.0);
        assert_eq!(got[145], -2.0);
        assert_eq!(got[128 + 32 + 3], 0.0);

        let mut b = BlockQ3K::zeroed();
        b.d = f16::from_f32(1.0);
        // Every scale 33 - 32 = 1: low nibbles 1, high bits 2 (=0b10 << 4 → 32).
        b.scales = [
            0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xaa, 0xaa, 0xaa, 0xaa,
        ];
        b.hmask[4] = 1 << 2; // element 64 + 4 has no -4 offset
        b.qs[4] = 0b11 << 4; // element 64 + 4 low bits 3
        let got = decode(&b);
        assert_eq!(got[68], 3.0);
        assert_eq!(got[0], -4.0);
    }

    #[test]
    fn iq4_xs_scales_and_codebook() {
        let mut b = BlockIQ4XS::zeroed();
        b.d = f16::from_f32(1.0);
        // Sub-block 3: scale 33 (low 1 in the high nibble of scales_l[1], high bits 2).
        b.scales_l[1] = 0x10;
        b.scales_h = 0b10 << 6;
        b.qs[16 * 3 + 2] = 0x5a; // element 2 → code 10, element 18 → code 5
        let got = decode(&b);
        assert_eq!(got[96 + 2], KVALUES_IQ4NL[10] as f32);
        assert_eq!(got[96 + 18], KVALUES_IQ4NL[5] as f32);
        assert_eq!(got[0], -32.0 * KVALUES_IQ4NL[0] as f32);
    }
}
