// IQ4_XS, 256 elements: [f16 d][u16 scales_h][scales_l 4 bytes][qs 128 bytes] = 34 words.
// Eight sub-blocks of 32 laid out like IQ4_NL, each with a 6-bit scale
// (low 4 bits from scales_l, high 2 from scales_h) minus 32.
#ifdef LAZY_FORM
// The batched matvec's x-sharing form takes a sub-block per step, its scale once, and
// decodes both groups of each word where the word is loaded (LAZY_PAIR).
#define LAZY
#define LAZY_PAIR
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
#include "lib/dot_generic.wgsl"
#endif
