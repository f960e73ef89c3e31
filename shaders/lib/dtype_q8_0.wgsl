// Q8_0: 32 signed bytes and an f16 d per block; value q * d. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 8u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form decodes each group from its word, loaded where it
// is used, with the block's scales (lazy_scale, lazy_group): holding a block's words per
// row across the block spilled registers on a CPU rasterizer.
#define LAZY
#endif
#include "lib/split.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    return block_d(row, row_blocks(), blk) * sbytes4(quant_word(row, blk, g % GPB));
}

#ifdef MATVEC
// Matvec: one part per block, its quants two vec4 loads, its x preloaded (matvec.wgsl's
// `xpart`; no sums of x).
#define XPRE
#define XNOSUM
const PARTS: u32 = 1u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e, 16u);
}

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q0 = quant_vec4(row, blk, 0u);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(sbytes4(q0[j]), xpart(j));
    }
    let q1 = quant_vec4(row, blk, 1u);
    for (var j = 0u; j < 4u; j++) {
        s += dot(sbytes4(q1[j]), xpart(4u + j));
    }
    return block_d(row, nb, blk) * s;
}
#endif

#ifdef LAZY
// Group j (0..7) of the block, from its word j, loaded here. (In pairs, as the nibble
// types take theirs, the batched step ran 1.6x slower on lavapipe: more registers live.)
fn lazy_group(r: Lazy, j: u32) -> vec4<f32> {
    return r.d.x * sbytes4(word(r.w.x + j));
}
#endif
