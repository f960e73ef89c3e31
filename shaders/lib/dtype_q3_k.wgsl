// Q3_K, 256 elements: [hmask 32][qs 64][scales 12][f16 d][2 pad] = 28 words.
// Element e: low 2 bits as in Q2_K; bit (4*(e/128) + (e%128)/32) of hmask[e%32] set
// means +0, clear means -4. Sixteen 6-bit scales (minus 32): low 4 bits in byte k%8
// (nibble k/8), high 2 bits in byte 8 + k%4 (at shift 2*(k/4)).
#ifdef LAZY_FORM
// The batched matvec's x-sharing form loads each quant word where it is used (LAZY).
#define LAZY
#define LAZY_PAIR
#define LAZY_K
#endif
#include "lib/weights.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 28u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let n = i >> 5u;
    let j = (i & 31u) >> 3u;
    let lw = i & 7u;
    let q = (w[b + 8u + 8u * n + lw] >> (2u * j)) & 0x03030303u;
    let hm = (w[b + lw] >> (4u * n + j)) & 0x01010101u;
    let k = i >> 2u;
    let lo = (wbyte(b + 24u, k & 7u) >> (4u * (k >> 3u))) & 0xFu;
    let hi = (wbyte(b + 24u, 8u + (k & 3u)) >> (2u * (k >> 2u))) & 3u;
    let scale = f32(lo | (hi << 4u)) - 32.0;
    let v = vec4<f32>(bytes4(q)) - 4.0 + 4.0 * vec4<f32>(bytes4(hm));
    return f16_lo(w[b + 27u]) * scale * v;
}

#ifdef LAZY
#include "lib/lazy.wgsl"

// Groups 16c..16c+15 of the block (c = 0..3; half n = c / 2): runs 2c and 2c + 1 (j =
// 2(c % 2) and j + 1), the bits at shifts 2j and 2j + 2 of qs words 8n..8n+7 (w.x) and
// bits 4n + j and 4n + j + 1 of hmask words 0..7 (w.y). Their four scales 4c..4c+3 (the
// runs' two 16-element halves each) as unsigned bytes (s: low nibbles from scale word
// c % 2, nibble n, high bits from word 2 at shift 2c), unpacked where used; u holds
// the qs shift (low byte) and the hmask shift; d.x is d.
fn lazy_scale(row: u32, g: u32) -> Lazy {
    let b = row + (g / GPB) * BLOCK_WORDS;
    let c = (g % GPB) >> 4u;
    let n = c >> 1u;
    let j = 2u * (c & 1u);
    var r: Lazy;
    r.w = vec2<u32>(b + 8u + 8u * n, b);
    r.u = (2u * j) | ((4u * n + j) << 8u);
    r.d.x = f16_lo(word(b + 27u));
    let lo = (word(b + 24u + (c & 1u)) >> (4u * n)) & 0x0F0F0F0Fu;
    let hi = (word(b + 26u) >> (2u * c)) & 0x03030303u;
    r.s = lo | (hi << 4u);
    return r;
}

// Groups j and j + 8 (j < 8) of the pair, from qs word j and hmask word j, loaded here:
// q + 4 * (high bit) - 4.
fn lazy_pair(r: Lazy, j: u32) -> array<vec4<f32>, 2> {
    let q = word(r.w.x + j) >> (r.u & 0xFFu);
    let h = word(r.w.y + j) >> (r.u >> 8u);
    let a = (q & 0x03030303u) | ((h & 0x01010101u) << 2u);
    let b = ((q >> 2u) & 0x03030303u) | (((h >> 1u) & 0x01010101u) << 2u);
    // Words 4..7 are each run's second 16 elements: the next scale.
    let o = select(0u, 8u, j >= 4u);
    let sa = r.d.x * (f32(extractBits(r.s, o, 8u)) - 32.0);
    let sb = r.d.x * (f32(extractBits(r.s, o + 16u, 8u)) - 32.0);
    return array<vec4<f32>, 2>(sa * (vec4<f32>(bytes4(a)) - 4.0),
        sb * (vec4<f32>(bytes4(b)) - 4.0));
}
#endif

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
