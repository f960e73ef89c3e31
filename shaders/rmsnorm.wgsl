// RMSNorm: for each of the step's tokens and each of its rows_per_token rows of width
// elements, n = x / sqrt(mean(x^2) + eps) * w. One workgroup per row. Variants: in place
// (default), OUT (write n to out), OUT + ADD (out += n: Gemma 3's post-norm fused with
// the residual add, saving a pass over the hidden state).
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,           // elements per row (w holds as many)
    rows_per_token: u32,  // 1 for the hidden vector, n_heads for per-head q/k norms
    token_stride: u32,    // elements between tokens, in x and out alike
    max_tokens: u32,      // tokens the dispatch was built for
    x_offset: u32,
    out_offset: u32,
    eps: f32,
    _pad: u32,
}

#ifdef OUT
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let row = wg_index(gs);
    let t = row / p.rows_per_token;
    // Depends only on the workgroup id and uniforms: the whole workgroup leaves together,
    // so the barriers in wg_sum stay in uniform control flow.
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let base = t * p.token_stride + (row % p.rows_per_token) * p.width;
    var ss = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
        let v = x[p.x_offset + base + i];
        ss += v * v;
    }
    let k = inverseSqrt(wg_sum(ss, ids) / f32(p.width) + p.eps);
    for (var i = ids.lid; i < p.width; i += WG) {
        let n = x[p.x_offset + base + i] * k * w[i];
#ifdef OUT
#ifdef ADD
        out[p.out_offset + base + i] += n;
#else
        out[p.out_offset + base + i] = n;
#endif
#else
        x[p.x_offset + base + i] = n;
#endif
    }
}
