// BF16 weights: the high half of an f32. Groups of 4 (two words), rows padded to 4.
#include "lib/weights.wgsl"

const QK: u32 = 4u;
const BLOCK_WORDS: u32 = 2u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let a = w[b];
    let c = w[b + 1u];
    return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xFFFF0000u, c << 16u, c & 0xFFFF0000u));
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
