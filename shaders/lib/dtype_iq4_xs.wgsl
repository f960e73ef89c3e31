// IQ4_XS, 256 elements: [f16 d][u16 scales_h][scales_l 4 bytes][qs 128 bytes] = 34 words.
// Eight sub-blocks of 32 laid out like IQ4_NL, each with a 6-bit scale
// (low 4 bits from scales_l, high 2 from scales_h) minus 32.
#include "lib/weights.wgsl"
#include "lib/iq4_values.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 34u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let ib = i >> 3u;
    let ii = i & 7u;
    let scales_h = w[b] >> 16u;
    let ls = ((wbyte(b + 1u, ib >> 1u) >> (4u * (ib & 1u))) & 0xFu) | (((scales_h >> (2u * ib)) & 3u) << 4u);
    let dl = f16_lo(w[b]) * (f32(ls) - 32.0);
    let q = (w[b + 2u + 4u * ib + (ii & 3u)] >> (4u * (ii >> 2u))) & 0x0F0F0F0Fu;
    return dl * iq4_lookup(bytes4(q));
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
