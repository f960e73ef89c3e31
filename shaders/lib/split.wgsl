// Split rows, the GPU layout of the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, IQ4_NL; see src/gpu/tensor.rs). A row of nb blocks is three planes, padded to a
// whole number of 16-byte words:
//   quants  nb * QW words, block b's at word b * QW (QW = 4 or 8: 16-byte aligned);
//   scales  DM: one word per block (f16 d | f16 m << 16); else two f16 d per word;
//   high    HIGH_BITS: one qh word per block.
// No byte is padding but the row's tail. A decoder defines QK, QW and (optionally) DM
// and HIGH_BITS before including this, and reads through the helpers below. Every kernel
// that includes a decoder has `p.k` (elements per row). The matvec binds the weights as
// vec4 words, so a block's quants are one or two 16-byte loads; the other kernels as
// words (the x-sharing forms, LAZY_FORM, load each word where it is used: LAZY).
#include "lib/common.wgsl"

#ifdef MATVEC
#define W_VEC4
#endif

#ifdef W_VEC4
@group(0) @binding(0) var<storage, read> w4: array<vec4<u32>>;

fn word(i: u32) -> u32 {
    return w4[i >> 2u][i & 3u];
}
#else
#ifdef W_VEC2
// A decoder's lazy form that loads two words at once (LAZY_W2).
@group(0) @binding(0) var<storage, read> w2: array<vec2<u32>>;

fn word(i: u32) -> u32 {
    return w2[i >> 1u][i & 1u];
}
#else
@group(0) @binding(0) var<storage, read> w: array<u32>;

fn word(i: u32) -> u32 {
    return w[i];
}
#endif
#endif

// Blocks per row.
fn row_blocks() -> u32 {
    return (p.k + QK - 1u) / QK;
}

// First word of the scale plane, and of the high-bit plane after it.
fn scale_plane(row: u32, nb: u32) -> u32 {
    return row + nb * QW;
}

#ifdef DM
fn high_plane(row: u32, nb: u32) -> u32 {
    return scale_plane(row, nb) + nb;
}

// (d, m) of block blk.
fn block_dm(row: u32, nb: u32, blk: u32) -> vec2<f32> {
    return unpack2x16float(word(scale_plane(row, nb) + blk));
}
#else
fn high_plane(row: u32, nb: u32) -> u32 {
    return scale_plane(row, nb) + (nb + 1u) / 2u;
}

// d of block blk.
fn block_d(row: u32, nb: u32, blk: u32) -> f32 {
    let s = unpack2x16float(word(scale_plane(row, nb) + blk / 2u));
    return select(s.x, s.y, (blk & 1u) == 1u);
}
#endif

#ifdef HIGH_BITS
fn block_qh(row: u32, nb: u32, blk: u32) -> u32 {
    return word(high_plane(row, nb) + blk);
}
#endif

// Quant word j (0..QW-1) of block blk.
fn quant_word(row: u32, blk: u32, j: u32) -> u32 {
    return word(row + blk * QW + j);
}

#ifdef W_VEC4
// Quant vec4 word j (0..QW/4-1) of block blk; `row` is a multiple of 4.
fn quant_vec4(row: u32, blk: u32, j: u32) -> vec4<u32> {
    return w4[(row + blk * QW) / 4u + j];
}
#endif

// 4-element groups per block.
const GPB: u32 = QK / 4u;

#ifdef LAZY
#ifndef LAZY_QUAD
#include "lib/lazy.wgsl"

// The lazy form's scales of the block from group g (lib/lazy.wgsl): its first quant word,
// d (and m with DM, the qh word with HIGH_BITS; a CODEBOOK decoder's own scale, cb_d).
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let blk = g / GPB;
    let nb = row_blocks();
    var r: Lazy;
    r.w.x = row + blk * QW;
#ifdef DM
    let dm = block_dm(row, nb, blk);
    r.d.x = dm.x;
    r.m.x = dm.y;
#else
#ifdef CODEBOOK
    r.d.x = cb_d(row, nb, blk);
#else
    r.d.x = block_d(row, nb, blk);
#endif
#endif
#ifdef HIGH_BITS
    r.u = block_qh(row, nb, blk);
#endif
    return r;
}
#endif
#endif
