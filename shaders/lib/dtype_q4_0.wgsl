// Q4_0: 16 bytes of nibbles (lib/q4_nibbles.wgsl) and an f16 d per block; value
// (q - 8) * d. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#include "lib/split.wgsl"
#include "lib/q4_nibbles.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    return block_d(row, row_blocks(), blk) * (nibbles4(quant_word(row, blk, i & 3u), i) - 8.0);
}

#ifdef MATVEC
// Matvec: its quants one vec4 load; the -8 applied to the sum of x.

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let s = nibble_dots(quant_vec4(row, blk, 0u));
    return block_d(row, nb, blk) * (s.x - 8.0 * s.y);
}
#endif

#ifdef BATCH8
#define RAW8
#include "lib/raw8.wgsl"

// One block: its 16 quant bytes (one vec4 word) and d.
fn raw8(row: u32, g0: u32) -> Raw8 {
    let blk = g0 / GPB;
    var r: Raw8;
    r.q0 = quant_vec4(row, blk, 0u);
    r.d = block_d(row, row_blocks(), blk);
    return r;
}

fn dq8(r: Raw8, j: u32) -> vec4<f32> {
    return r.d * (nibbles4(r.q0[j & 3u], j) - 8.0);
}
#endif
