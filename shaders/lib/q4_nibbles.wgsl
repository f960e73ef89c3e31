// The 4-bit quants of Q4_0 and Q4_1: the low nibble of byte j of a block's 16 quant
// bytes is element j, the high nibble element j + 16.

// Elements 4g..4g+3 (g in 0..7) of a block, from its quant word g & 3.
fn nibbles4(q: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(bytes4((q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu));
}

#ifdef MATVEC
#define XPRE
// Matvec: one part per block, its x preloaded (matvec.wgsl's `xpart`).
const PARTS: u32 = 1u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e, 16u);
}

// (sum of q * x, sum of x) over a block's 32 elements: the caller applies its scale and
// offset (Q4_0's -8, Q4_1's m) to the two sums.
fn nibble_dots(q: vec4<u32>) -> vec2<f32> {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(nibbles4(q[j], 0u), xpart(j)) + dot(nibbles4(q[j], 4u), xpart(4u + j));
    }
    return vec2<f32>(s, xsum.x + xsum.y);
}
#endif
