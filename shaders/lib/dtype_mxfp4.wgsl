// MXFP4 (gpt-oss's experts): nibbles as in Q4_0, each an E2M1 code (values doubled), and
// an E8M0 exponent byte per block, four to a word in the scale plane; value
// 2^(e - 128) * code. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form decodes both groups of each word where the word is
// loaded (lib/codebook4.wgsl's lazy_pair).
#define LAZY
#define LAZY_PAIR
#define CODEBOOK
#endif
#include "lib/split.wgsl"

// E2M1 codes, doubled: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives, times 2, as
// signed bytes (lut16_i8).
const MXFP4_TABLE: vec4<u32> = vec4<u32>(0x03020100u, 0x0C080604u, 0xFDFEFF00u, 0xF4F8FAFCu);

fn cb_lookup(q: vec4<u32>) -> vec4<f32> {
    return lut16_i8(MXFP4_TABLE, q);
}

// Half of block blk's scale, 2^(e - 128) (e < 2 gives a subnormal that a GPU may flush
// to zero: only blocks of values below 2^-125 are affected).
fn cb_d(row: u32, nb: u32, blk: u32) -> f32 {
    let w = word(scale_plane(row, nb) + blk / 4u);
    let e = (w >> (8u * (blk & 3u))) & 0xFFu;
    return ldexp(1.0, i32(e) - 128);
}

#include "lib/codebook4.wgsl"
