// Q5_0: [2 pad][f16 d][qh u32][qs 16 bytes] = 6 words. Bit j of qh is the fifth bit of
// element j; value (q - 16) * d.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 6u;

fn q5_quants(b: u32, i: u32) -> vec4<f32> {
    let lo = (w[b + 2u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    let hb = (vec4<u32>(w[b + 1u] >> (4u * i)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return vec4<f32>(bytes4(lo) | (hb << vec4<u32>(4u)));
}

fn dq4(b: u32, i: u32) -> vec4<f32> {
    return f16_hi(w[b]) * (q5_quants(b, i) - 16.0);
}
