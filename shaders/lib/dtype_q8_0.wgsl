// Q8_0: [2 pad][f16 d][i8 qs 32] = 9 words; value q * d.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 9u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    return f16_hi(w[b]) * sbytes4(w[b + 1u + i]);
}

#ifdef MATVEC
// Matvec: two parts of 16 per block, four words each, the scale read once.
const PARTS: u32 = 2u;

fn dot_part(b: u32, part: u32, e: u32) -> f32 {
    let q = b + 1u + 4u * part;
    let x0 = e + 16u * part;
    let s = dot(sbytes4(w[q]), xv4(x0)) + dot(sbytes4(w[q + 1u]), xv4(x0 + 4u))
        + dot(sbytes4(w[q + 2u]), xv4(x0 + 8u)) + dot(sbytes4(w[q + 3u]), xv4(x0 + 12u));
    return f16_hi(w[b]) * s;
}
#endif
