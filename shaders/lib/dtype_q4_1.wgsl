// Q4_1: [f16 d][f16 m][qs 16 bytes] = 5 words; nibbles as in Q4_0; value q * d + m.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 5u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let dm = unpack2x16float(w[b]);
    let q = (w[b + 1u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    return dm.x * vec4<f32>(bytes4(q)) + dm.y;
}

#ifdef MATVEC
// Matvec: part 0 is elements 0..15 (low nibbles), part 1 elements 16..31 (high
// nibbles); d and m read once, m applied to the sum of x.
const PARTS: u32 = 2u;

fn dot_part(b: u32, part: u32, e: u32) -> f32 {
    let dm = unpack2x16float(w[b]);
    let sh = 4u * part;
    let x0 = e + 16u * part;
    var s = 0.0;
    var sx = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let xv = xv4(x0 + 4u * j);
        s += dot(vec4<f32>(bytes4((w[b + 1u + j] >> sh) & 0x0F0F0F0Fu)), xv);
        sx += dot(xv, vec4<f32>(1.0));
    }
    return dm.x * s + dm.y * sx;
}
#endif
