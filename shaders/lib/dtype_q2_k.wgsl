// Q2_K, 256 elements: [scales 16 bytes][qs 64 bytes][f16 d][f16 dmin] = 21 words.
// Element e: 2 bits at shift 2*((e%128)/32) of qs[32*(e/128) + e%32]; scale byte e/16
// holds a 4-bit scale (low) and a 4-bit min (high); value d*sc*q - dmin*m.
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

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
