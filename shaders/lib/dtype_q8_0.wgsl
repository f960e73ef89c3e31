// Q8_0: 32 signed bytes and an f16 d per block; value q * d. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 8u;
#include "lib/split.wgsl"

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    return block_d(row, row_blocks(), blk) * sbytes4(quant_word(row, blk, g % GPB));
}

#ifdef MATVEC
// Matvec: two parts of 16 per block, each one vec4 load, its x preloaded (matvec.wgsl's
// `xs`, the low run only).
#define XPRE
#define XLO
const PARTS: u32 = 2u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 16u * part, 0u);
}

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = quant_vec4(row, blk, part);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(sbytes4(q[j]), xs[j]);
    }
    return block_d(row, nb, blk) * s;
}
#endif

#ifdef BATCH8
#define RAW8
#include "lib/raw8.wgsl"

// One block: its 32 quant bytes (two vec4 words) and d.
fn raw8(row: u32, g0: u32) -> Raw8 {
    let blk = g0 / GPB;
    var r: Raw8;
    r.q0 = quant_vec4(row, blk, 0u);
    r.q1 = quant_vec4(row, blk, 1u);
    r.d = block_d(row, row_blocks(), blk);
    return r;
}

fn dq8(r: Raw8, j: u32) -> vec4<f32> {
    return r.d * sbytes4(raw8_word(r.q0, r.q1, j));
}
#endif
