// Access to the weight words `w` for the decoders of whole-block layouts (float types,
// Q2_K..Q5_K, IQ4_XS; the split-row types use lib/split.wgsl). A decoder defines
//   const QK: u32           elements per block (4 for float types)
//   const BLOCK_WORDS: u32  u32 words per block in GPU layout (see src/gpu/tensor.rs)
//   fn dq4(b: u32, i: u32) -> vec4<f32>
//                           elements 4i..4i+3 of the block starting at word b
// and kernels loop over 4-element groups through `dq4_row` without knowing the type
// (matvec through `dot_block_part`).
#include "lib/common.wgsl"

// 4-element groups per block.
const GPB: u32 = QK / 4u;

#ifdef WEIGHTS_VEC4
// A decoder whose blocks are whole 16-byte words (Q4_K; F32's groups outside the
// matvec) may read them as vec4 words in its matvec and the batched matvec's
// whole-block form; it then defines WEIGHTS_VEC4, reads single words through `word`,
// and defines its own `dot_block_part`. F16 and BF16 read their two-word groups as
// vec2 words (WEIGHTS_VEC2) outside the matvec. lavapipe loads a storage word at an
// address that differs between lanes one lane at a time, with its checks per load, so
// a group in one load runs the batched step faster (F32 1.15-1.2x, F16 and BF16 prefill
// 1.1x in `benches/matvec`).
@group(0) @binding(0) var<storage, read> w4: array<vec4<u32>>;

fn word(i: u32) -> u32 {
    return w4[i >> 2u][i & 3u];
}

#ifndef MATVEC
// Elements 4g..4g+3 of the row whose first word is `row_base`.
fn dq4_row(row_base: u32, g: u32) -> vec4<f32> {
    return dq4(row_base + (g / GPB) * BLOCK_WORDS, g % GPB);
}
#endif
#else
#ifdef WEIGHTS_VEC2
// Groups of two words (F16, BF16 outside the matvec): a group in one load.
@group(0) @binding(0) var<storage, read> w2: array<vec2<u32>>;

fn word(i: u32) -> u32 {
    return w2[i >> 1u][i & 1u];
}
#else
@group(0) @binding(0) var<storage, read> w: array<u32>;

fn word(i: u32) -> u32 {
    return w[i];
}

// Byte k of the byte array starting at word `base`.
fn wbyte(base: u32, k: u32) -> u32 {
    return (w[base + (k >> 2u)] >> (8u * (k & 3u))) & 0xFFu;
}
#endif

// Elements 4g..4g+3 of the row whose first word is `row_base`.
fn dq4_row(row_base: u32, g: u32) -> vec4<f32> {
    return dq4(row_base + (g / GPB) * BLOCK_WORDS, g % GPB);
}
#endif

#ifdef MATVEC
#ifndef WEIGHTS_VEC4
#ifndef BLOCK_HEAD
// The matvec's per-block entry point (split-row types define their own; a decoder that
// defines BLOCK_HEAD before this include gets it from matvec.wgsl): part `part` of
// block `blk` of the row starting at word `row`, against x from element `e`.
fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    return dot_part(row + blk * BLOCK_WORDS, part, e);
}
#endif
#endif
#endif
