// Q6_K, 256 elements: quants [ql 128][qh 64][i8 scales 16] and an f16 d, in split rows
// (lib/split.wgsl). Two halves of 128; in half n, quarter k (32 elements): low 4 bits
// from ql[64n + 32(k%2) + l] (nibble k/2), high 2 bits from qh[32n + l] at shift 2k;
// value d * scale[e/16] * (q - 32).
const QK: u32 = 256u;
const QW: u32 = 52u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_QUAD
#endif
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
// The part's x (16 elements of each quarter) is preloaded (matvec.wgsl's `xpart`).
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
        a += vec2<f32>(dot(vec4<f32>(bytes4(lo)), xpart(t)), dot(vec4<f32>(bytes4(hi)), xpart(4u + t)));
    }
    let sw = w4[b4 + 12u];
    // Quarter k's scale for these bytes: index 8n + 2k + j.
    let s0 = 8u * n + 2u * c + j;
    let sc = vec2<f32>(q6_scale(sw, s0), q6_scale(sw, s0 + 4u));
    return block_d(row, nb, blk) * dot(sc, a - 32.0 * xsum);
}
#endif

#ifdef LAZY
#include "lib/lazy.wgsl"

// Half n = g / 32 of the block (its four quarters, the step's runs): the first of its
// ql words (w.x: quarters 0 and 2 in words 0..7, 1 and 3 in 8..15) and of its eight qh
// words (w.y), d (d.x), and its eight signed scales as bytes (s: scales 8n..8n+3, the
// two 16-element halves of quarters 0 and 1; t: 8n+4..8n+7, of quarters 2 and 3),
// unpacked where used.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let blk = g / GPB;
    let n = (g % GPB) >> 5u;
    let q = row + blk * QW;
    var r: Lazy;
    r.w = vec2<u32>(q + 16u * n, q + 32u + 8u * n);
    r.d.x = block_d(row, row_blocks(), blk);
    r.s = word(q + 48u + 2u * n);
    r.t = word(q + 49u + 2u * n);
    return r;
}

// Slot j of the half: ql word j (quarters 0 and 2), ql word 8 + j (1 and 3) and qh
// word j (all four, two bits each).
fn lazy_words(r: Lazy, j: u32) -> vec3<u32> {
    return vec3<u32>(word(r.w.x + j), word(r.w.x + 8u + j), word(r.w.y + j));
}

// Group j of quarter k: the low (k < 2) or high nibbles of ql word j or 8 + j (k odd),
// with the qh bits at shift 2k.
fn lazy_run(r: Lazy, w: vec3<u32>, j: u32, k: u32) -> vec4<f32> {
    let l = select(w.x, w.y, (k & 1u) == 1u) >> (4u * (k >> 1u));
    let q = (l & 0x0F0F0F0Fu) | (((w.z >> (2u * k)) & 0x03030303u) << 4u);
    return r.d.x * sbyte(quad_scale_byte(r, j, k)) * (vec4<f32>(bytes4(q)) - 32.0);
}
#endif
