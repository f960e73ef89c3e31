// Q5_K, 256 elements: [f16 d][f16 dmin][scales 12][qh 32][qs 128] = 44 words. As Q4_K,
// plus a fifth bit: bit s (the sub-block) of qh[e%32].
#ifdef MATVEC
#define WEIGHTS_VEC4
#endif
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_QUAD
#endif
#include "lib/weights.wgsl"
#include "lib/kquant_scales.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 44u;

#ifndef MATVEC
fn dq4(b: u32, i: u32) -> vec4<f32> {
    let s = i >> 3u;
    let lo = (word(b + 12u + 8u * (i >> 4u) + (i & 7u)) >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
    let hb = (word(b + 4u + (i & 7u)) >> s) & 0x01010101u;
    let q = vec4<f32>(bytes4(lo | (hb << 4u)));
    let dm = unpack2x16float(word(b));
    let sm = scale_min_k4(vec3<u32>(word(b + 1u), word(b + 2u), word(b + 3u)), s);
    return dm.x * sm.x * q - dm.y * sm.y;
}
#endif

#ifdef LAZY
#include "lib/lazy.wgsl"

// Half h = g / 32 of the block, chunks 2h and 2h + 1 (sub-blocks 4h..4h+3, the step's
// runs): their scales and mins (lazy_head_k4), the first of the chunks' sixteen nibble
// words (w.x), the first of the eight qh words (w.y) and the half's first qh bit (u:
// sub-block 4h's).
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let h = (g % GPB) >> 5u;
    var r = lazy_head_k4(b, h);
    r.w = vec2<u32>(b + 12u + 16u * h, b + 4u);
    r.u = 4u * h;
    return r;
}

// Slot j: nibble word j of each chunk and qh word j, shared by the four runs.
fn lazy_words(r: Lazy, j: u32) -> vec3<u32> {
    return vec3<u32>(word(r.w.x + j), word(r.w.x + 8u + j), word(r.w.y + j));
}

// Group j of run k (sub-block 4h + k): the low (k even) or high nibbles of its chunk's
// word, with qh bit 4h + k as the fifth bit.
fn lazy_run(r: Lazy, w: vec3<u32>, j: u32, k: u32) -> vec4<f32> {
    let lo = (select(w.x, w.y, k >= 2u) >> (4u * (k & 1u))) & 0x0F0F0F0Fu;
    let q = lo | (((w.z >> (r.u + k)) & 0x01010101u) << 4u);
    return r.d[k] * vec4<f32>(bytes4(q)) - r.m[k];
}
#endif

#ifdef MATVEC
// Matvec: a block is eleven vec4 words (the header, qh in two, then eight of low
// nibbles). Part p reads nibble word 3 + p: bytes 16h..16h+15 of chunk c = p / 2
// (h = p % 2), whose low nibbles are 16 elements of sub-block 2c and high nibbles 16 of
// sub-block 2c + 1, and qh word 1 + h, whose bits 2c and 2c + 1 are their fifth bits.
// The part's x (16 elements of each sub-block) is preloaded (matvec.wgsl's `xpart`).
#define XPRE
const PARTS: u32 = 8u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 64u * (part >> 1u) + 16u * (part & 1u), 32u);
}

// The block header: d, dmin and the packed scales and mins.
#define BLOCK_HEAD
alias Head = vec4<u32>;

fn block_head(row: u32, nb: u32, blk: u32) -> Head {
    return w4[row / 4u + blk * (BLOCK_WORDS / 4u)];
}

fn dot_head_part(head: Head, row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let b4 = row / 4u + blk * (BLOCK_WORDS / 4u);
    let q = w4[b4 + 3u + part];
    let qh = w4[b4 + 1u + (part & 1u)];
    let c = part >> 1u;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let hl = ((qh[j] >> (2u * c)) & 0x01010101u) << 4u;
        let hh = ((qh[j] >> (2u * c + 1u)) & 0x01010101u) << 4u;
        a += vec2<f32>(dot(vec4<f32>(bytes4((q[j] & 0x0F0F0F0Fu) | hl)), xpart(j)),
            dot(vec4<f32>(bytes4(((q[j] >> 4u) & 0x0F0F0F0Fu) | hh)), xpart(4u + j)));
    }
    let dm = pair_dm_k4(head, c);
    return dot(dm.xy, a) - dot(dm.zw, xsum);
}
#endif
