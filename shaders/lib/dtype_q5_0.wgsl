// Q5_0: 5-bit quants (lib/q5_quants.wgsl) and an f16 d per block; value (q - 16) * d.
// Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#define HIGH_BITS
#include "lib/split.wgsl"
#include "lib/q5_quants.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    let nb = row_blocks();
    let q = q5_group(quant_word(row, blk, i & 3u), block_qh(row, nb, blk), i);
    return block_d(row, nb, blk) * (q - 16.0);
}

#ifdef MATVEC
// Matvec: one part per block, its quants one vec4 load; the -16 applied to the sum of x.
const PARTS: u32 = 1u;

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = quant_vec4(row, blk, 0u);
    let qh = block_qh(row, nb, blk);
    var s = 0.0;
    var sx = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let lo = xv4(e + 4u * j);
        let hi = xv4(e + 16u + 4u * j);
        s += dot(q5_group(q[j], qh, j), lo) + dot(q5_group(q[j], qh, j + 4u), hi);
        sx += dot(lo + hi, vec4<f32>(1.0));
    }
    return block_d(row, nb, blk) * (s - 16.0 * sx);
}
#endif
