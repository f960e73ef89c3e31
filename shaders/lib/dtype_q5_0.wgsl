// Q5_0: 5-bit quants (lib/q5_quants.wgsl) and an f16 d per block; value (q - 16) * d.
// Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#define HIGH_BITS
#ifdef LAZY_FORM
// The batched matvec's x-sharing form decodes both groups of each word (its low and high
// nibbles) where the word is loaded, with the block's scales (lazy_scale, lazy_pair):
// holding a block's words per row across the block spilled registers on lavapipe.
#define LAZY
#define LAZY_PAIR
#endif
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
// Matvec: its quants one vec4 load; the -16 applied to the sum of x.

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let s = q5_dots(quant_vec4(row, blk, 0u), block_qh(row, nb, blk));
    return block_d(row, nb, blk) * (s.x - 16.0 * s.y);
}
#endif

#ifdef LAZY
// Groups j and j + 4 (j < 4) of the block: the low and high nibbles of its word j,
// loaded here.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let q = word(r.w.x + j);
    return array<vec4<f32>, 2>(r.d.x * (q5_group(q, r.u, j) - 16.0),
        r.d.x * (q5_group(q, r.u, j + 4u) - 16.0));
}
#endif
