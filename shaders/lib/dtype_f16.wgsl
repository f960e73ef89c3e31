// F16 weights, stored as groups of 4 (two words) with rows zero-padded to a multiple of 4.
// The matvec reads rows of whole runs of 32 by runs (lib/float_runs.wgsl).

fn words4(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
}

#ifdef FLOAT_RUNS
#define HALF_FLOATS
#include "lib/float_runs.wgsl"
#else
#ifndef MATVEC
// A group is two words (rows are whole groups), read in one load (see dtype_f32).
#define WEIGHTS_VEC2
#endif
#include "lib/weights.wgsl"

const QK: u32 = 4u;
const BLOCK_WORDS: u32 = 2u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
#ifdef WEIGHTS_VEC2
    let q = w2[b >> 1u];
    return words4(q.x, q.y);
#else
    return words4(w[b], w[b + 1u]);
#endif
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
#endif
