// Q8_0: [2 pad][f16 d][i8 qs 32] = 9 words; value q * d.
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 9u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    return f16_hi(w[b]) * sbytes4(w[b + 1u + i]);
}
