// Q4_0: [2 pad][f16 d][qs 16 bytes] = 5 words. Low nibble of qs[j] is element j,
// high nibble element j+16; value (q - 8) * d.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 5u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let d = f16_hi(w[b]);
    let q = (w[b + 1u + (i & 3u)] >> (4u * (i >> 2u))) & 0x0F0F0F0Fu;
    return d * (vec4<f32>(bytes4(q)) - 8.0);
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
