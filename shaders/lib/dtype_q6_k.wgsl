// Q6_K, 256 elements: [ql 128][qh 64][i8 scales 16][f16 d][2 pad] = 53 words. Two halves
// of 128; in half n, quarter k (32 elements): low 4 bits from ql[64n + 32(k%2) + l]
// (nibble k/2), high 2 bits from qh[32n + l] at shift 2k; value d * scale[e/16] * (q - 32).
#include "lib/weights.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 53u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let n = i >> 5u;
    let k = (i & 31u) >> 3u;
    let lw = i & 7u;
    let ql = (w[b + 16u * n + 8u * (k & 1u) + lw] >> (4u * (k >> 1u))) & 0x0F0F0F0Fu;
    let qh = (w[b + 32u + 8u * n + lw] >> (2u * k)) & 0x03030303u;
    let q = vec4<f32>(bytes4(ql | (qh << 4u))) - 32.0;
    let sc = sbyte(wbyte(b + 48u, i >> 2u));
    return f16_lo(w[b + 52u]) * sc * q;
}
