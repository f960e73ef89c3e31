//! The block layouts of ggml's quantized types as `#[repr(C)]` structs, byte for byte as
//! they sit in a GGUF file. Every struct is `Pod` (no padding, any bit pattern valid), so a
//! block can be read out of an unaligned byte slice with `bytemuck::pod_read_unaligned`.
//! Fields that ggml declares as `uint32_t` or `uint16_t` but that sit at offsets where Rust
//! would pad them are byte arrays here, with little-endian accessors.
//!
//! Multi-byte fields (`f16`, `f32`, `i16`) are read in host byte order, which is little
//! endian on every target wgpu runs on (x86, ARM, wasm32).

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements in a K-quant super-block.
pub const QK_K: usize = 256;
/// Elements in a legacy (Q4_0 … Q8_0, IQ4_NL) block.
pub const QK: usize = 32;
/// IQ4_NL's and IQ4_XS's non-uniform 4-bit codebook.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Q4_0: 32 weights as `(q - 8) * d`, q a nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Block scale.
    pub d: f16,
    /// Low nibble of byte j = element j, high nibble = element j + 16.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 weights as `q * d + m`, q a nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum (offset).
    pub m: f16,
    /// Nibbles, as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 weights as `(q - 16) * d`, q five bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Block scale.
    pub d: f16,
    /// ggml's `uint32_t qh` (bit j = fifth bit of element j), as bytes: a u32 at offset 2
    /// would be padded.
    pub qh: [u8; 4],
    /// Low four bits, laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1: 32 weights as `q * d + m`, q five bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum (offset).
    pub m: f16,
    /// Fifth bits, one per element (little-endian u32).
    pub qh: [u8; 4],
    /// Low four bits, laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl BlockQ5_0 {
    /// The fifth bits as ggml's `uint32_t`.
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

impl BlockQ5_1 {
    /// The fifth bits as ggml's `uint32_t`.
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

/// Q8_0: 32 weights as `q * d`, q a signed byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Block scale.
    pub d: f16,
    /// Quants, in element order.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// IQ4_NL: 32 weights as `d * KVALUES_IQ4NL[q]`, q a nibble laid out as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4NL {
    /// Block scale.
    pub d: f16,
    /// Codebook indices.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);

/// MXFP4's 4-bit E2M1 values, doubled (the OCP microscaling spec's FP4; the block scale
/// is halved to match, see `e8m0_half`).
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// MXFP4 (gpt-oss's experts): 32 weights as `e8m0_half(e) * KVALUES_MXFP4[q]`, q a nibble
/// laid out as in Q4_0, `e` an E8M0 shared exponent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockMXFP4 {
    /// Shared exponent: the block scale is 2^(e - 127), stored halved (2^(e - 128)).
    pub e: u8,
    /// E2M1 codes.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockMXFP4>() == 17);

/// Half of the E8M0 scale `e`: 2^(e - 128), exactly (subnormal for e < 2), as ggml's
/// `ggml_e8m0_to_fp32_half`.
pub fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(((e as u32) - 1) << 23)
    }
}

/// Q2_K: 16 sub-blocks of 16, each `d * sc * q - dmin * m`, q two bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Low nibble: sub-block scale, high nibble: sub-block min.
    pub scales: [u8; QK_K / 16],
    /// Two-bit quants, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 sub-blocks of 16, each `d * (sc - 32) * q`, q three bits in -4..=3.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bits; a set bit means no -4 offset.
    pub hmask: [u8; QK_K / 8],
    /// Low two bits, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales packed into 12 bytes.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 sub-blocks of 32, each `d * sc * q - dmin * m`, q a nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins packed into 12 bytes.
    pub scales: [u8; 12],
    /// Nibbles: 32-byte chunk c holds sub-block 2c (low) and 2c + 1 (high).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q5_K: Q4_K plus a fifth bit per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Packed as in Q4_K.
    pub scales: [u8; 12],
    /// Bit j of byte l = fifth bit of element 32 j + l.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles, laid out as in Q4_K.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 sub-blocks of 16, each `d * sc * (q - 32)`, q six bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low four bits.
    pub ql: [u8; QK_K / 2],
    /// High two bits, four per byte.
    pub qh: [u8; QK_K / 4],
    /// Signed 8-bit sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Q8_K: 256 weights as `q * d`; the intermediate type of ggml's CPU dot products.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Block scale (f32, unlike every other block).
    pub d: f32,
    /// Quants, in element order.
    pub qs: [i8; QK_K],
    /// Sums of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

/// IQ4_XS: 8 sub-blocks of 32, each `d * (sc - 32) * KVALUES_IQ4NL[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4XS {
    /// Super-block scale.
    pub d: f16,
    /// High two bits of the eight 6-bit scales.
    pub scales_h: u16,
    /// Low four bits of the scales, two per byte.
    pub scales_l: [u8; QK_K / 64],
    /// Codebook indices: 16-byte chunk j holds sub-block j, low nibbles first.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

impl BlockQ3K {
    /// Sub-block `j`'s scale (`j` taken modulo 16), already offset to -32..=31.
    pub fn scale(&self, j: usize) -> i8 {
        let j = j % 16;
        let lo = (self.scales[j % 8] >> (4 * (j / 8))) & 0x0f;
        let hi = (self.scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        (lo | (hi << 4)) as i8 - 32
    }
}

impl BlockIQ4XS {
    /// Sub-block `j`'s scale (`j` taken modulo 8), already offset to -32..=31.
    pub fn scale(&self, j: usize) -> i8 {
        let j = j % 8;
        let lo = (self.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
        let hi = ((self.scales_h >> (2 * j)) & 0x03) as u8;
        (lo | (hi << 4)) as i8 - 32
    }
}

/// Sub-block `j`'s (scale, min) from Q4_K/Q5_K's 12-byte packing (ggml's
/// `get_scale_min_k4`): bytes 0..4 hold scales 0..4 and the top bits of scales 4..8,
/// bytes 4..8 the same for mins, bytes 8..12 the low nibbles of scales and mins 4..8.
/// `j` is taken modulo 8.
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    let j = j % 8;
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc, m)
    }
}

/// Packs eight 6-bit scales and mins (each 0..64) the way `get_scale_min_k4` reads them.
pub fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_packing_round_trips() {
        let sc = [0, 1, 17, 63, 62, 31, 32, 5];
        let m = [63, 0, 40, 2, 1, 48, 15, 33];
        let q = pack_scale_min_k4(&sc, &m);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (sc[j], m[j]), "sub-block {j}");
        }
    }

    #[test]
    fn q3k_scale_reads_both_halves() {
        let mut b = BlockQ3K::zeroed();
        // Scale 9: low nibble in the high half of byte 1, top bits in bits 4..6 of byte 9.
        b.scales[1] = 0xa0;
        b.scales[9] = 0b10 << 4;
        assert_eq!(b.scale(9), (0x0a | (0b10 << 4)) - 32);
        assert_eq!(b.scale(1), -32);
    }
}
