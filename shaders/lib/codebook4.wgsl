// The decoding shared by the 4-bit codebook types laid out as Q4_0 (IQ4_NL, MXFP4): each
// nibble indexes a 16-entry table, times the block's scale. The including decoder
// defines `cb_lookup(q: vec4<u32>) -> vec4<f32>` (four nibbles to values) and
// `cb_d(row, nb, blk) -> f32` (block blk's scale) after including lib/split.wgsl.

// Elements 4i..4i+3 of group g of the block (low nibbles first, then high) from quant
// word q.
fn cb_group(q: u32, g: u32) -> vec4<f32> {
    return cb_lookup(bytes4((q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu));
}

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    return cb_d(row, row_blocks(), blk) * cb_group(quant_word(row, blk, i & 3u), i);
}

#ifdef MATVEC
// Matvec: one part per block, its quants one vec4 load, its x preloaded (matvec.wgsl's
// `xpart`, shared across a subgroup's rows on a CPU rasterizer; no sums of x).
#define XPRE
#define XNOSUM
const PARTS: u32 = 1u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e, 16u);
}

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = quant_vec4(row, blk, 0u);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(cb_group(q[j], 0u), xpart(j)) + dot(cb_group(q[j], 4u), xpart(4u + j));
    }
    return cb_d(row, nb, blk) * s;
}
#endif

#ifdef LAZY
// Groups j and j + 4 (j < 4) of the block: the low and high nibbles of its word j,
// loaded here.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let q = word(r.w.x + j);
    return array<vec4<f32>, 2>(r.d.x * cb_group(q, 0u), r.d.x * cb_group(q, 4u));
}
#endif
