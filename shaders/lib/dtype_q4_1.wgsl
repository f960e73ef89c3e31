// Q4_1: [f16 d][f16 m][qs 16 bytes] = 5 words; nibbles as in Q4_0; value q * d + m.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 5u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let dm = unpack2x16float(w[b]);
    let q = (w[b + 1u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    return dm.x * vec4<f32>(bytes4(q)) + dm.y;
}
