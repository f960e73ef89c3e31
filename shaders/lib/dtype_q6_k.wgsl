// Q6_K, 256 elements: quants [ql 128][qh 64][i8 scales 16] and an f16 d, in split rows
// (lib/split.wgsl). Two halves of 128; in half n, quarter k (32 elements): low 4 bits
// from ql[64n + 32(k%2) + l] (nibble k/2), high 2 bits from qh[32n + l] at shift 2k;
// value d * scale[e/16] * (q - 32).
const QK: u32 = 256u;
const QW: u32 = 52u;
#include "lib/split.wgsl"

// Signed scale byte s (0..15) of a block's 16 scales, from their four words.
fn q6_scale(sw: vec4<u32>, s: u32) -> f32 {
    return sbyte((sw[s >> 2u] >> (8u * (s & 3u))) & 0xFFu);
}

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    let n = i >> 5u;
    let k = (i & 31u) >> 3u;
    let lw = i & 7u;
    let ql = (quant_word(row, blk, 16u * n + 8u * (k & 1u) + lw) >> (4u * (k >> 1u))) & 0x0F0F0F0Fu;
    let qh = (quant_word(row, blk, 32u + 8u * n + lw) >> (2u * k)) & 0x03030303u;
    let q = vec4<f32>(bytes4(ql | (qh << 4u))) - 32.0;
    let s = i >> 2u;
    let sc = sbyte((quant_word(row, blk, 48u + (s >> 2u)) >> (8u * (s & 3u))) & 0xFFu);
    return block_d(row, row_blocks(), blk) * sc * q;
}

#ifdef MATVEC
// Matvec: part p is half n = p/4, bytes l in 16j..16j+15 (j = p/2 % 2) of quarters
// c and c + 2 (c = p % 2): 32 elements from one ql vec4 word (its low and high nibbles)
// and one qh vec4 word, with the two 16-element scales they use. Each ql byte is read
// once, each qh byte twice.
// The part's x (16 elements of each quarter) is preloaded (matvec.wgsl's `xs`).
#define XPRE
const PARTS: u32 = 8u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 128u * (part >> 2u) + 32u * (part & 1u) + 16u * ((part >> 1u) & 1u), 64u);
}

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let b4 = row / 4u + blk * (QW / 4u);
    let n = part >> 2u;
    let j = (part >> 1u) & 1u;
    let c = part & 1u;
    let ql = w4[b4 + 4u * n + 2u * c + j];
    let qh = w4[b4 + 8u + 2u * n + j];
    let hs = 2u * c;
    var a = vec2<f32>(0.0);
    for (var t = 0u; t < 4u; t++) {
        let h = qh[t] >> hs;
        let lo = (ql[t] & 0x0F0F0F0Fu) | ((h & 0x03030303u) << 4u);
        let hi = ((ql[t] >> 4u) & 0x0F0F0F0Fu) | (((h >> 4u) & 0x03030303u) << 4u);
        a += vec2<f32>(dot(vec4<f32>(bytes4(lo)), xs[t]), dot(vec4<f32>(bytes4(hi)), xs[4u + t]));
    }
    let sw = w4[b4 + 12u];
    // Quarter k's scale for these bytes: index 8n + 2k + j.
    let s0 = 8u * n + 2u * c + j;
    let sc = vec2<f32>(q6_scale(sw, s0), q6_scale(sw, s0 + 4u));
    return block_d(row, nb, blk) * dot(sc, a - 32.0 * xsum);
}
#endif

#ifdef BATCH8
#define RAW8
#include "lib/raw8.wgsl"

// Quarter k of half n of a block (32 elements, groups i0..i0+7 of the block): its eight
// ql words (q0, q1), its eight qh words (q2, q3), the shifts of its nibble and its high
// bits (u), and d times each of its two 16-element scales (d, m).
fn raw8(row: u32, g0: u32) -> Raw8 {
    let blk = g0 / GPB;
    let i0 = g0 % GPB;
    let n = i0 >> 5u;
    let k = (i0 & 31u) >> 3u;
    let d = block_d(row, row_blocks(), blk);
    let sw = quant_vec4(row, blk, 12u);
    var r: Raw8;
    r.q0 = quant_vec4(row, blk, 4u * n + 2u * (k & 1u));
    r.q1 = quant_vec4(row, blk, 4u * n + 2u * (k & 1u) + 1u);
    r.q2 = quant_vec4(row, blk, 8u + 2u * n);
    r.q3 = quant_vec4(row, blk, 8u + 2u * n + 1u);
    r.u = (4u * (k >> 1u)) | ((2u * k) << 8u);
    r.d = d * q6_scale(sw, i0 >> 2u);
    r.m = d * q6_scale(sw, (i0 >> 2u) + 1u);
    return r;
}

fn dq8(r: Raw8, j: u32) -> vec4<f32> {
    let ql = (raw8_word(r.q0, r.q1, j) >> (r.u & 0xFFu)) & 0x0F0F0F0Fu;
    let qh = (raw8_word(r.q2, r.q3, j) >> (r.u >> 8u)) & 0x03030303u;
    return select(r.d, r.m, j >= 4u) * (vec4<f32>(bytes4(ql | (qh << 4u))) - 32.0);
}
#endif
