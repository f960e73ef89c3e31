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

#ifdef MATVEC
// Matvec: part 0 is elements 0..15 (low nibbles, qh bits 0..15), part 1 elements 16..31
// (high nibbles, qh bits 16..31); the scale and qh read once.
const PARTS: u32 = 2u;

fn dot_part(b: u32, part: u32, e: u32) -> f32 {
    let sh = 4u * part;
    let qh = w[b + 1u] >> (16u * part);
    let x0 = e + 16u * part;
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let lo = (w[b + 2u + j] >> sh) & 0x0F0F0F0Fu;
        let hb = (vec4<u32>(qh >> (4u * j)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
        let q = vec4<f32>(bytes4(lo) | (hb << vec4<u32>(4u))) - 16.0;
        s += dot(q, xv4(x0 + 4u * j));
    }
    return f16_hi(w[b]) * s;
}
#endif
