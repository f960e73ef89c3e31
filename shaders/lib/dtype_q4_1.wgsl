// Q4_1: nibbles as in Q4_0 (lib/q4_nibbles.wgsl), and f16 d and m per block; value
// q * d + m. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#define DM
#include "lib/split.wgsl"
#include "lib/q4_nibbles.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    let dm = block_dm(row, row_blocks(), blk);
    return dm.x * nibbles4(quant_word(row, blk, i & 3u), i) + dm.y;
}

#ifdef MATVEC
// Matvec: its quants one vec4 load; m applied to the sum of x.

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let s = nibble_dots(quant_vec4(row, blk, 0u));
    let dm = block_dm(row, nb, blk);
    return dm.x * s.x + dm.y * s.y;
}
#endif

#ifdef BATCH8
#define RAW8
#include "lib/raw8.wgsl"

// One block: its 16 quant bytes (one vec4 word), d and m.
fn raw8(row: u32, g0: u32) -> Raw8 {
    let blk = g0 / GPB;
    let dm = block_dm(row, row_blocks(), blk);
    var r: Raw8;
    r.q0 = quant_vec4(row, blk, 0u);
    r.d = dm.x;
    r.m = dm.y;
    return r;
}

fn dq8(r: Raw8, j: u32) -> vec4<f32> {
    return r.d * nibbles4(r.q0[j & 3u], j) + r.m;
}
#endif
