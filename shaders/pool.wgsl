// Pooling of token rows into one vector (sentence embeddings): for each column i,
// out[i] = (accumulate ? out[i] : 0) + scale * sum of x[t, i] over the step's tokens t
// in [first, first + count). Mean pooling sums every token of each prefill chunk with
// scale 1/n (accumulating after the first chunk); CLS and last-token pooling take one row
// with scale 1. What varies per step (rows, scale, accumulate) sits in `args`, written
// by the host before each step; the shape is in `p`. One invocation per column.
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,       // elements per token row
    stride: u32,      // elements between tokens
    x_offset: u32,
    max_tokens: u32,  // tokens the dispatch was built for
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
// first row, row count, scale (f32 bits), accumulate (0 / 1)
@group(0) @binding(2) var<storage, read> args: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let i = wg_index(gs) * WG + ids.lid;
    if (i >= p.width) {
        return;
    }
    let n = min(p.max_tokens, step.n_tokens);
    let first = min(args[0], n);
    let end = min(first + min(args[1], n), n);
    var s = 0.0;
    for (var t = first; t < end; t++) {
        s += x[p.x_offset + t * p.stride + i];
    }
    var acc = 0.0;
    if (args[3] != 0u) {
        acc = out[i];
    }
    out[i] = acc + bitcast<f32>(args[2]) * s;
}
