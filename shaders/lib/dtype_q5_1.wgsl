// Q5_1: [f16 d][f16 m][qh u32][qs 16 bytes] = 6 words; quants as in Q5_0; q * d + m.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 6u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let dm = unpack2x16float(w[b]);
    let lo = (w[b + 2u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    let hb = (vec4<u32>(w[b + 1u] >> (4u * i)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return dm.x * vec4<f32>(bytes4(lo) | (hb << vec4<u32>(4u))) + dm.y;
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
