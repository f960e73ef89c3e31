// IQ4_NL: [2 pad][f16 d][qs 16 bytes] = 5 words, nibbles as in Q4_0, each an index
// into the IQ4 codebook; value d * codebook[q].
#include "lib/weights.wgsl"
#include "lib/iq4_values.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 5u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let q = (w[b + 1u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    return f16_hi(w[b]) * iq4_lookup(bytes4(q));
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
