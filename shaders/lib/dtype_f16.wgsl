// F16 weights, stored as groups of 4 (two words) with rows zero-padded to a multiple of 4.
#include "lib/weights.wgsl"

const QK: u32 = 4u;
const BLOCK_WORDS: u32 = 2u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w[b]), unpack2x16float(w[b + 1u]));
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
