// Q2_K, 256 elements: [scales 16 bytes][qs 64 bytes][f16 d][f16 dmin] = 21 words.
// Element e: 2 bits at shift 2*((e%128)/32) of qs[32*(e/128) + e%32]; scale byte e/16
// holds a 4-bit scale (low) and a 4-bit min (high); value d*sc*q - dmin*m.
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_QUAD
#endif
#ifdef MATVEC
// Matvec: parts as Q3_K's (8 per block), the block's scales and d/dmin read once per
// block where one lane walks a row (BLOCK_HEAD), the part's x and its runs' sums
// preloaded (XPRE).
#define XPRE
#define BLOCK_HEAD
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

// Half n = g / 32 of the block: its four runs of 32 are the bit pairs at shifts 0, 2, 4
// and 6 of qs words 8n..8n+7 (w.x the first). Their eight scale bytes (the runs' two
// 16-element halves each) are scale words 2n (s: runs 0 and 1) and 2n + 1 (t),
// unpacked where used; d.x is d and m.x dmin.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let n = (g % GPB) >> 5u;
    let dm = unpack2x16float(word(b + 20u));
    var r: Lazy;
    r.w = vec2<u32>(b + 4u + 8u * n, 0u);
    r.d.x = dm.x;
    r.m.x = dm.y;
    r.s = word(b + 2u * n);
    r.t = word(b + 2u * n + 1u);
    return r;
}

// Slot j: qs word j, shared by the four runs.
fn lazy_words(r: Lazy, j: u32) -> vec3<u32> {
    return vec3<u32>(word(r.w.x + j), 0u, 0u);
}

// Group j of run k: the bit pairs at shift 2k.
fn lazy_run(r: Lazy, w: vec3<u32>, j: u32, k: u32) -> vec4<f32> {
    let q = (w.x >> (2u * k)) & 0x03030303u;
    let sc = quad_scale_byte(r, j, k);
    return r.d.x * f32(sc & 0xFu) * vec4<f32>(bytes4(q)) - r.m.x * f32(sc >> 4u);
}
#endif

#ifdef MATVEC
// Part p (half n = p / 4, run pair c = p / 2 % 2, l-half h = p % 2) takes qs words
// 8n + 4h .. + 3: their bit pairs at shifts 4c and 4c + 2 are 16 elements each of runs
// 2c and 2c + 1, whose scale bytes are h and h + 2 of scale word 2n + c.
const PARTS: u32 = 8u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 128u * (part >> 2u) + 64u * ((part >> 1u) & 1u) + 16u * (part & 1u), 32u);
}

// The block's header: its four scale words and (d, dmin).
struct Head {
    s: vec4<u32>,
    dm: vec2<f32>,
}

fn block_head(row: u32, nb: u32, blk: u32) -> Head {
    let b = row + blk * BLOCK_WORDS;
    return Head(vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]), unpack2x16float(w[b + 20u]));
}

fn dot_head_part(head: Head, row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let n = part >> 2u;
    let c = (part >> 1u) & 1u;
    let h = part & 1u;
    let b = row + blk * BLOCK_WORDS + 4u + 8u * n + 4u * h;
    let sh = 4u * c;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let q = w[b + j];
        a += vec2<f32>(dot(vec4<f32>(bytes4((q >> sh) & 0x03030303u)), xpart(j)),
            dot(vec4<f32>(bytes4((q >> (sh + 2u)) & 0x03030303u)), xpart(4u + j)));
    }
    let sw = head.s[2u * n + c] >> (8u * h);
    let sc = vec2<f32>(f32(sw & 0xFu), f32((sw >> 16u) & 0xFu));
    let m = vec2<f32>(f32((sw >> 4u) & 0xFu), f32((sw >> 20u) & 0xFu));
    return head.dm.x * dot(sc, a) - head.dm.y * dot(m, xsum);
}
#endif
