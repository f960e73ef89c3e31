// Q6_K, 256 elements: quants [ql 128][qh 64][i8 scales 16] and an f16 d, in split rows
// (lib/split.wgsl). Two halves of 128; in half n, quarter k (32 elements): low 4 bits
// from ql[64n + 32(k%2) + l] (nibble k/2), high 2 bits from qh[32n + l] at shift 2k;
// value d * scale[e/16] * (q - 32).
const QK: u32 = 256u;
const QW: u32 = 52u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_PAIR
#define LAZY_K
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
#define PAIR_GROUPS
#include "lib/lazy.wgsl"

// Pair slot g (a multiple of 16 groups) of half n = g / 32 covers quarters k and k + 2
// (k = g / 16 % 2): the low and high nibbles of the same ql bytes, and the same qh bytes.
fn pair_groups(g: u32) -> vec2<u32> {
    let first = (g & ~31u) + 8u * ((g >> 4u) & 1u);
    return vec2<u32>(first, first + 16u);
}

// Quarters k and k + 2 of half n: the first of their eight ql words (w.x) and of their
// eight qh words (w.y), the qh shift of quarter k (u), d (d.x), and the four 16-element
// scales packed as bytes (s: scales 8n + 2k, + 1, + 4, + 5), unpacked where used: a
// tile of rows holds one word of scales each, not four floats.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let blk = g / GPB;
    let i0 = g % GPB;
    let n = i0 >> 5u;
    let k = (i0 >> 4u) & 1u;
    let q = row + blk * QW;
    var r: Lazy;
    r.w = vec2<u32>(q + 16u * n + 8u * k, q + 32u + 8u * n);
    r.u = 2u * k;
    r.d.x = block_d(row, row_blocks(), blk);
    // Scales 8n + 2k and 8n + 2k + 1 are bytes 2k and 2k + 1 of scale word 2n; + 4 and
    // + 5 the same bytes of word 2n + 1.
    let sh = 16u * k;
    r.s = extractBits(word(q + 48u + 2u * n), sh, 16u)
        | (extractBits(word(q + 49u + 2u * n), sh, 16u) << 16u);
    return r;
}

// Groups j and j + 8 (j < 8) of the pair: the low and high nibbles of ql word j with
// the bits of qh word j at shifts u and u + 4, loaded here.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let ql = word(r.w.x + j);
    let qh = word(r.w.y + j) >> r.u;
    let a = (ql & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4u);
    let b = ((ql >> 4u) & 0x0F0F0F0Fu) | (((qh >> 4u) & 0x03030303u) << 4u);
    // Words 4..7 are the second 16 elements of each quarter: the next scale.
    let o = select(0u, 8u, j >= 4u);
    let sa = r.d.x * f32(extractBits(bitcast<i32>(r.s), o, 8u));
    let sb = r.d.x * f32(extractBits(bitcast<i32>(r.s), o + 16u, 8u));
    return array<vec4<f32>, 2>(sa * (vec4<f32>(bytes4(a)) - 32.0),
        sb * (vec4<f32>(bytes4(b)) - 32.0));
}
#endif
