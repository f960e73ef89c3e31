// Q4_K, 256 elements: [f16 d][f16 dmin][scales 12][qs 128] = 36 words. Four chunks of
// 64: qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high nibble);
// sub-block s = e/32 has a 6-bit scale and min; value d*sc*q - dmin*m.
#include "lib/weights.wgsl"
#include "lib/kquant_scales.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 36u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let s = i >> 3u;
    let q = (w[b + 4u + 8u * (i >> 4u) + (i & 7u)] >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, s);
    return dm.x * sm.x * vec4<f32>(bytes4(q)) - dm.y * sm.y;
}
