// The 5-bit quants of Q5_0 and Q5_1: nibbles as in Q4_0 plus a qh word whose bit j is
// the fifth bit of element j.

// Elements 4g..4g+3 (g in 0..7) of a block: `q` its quant word g & 3, `qh` its high bits.
// The group's four high bits are spread to bit 4 of each byte with one multiply (the
// shifted copies of a 4-bit value at 0, 7, 14 and 21 never overlap).
fn q5_group(q: u32, qh: u32, g: u32) -> vec4<f32> {
    let lo = (q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu;
    let hi = (((qh >> (4u * g)) & 0xFu) * 0x00204081u) & 0x01010101u;
    return vec4<f32>(bytes4(lo | (hi << 4u)));
}

#ifdef MATVEC
#define XPRE
// Matvec: one part per block, its x preloaded (matvec.wgsl's `xpart`).
const PARTS: u32 = 1u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e, 16u);
}

// (sum of q * x, sum of x) over a block's 32 elements, its quants one vec4 word: the
// caller applies its scale and offset (Q5_0's -16, Q5_1's m).
fn q5_dots(q: vec4<u32>, qh: u32) -> vec2<f32> {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(q5_group(q[j], qh, j), xpart(j)) + dot(q5_group(q[j], qh, j + 4u), xpart(4u + j));
    }
    return vec2<f32>(s, xsum.x + xsum.y);
}
#endif
