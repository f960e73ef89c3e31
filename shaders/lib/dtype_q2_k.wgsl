// Q2_K, 256 elements: [scales 16 bytes][qs 64 bytes][f16 d][f16 dmin] = 21 words.
// Element e: 2 bits at shift 2*((e%128)/32) of qs[32*(e/128) + e%32]; scale byte e/16
// holds a 4-bit scale (low) and a 4-bit min (high); value d*sc*q - dmin*m.
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_PAIR
#define LAZY_K
#endif
#include "lib/weights.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 21u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let n = i >> 5u;
    let j = (i & 31u) >> 3u;
    let q = (w[b + 4u + 8u * n + (i & 7u)] >> (2u * j)) & 0x03030303u;
    let sc = wbyte(b, i >> 2u);
    let dm = unpack2x16float(w[b + 20u]);
    return dm.x * f32(sc & 0xFu) * vec4<f32>(bytes4(q)) - dm.y * f32(sc >> 4u);
}

#ifdef LAZY
#include "lib/lazy.wgsl"

// Groups 16c..16c+15 of the block (c = 0..3; half n = c / 2): runs 2c and 2c + 1, the
// bits at shifts 4(c % 2) and 4(c % 2) + 2 of qs words 8n..8n+7. Their four scale bytes
// (4c..4c+3: the runs' two 16-element halves each) are one word (s), unpacked where
// used; w.x is the first qs word, u the first run's shift, d.x d and m.x dmin.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let c = (g % GPB) >> 4u;
    let dm = unpack2x16float(word(b + 20u));
    var r: Lazy;
    r.w = vec2<u32>(b + 4u + 8u * (c >> 1u), 0u);
    r.u = 4u * (c & 1u);
    r.d.x = dm.x;
    r.m.x = dm.y;
    r.s = word(b + c);
    return r;
}

// Groups j and j + 8 (j < 8) of the pair, from qs word j, loaded here.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let q = word(r.w.x + j) >> r.u;
    // Words 4..7 are each run's second 16 elements: the next scale byte.
    let o = select(0u, 8u, j >= 4u);
    let sa = extractBits(r.s, o, 8u);
    let sb = extractBits(r.s, o + 16u, 8u);
    return array<vec4<f32>, 2>(
        r.d.x * f32(sa & 0xFu) * vec4<f32>(bytes4(q & 0x03030303u)) - r.m.x * f32(sa >> 4u),
        r.d.x * f32(sb & 0xFu) * vec4<f32>(bytes4((q >> 2u) & 0x03030303u))
            - r.m.x * f32(sb >> 4u));
}
#endif

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
