// IQ4_XS, 256 elements: [f16 d][u16 scales_h][scales_l 4 bytes][qs 128 bytes] = 34 words.
// Eight sub-blocks of 32 laid out like IQ4_NL, each with a 6-bit scale
// (low 4 bits from scales_l, high 2 from scales_h) minus 32.
#ifdef LAZY_FORM
// The batched matvec's x-sharing form takes a sub-block per step, its scale once, and
// decodes both groups of each word where the word is loaded (LAZY_PAIR).
#define LAZY
#define LAZY_PAIR
#endif
#ifdef MATVEC
// Matvec: a part per sub-block (8 per block), the block's d and scale words read once
// per block where one lane walks a row (BLOCK_HEAD), the part's x preloaded (XPRE).
#define XPRE
#define XNOSUM
#define BLOCK_HEAD
#endif
#include "lib/weights.wgsl"
#include "lib/iq4_values.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 34u;

// d times sub-block ib's 6-bit scale minus 32 (low 4 bits from scales_l, high 2 from
// scales_h).
fn iq4xs_dl(b: u32, ib: u32) -> f32 {
    let h = w[b];
    let ls = ((wbyte(b + 1u, ib >> 1u) >> (4u * (ib & 1u))) & 0xFu) | (((h >> (16u + 2u * ib)) & 3u) << 4u);
    return f16_lo(h) * (f32(ls) - 32.0);
}

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let ib = i >> 3u;
    let ii = i & 7u;
    let q = (w[b + 2u + 4u * ib + (ii & 3u)] >> (4u * (ii >> 2u))) & 0x0F0F0F0Fu;
    return iq4xs_dl(b, ib) * iq4_lookup(bytes4(q));
}

#ifdef LAZY
#include "lib/lazy.wgsl"

// Sub-block ib of the block (groups 8ib..8ib+7): its scale (iq4xs_dl) and its first
// quant word (w.x).
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let ib = (g % GPB) >> 3u;
    var r: Lazy;
    r.d.x = iq4xs_dl(b, ib);
    r.w.x = b + 2u + 4u * ib;
    return r;
}

// Groups j and j + 4 (j < 4) of the sub-block: the low and high nibbles of its word j,
// loaded here.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let q = word(r.w.x + j);
    return array<vec4<f32>, 2>(r.d.x * iq4_lookup(bytes4(q & 0x0F0F0F0Fu)),
        r.d.x * iq4_lookup(bytes4((q >> 4u) & 0x0F0F0F0Fu)));
}
#endif

#ifdef MATVEC
const PARTS: u32 = 8u;

// Sub-block `part`'s x: its low nibbles' 16 elements, then its high nibbles'.
fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 32u * part, 16u);
}

// The block's header: word 0 (d, scales_h) and word 1 (scales_l).
alias Head = vec2<u32>;

fn block_head(row: u32, nb: u32, blk: u32) -> Head {
    let b = row + blk * BLOCK_WORDS;
    return vec2<u32>(w[b], w[b + 1u]);
}

fn dot_head_part(head: Head, row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let b = row + blk * BLOCK_WORDS + 2u + 4u * part;
    let ls = ((head.y >> (4u * part)) & 0xFu) | (((head.x >> (16u + 2u * part)) & 3u) << 4u);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let q = w[b + j];
        s += dot(iq4_lookup(bytes4(q & 0x0F0F0F0Fu)), xpart(j))
            + dot(iq4_lookup(bytes4((q >> 4u) & 0x0F0F0F0Fu)), xpart(4u + j));
    }
    return f16_lo(head.x) * (f32(ls) - 32.0) * s;
}
#endif
