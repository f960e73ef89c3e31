// F32 weights, stored as groups of 4 with rows zero-padded to a multiple of 4.
// The matvec reads rows of whole runs of 32 by runs (lib/float_runs.wgsl).
#ifdef FLOAT_RUNS
#include "lib/float_runs.wgsl"
#else
#ifndef MATVEC
// A group is one 16-byte word (rows are whole groups), read in one load: a CPU
// rasterizer loads a storage word per lane, with a bounds check per load.
#define WEIGHTS_VEC4
#endif
#include "lib/weights.wgsl"

const QK: u32 = 4u;
const BLOCK_WORDS: u32 = 4u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
#ifdef WEIGHTS_VEC4
    return bitcast<vec4<f32>>(w4[b >> 2u]);
#else
    return bitcast<vec4<f32>>(vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]));
#endif
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
#endif
