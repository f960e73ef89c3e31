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

#ifdef MATVEC
// Matvec: one part per 32 elements (half n = p/4, quarter k = p%4), the two 16-element
// scales and d read once.
const PARTS: u32 = 8u;

fn q6_group(qlw: u32, qlsh: u32, qhw: u32, qhsh: u32, lw: u32) -> vec4<f32> {
    let ql = (w[qlw + lw] >> qlsh) & 0x0F0F0F0Fu;
    let qh = (w[qhw + lw] >> qhsh) & 0x03030303u;
    return vec4<f32>(bytes4(ql | (qh << 4u))) - 32.0;
}

fn dot_part(b: u32, part: u32, e: u32) -> f32 {
    let n = part >> 2u;
    let k = part & 3u;
    let qlw = b + 16u * n + 8u * (k & 1u);
    let qlsh = 4u * (k >> 1u);
    let qhw = b + 32u + 8u * n;
    let qhsh = 2u * k;
    let x0 = e + 32u * part;
    var a0 = 0.0;
    var a1 = 0.0;
    for (var lw = 0u; lw < 4u; lw++) {
        a0 += dot(q6_group(qlw, qlsh, qhw, qhsh, lw), xv4(x0 + 4u * lw));
        a1 += dot(q6_group(qlw, qlsh, qhw, qhsh, lw + 4u), xv4(x0 + 16u + 4u * lw));
    }
    let sc0 = sbyte(wbyte(b + 48u, 2u * part));
    let sc1 = sbyte(wbyte(b + 48u, 2u * part + 1u));
    return f16_lo(w[b + 52u]) * (sc0 * a0 + sc1 * a1);
}
#endif
