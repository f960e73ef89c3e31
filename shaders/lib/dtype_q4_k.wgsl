// Q4_K, 256 elements: [f16 d][f16 dmin][scales 12][qs 128] = 36 words. Four chunks of
// 64: qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high nibble);
// sub-block s = e/32 has a 6-bit scale and min; value d*sc*q - dmin*m.
const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 36u;
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

#ifndef MATVEC
fn dq4(b: u32, i: u32) -> vec4<f32> {
    let s = i >> 3u;
    let q = (word(b + 4u + 8u * (i >> 4u) + (i & 7u)) >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
    let dm = unpack2x16float(word(b));
    let sm = scale_min_k4(vec3<u32>(word(b + 1u), word(b + 2u), word(b + 3u)), s);
    return dm.x * sm.x * vec4<f32>(bytes4(q)) - dm.y * sm.y;
}

#ifdef LAZY
#include "lib/lazy.wgsl"

// Half h = g / 32 of the block, chunks 2h and 2h + 1 (sub-blocks 4h..4h+3, the step's
// runs): their scales and mins (lazy_head_k4), and the first of the chunks' sixteen
// quant words (w.x).
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let h = (g % GPB) >> 5u;
    var r = lazy_head_k4(b, h);
    r.w = vec2<u32>(b + 4u + 16u * h, 0u);
    return r;
}

// Slot j: quant word j of each chunk (the low nibbles of word j are run 2c's group j,
// the high run 2c + 1's).
fn lazy_words(r: Lazy, j: u32) -> vec3<u32> {
    return vec3<u32>(word(r.w.x + j), word(r.w.x + 8u + j), 0u);
}

fn lazy_run(r: Lazy, w: vec3<u32>, j: u32, k: u32) -> vec4<f32> {
    let q = (select(w.x, w.y, k >= 2u) >> (4u * (k & 1u))) & 0x0F0F0F0Fu;
    return r.d[k] * vec4<f32>(bytes4(q)) - r.m[k];
}
#endif
#else
// Matvec: a block is nine vec4 words (the header, then eight of quants). Part p reads
// quant word 1 + p: bytes 16h..16h+15 of chunk c = p / 2 (h = p % 2), whose low nibbles
// are 16 elements of sub-block 2c and high nibbles 16 of sub-block 2c + 1. Consecutive
// lanes read consecutive 16-byte words; each quant byte is read once.
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
    return w4[row / 4u + blk * 9u];
}

fn dot_head_part(head: Head, row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = w4[row / 4u + blk * 9u + 1u + part];
    let c = part >> 1u;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        a += vec2<f32>(dot(vec4<f32>(bytes4(q[j] & 0x0F0F0F0Fu)), xpart(j)),
            dot(vec4<f32>(bytes4((q[j] >> 4u) & 0x0F0F0F0Fu)), xpart(4u + j)));
    }
    let dm = pair_dm_k4(head, c);
    return dot(dm.xy, a) - dot(dm.zw, xsum);
}
#endif
