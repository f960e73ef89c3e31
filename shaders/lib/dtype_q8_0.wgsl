// Q8_0: 32 signed bytes and an f16 d per block; value q * d. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 8u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form decodes each group from its word where it is used,
// with the block's scales (lazy_scale), the words loaded four or two at a time
// (lazy_words4, lazy_words2): holding a block's words per row across the block spilled
// registers on a CPU rasterizer.
#define LAZY
// A group's words in one load with the batched step's columns (see lazy_words4).
#ifdef WIDE16
#define LAZY_W2
#define W_VEC2
#else
#define LAZY_W4
#define W_VEC4
#endif
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
// The batched step's words in one load, four (LAZY_W4, j a multiple of 4) or with 16
// columns two (LAZY_W2, j even) from word j of the block, and a group from its word q.
// On lavapipe each load is a loop over the lanes with its checks, and more words held
// per row cost registers: benches/matvec (65536 x 640, alternated) ran the 8-sequence
// step 16.7-17.2 -> 15.5-15.6 ms with four words a load (16.8-18.0 with two), and the
// 16-column builds faster with two (16 sequences 27.9-31.7 -> 26.3-29.3 ms, prefill
// 42-46 -> 45-48 GFLOP/s) than with four (prefill 39-40). (Decoding two groups at once,
// as the nibble types take theirs, had run the step 1.6x slower: more registers live.)
#ifdef LAZY_W4
fn lazy_words4(r: Lazy, j: u32) -> vec4<u32> {
    return w4[(r.w.x + j) >> 2u];
}
#else
fn lazy_words2(r: Lazy, j: u32) -> vec2<u32> {
    return w2[(r.w.x + j) >> 1u];
}
#endif

fn lazy_dec(r: Lazy, q: u32) -> vec4<f32> {
    return r.d.x * sbytes4(q);
}
#endif
