// Q5_1: 5-bit quants (lib/q5_quants.wgsl), and f16 d and m per block; value q * d + m.
// Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#define DM
#define HIGH_BITS
#include "lib/split.wgsl"
#include "lib/q5_quants.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    let nb = row_blocks();
    let dm = block_dm(row, nb, blk);
    return dm.x * q5_group(quant_word(row, blk, i & 3u), block_qh(row, nb, blk), i) + dm.y;
}

#ifdef MATVEC

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let s = q5_dots(quant_vec4(row, blk, 0u), block_qh(row, nb, blk));
    let dm = block_dm(row, nb, blk);
    return dm.x * s.x + dm.y * s.y;
}
#endif

#ifdef BATCH8
#define RAW8
#include "lib/raw8.wgsl"

// One block: its 16 nibble bytes (one vec4 word), its qh word, d and m.
fn raw8(row: u32, g0: u32) -> Raw8 {
    let blk = g0 / GPB;
    let nb = row_blocks();
    let dm = block_dm(row, nb, blk);
    var r: Raw8;
    r.q0 = quant_vec4(row, blk, 0u);
    r.u = block_qh(row, nb, blk);
    r.d = dm.x;
    r.m = dm.y;
    return r;
}

fn dq8(r: Raw8, j: u32) -> vec4<f32> {
    return r.d * q5_group(r.q0[j & 3u], r.u, j) + r.m;
}
#endif
