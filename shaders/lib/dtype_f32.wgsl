// F32 weights, stored as groups of 4 with rows zero-padded to a multiple of 4.
// The matvec reads rows of whole runs of 32 by runs (lib/float_runs.wgsl).
#ifdef FLOAT_RUNS
#include "lib/float_runs.wgsl"
#else
#include "lib/weights.wgsl"

const QK: u32 = 4u;
const BLOCK_WORDS: u32 = 4u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]));
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
#endif
