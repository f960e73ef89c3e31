// Q3_K, 256 elements: [hmask 32][qs 64][scales 12][f16 d][2 pad] = 28 words.
// Element e: low 2 bits as in Q2_K; bit (4*(e/128) + (e%128)/32) of hmask[e%32] set
// means +0, clear means -4. Sixteen 6-bit scales (minus 32): low 4 bits in byte k%8
// (nibble k/8), high 2 bits in byte 8 + k%4 (at shift 2*(k/4)).
#ifdef MATVEC
#define WEIGHTS_VEC4
#endif
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_QUAD
#endif
#include "lib/weights.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 28u;

// Scale k (0..15) minus 32, from the scale word holding byte k % 8 (word (k % 8) / 4)
// and the word of high bits (scale word 2).
fn q3_scale(lw: u32, hw: u32, k: u32) -> f32 {
    let lo = (lw >> (8u * (k & 3u) + 4u * (k >> 3u))) & 0xFu;
    let hi = (hw >> (8u * (k & 3u) + 2u * (k >> 2u))) & 3u;
    return f32(lo | (hi << 4u)) - 32.0;
}

#ifndef MATVEC
fn dq4(b: u32, i: u32) -> vec4<f32> {
    let n = i >> 5u;
    let j = (i & 31u) >> 3u;
    let lw = i & 7u;
    let q = (w[b + 8u + 8u * n + lw] >> (2u * j)) & 0x03030303u;
    let hm = (w[b + lw] >> (4u * n + j)) & 0x01010101u;
    let k = i >> 2u;
    let scale = q3_scale(w[b + 24u + ((k & 7u) >> 2u)], w[b + 26u], k);
    let v = vec4<f32>(bytes4(q)) - 4.0 + 4.0 * vec4<f32>(bytes4(hm));
    return f16_lo(w[b + 27u]) * scale * v;
}
#endif

#ifdef LAZY
#include "lib/lazy.wgsl"

// Half n = g / 32 of the block: its four runs of 32 are the bit pairs at shifts 0, 2, 4
// and 6 of qs words 8n..8n+7 (w.x the first), with bits 4n..4n+3 of hmask words 0..7
// (w.y; u holds the shift 4n). Their eight scales (the runs' two 16-element halves
// each, 8n..8n+7) as unsigned bytes: low nibbles n of scale word 0 (s: runs 0 and 1)
// and 1 (t: runs 2 and 3), high bits from word 2 at shifts 4n and 4n + 2; unpacked
// where used. d.x is d.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let n = (g % GPB) >> 5u;
    var r: Lazy;
    r.w = vec2<u32>(b + 8u + 8u * n, b);
    r.u = 4u * n;
    r.d.x = f16_lo(word(b + 27u));
    let hi = word(b + 26u) >> (4u * n);
    r.s = ((word(b + 24u) >> (4u * n)) & 0x0F0F0F0Fu) | ((hi & 0x03030303u) << 4u);
    r.t = ((word(b + 25u) >> (4u * n)) & 0x0F0F0F0Fu) | (((hi >> 2u) & 0x03030303u) << 4u);
    return r;
}

// Slot j: qs word j and hmask word j, shared by the four runs.
fn lazy_words(r: Lazy, j: u32) -> vec3<u32> {
    return vec3<u32>(word(r.w.x + j), word(r.w.y + j), 0u);
}

// Group j of run k: the bit pair at shift 2k plus 4 times hmask bit 4n + k, minus 4.
fn lazy_run(r: Lazy, w: vec3<u32>, j: u32, k: u32) -> vec4<f32> {
    let q = ((w.x >> (2u * k)) & 0x03030303u) | (((w.y >> (r.u + k)) & 0x01010101u) << 2u);
    return r.d.x * (f32(quad_scale_byte(r, j, k)) - 32.0) * (vec4<f32>(bytes4(q)) - 4.0);
}
#endif

#ifdef MATVEC
// Matvec: a block is seven vec4 words (hmask in two, qs in four, then the scales and d).
// Part p (half n = p / 4, run pair c = p / 2 % 2, l-half h = p % 2) takes bytes
// 16h..16h+15 of qs half n (one vec4) and of hmask (one vec4): the bit pairs at shifts
// 4c and 4c + 2 and hmask bits 4n + 2c and + 1 are 16 elements of runs 2c and 2c + 1.
// The part's x (16 elements of each run) is preloaded (matvec.wgsl's `xpart`).
#define XPRE
const PARTS: u32 = 8u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e + 128u * (part >> 2u) + 64u * ((part >> 1u) & 1u) + 16u * (part & 1u), 32u);
}

// The block header: the twelve scale bytes and d (vec4 word 6).
#define BLOCK_HEAD
alias Head = vec4<u32>;

fn block_head(row: u32, nb: u32, blk: u32) -> Head {
    return w4[row / 4u + blk * (BLOCK_WORDS / 4u) + 6u];
}

fn dot_head_part(head: Head, row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let b4 = row / 4u + blk * (BLOCK_WORDS / 4u);
    let n = part >> 2u;
    let c = (part >> 1u) & 1u;
    let h = part & 1u;
    let q = w4[b4 + 2u + 2u * n + h];
    let hm = w4[b4 + h];
    let qs = 4u * c;
    let hs = 4u * n + 2u * c;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let lo = ((q[j] >> qs) & 0x03030303u) | (((hm[j] >> hs) & 0x01010101u) << 2u);
        let hi = ((q[j] >> (qs + 2u)) & 0x03030303u) | (((hm[j] >> (hs + 1u)) & 0x01010101u) << 2u);
        a += vec2<f32>(dot(vec4<f32>(bytes4(lo)), xpart(j)), dot(vec4<f32>(bytes4(hi)), xpart(4u + j)));
    }
    // The runs' scales: elements 128n + 64c + 16h (and + 32) are scale 8n + 4c + h (+ 2).
    let k = 8u * n + 4u * c + h;
    let sc = vec2<f32>(q3_scale(head[(k & 7u) >> 2u], head.z, k),
        q3_scale(head[((k + 2u) & 7u) >> 2u], head.z, k + 2u));
    return f16_lo(head.w) * dot(sc, a - 4.0 * xsum);
}
#endif
