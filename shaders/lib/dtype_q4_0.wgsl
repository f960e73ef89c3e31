// Q4_0: 16 bytes of nibbles and an f16 d per block; the low nibble of byte j is element
// j, the high nibble element j+16; value (q - 8) * d. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#include "lib/split.wgsl"

// Nibbles of group g (0..7) of a block from its quant word.
fn nibbles4(q: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(bytes4((q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu));
}

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    return block_d(row, row_blocks(), blk) * (nibbles4(quant_word(row, blk, i & 3u), i) - 8.0);
}

#ifdef MATVEC
// Matvec: one part per block, its quants one vec4 load; the -8 applied to the sum of x.
const PARTS: u32 = 1u;

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = quant_vec4(row, blk, 0u);
    var s = 0.0;
    var sx = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let lo = xv4(e + 4u * j);
        let hi = xv4(e + 16u + 4u * j);
        s += dot(nibbles4(q[j], 0u), lo) + dot(nibbles4(q[j], 4u), hi);
        sx += dot(lo + hi, vec4<f32>(1.0));
    }
    return block_d(row, nb, blk) * (s - 8.0 * sx);
}
#endif
