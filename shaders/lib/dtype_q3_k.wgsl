// Q3_K, 256 elements: [hmask 32][qs 64][scales 12][f16 d][2 pad] = 28 words.
// Element e: low 2 bits as in Q2_K; bit (4*(e/128) + (e%128)/32) of hmask[e%32] set
// means +0, clear means -4. Sixteen 6-bit scales (minus 32): low 4 bits in byte k%8
// (nibble k/8), high 2 bits in byte 8 + k%4 (at shift 2*(k/4)).
#include "lib/weights.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 28u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let n = i >> 5u;
    let j = (i & 31u) >> 3u;
    let lw = i & 7u;
    let q = (w[b + 8u + 8u * n + lw] >> (2u * j)) & 0x03030303u;
    let hm = (w[b + lw] >> (4u * n + j)) & 0x01010101u;
    let k = i >> 2u;
    let lo = (wbyte(b + 24u, k & 7u) >> (4u * (k >> 3u))) & 0xFu;
    let hi = (wbyte(b + 24u, 8u + (k & 3u)) >> (2u * (k >> 2u))) & 3u;
    let scale = f32(lo | (hi << 4u)) - 32.0;
    let v = vec4<f32>(bytes4(q)) - 4.0 + 4.0 * vec4<f32>(bytes4(hm));
    return f16_lo(w[b + 27u]) * scale * v;
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
