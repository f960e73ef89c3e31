// The matvec of float rows of whole runs of 32 (FLOAT_RUNS: the host checks that k is a
// multiple of 32 and x's offset of 4): a run is the matvec's block, its weights read as
// vec4 words and its x preloaded as vec4s once for the invocation's rows (matvec.wgsl's
// XPRE; with one lane per row, shared across the subgroup). The generic form read x
// four scalars at a time for every row, with a bounds check per group. F16 and BF16
// define HALF_FLOATS and `words4(a, b)`, the four elements of two words; F32 neither.
#define WEIGHTS_VEC4
#define XPRE
#define XNOSUM
#include "lib/weights.wgsl"

const QK: u32 = 32u;
const PARTS: u32 = 1u;

fn part_x(part: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(e, 16u);
}

#ifdef HALF_FLOATS
const BLOCK_WORDS: u32 = 16u;

// The run at vec4 word b against the part's x (xpart(j): elements 4j..).
fn run_dot(b: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let q = w4[b + j];
        s += dot(words4(q.x, q.y), xpart(2u * j)) + dot(words4(q.z, q.w), xpart(2u * j + 1u));
    }
    return s;
}
#else
const BLOCK_WORDS: u32 = 32u;

fn run_dot(b: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        s += dot(bitcast<vec4<f32>>(w4[b + j]), xpart(j));
    }
    return s;
}
#endif

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    return run_dot((row + blk * BLOCK_WORDS) / 4u);
}
