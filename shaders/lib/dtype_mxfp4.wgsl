// MXFP4 (gpt-oss's experts): nibbles as in Q4_0, each an E2M1 code (values doubled), and
// an E8M0 exponent byte per block, four to a word in the scale plane; value
// 2^(e - 128) * code. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#include "lib/split.wgsl"

// E2M1 codes, doubled: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives, times 2.
var<private> MXFP4_VALUES: array<f32, 16> = array<f32, 16>(
    0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0,
    0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0,
);

fn cb_lookup(q: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(MXFP4_VALUES[q.x], MXFP4_VALUES[q.y], MXFP4_VALUES[q.z], MXFP4_VALUES[q.w]);
}

// Half of block blk's scale, 2^(e - 128) (e < 2 gives a subnormal that a GPU may flush
// to zero: only blocks of values below 2^-125 are affected).
fn cb_d(row: u32, nb: u32, blk: u32) -> f32 {
    let w = word(scale_plane(row, nb) + blk / 4u);
    let e = (w >> (8u * (blk & 3u))) & 0xFFu;
    return ldexp(1.0, i32(e) - 128);
}

#include "lib/codebook4.wgsl"
