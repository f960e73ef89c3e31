// Softmax over rows in place: x[t, i] = exp(s x[t, i] - m) / sum_j exp(s x[t, j] - m) with
// s = scale and m = max_j s x[t, j], so no exponential overflows. One workgroup per row,
// three sweeps (max, sum, write); exponentials are recomputed rather than stored, which
// costs less memory traffic than writing the row twice.
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,
    token_stride: u32,
    x_offset: u32,
    max_tokens: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = wg_index(gs);
    // Uniform across the workgroup: the barriers below stay in uniform control flow.
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let base = p.x_offset + t * p.token_stride;
    // The lowest finite f32: invocations without elements must not raise the maximum.
    var m = -3.4028234e38;
    for (var i = ids.lid; i < p.width; i += WG) {
        m = max(m, p.scale * x[base + i]);
    }
    m = wg_max(m, ids);
    var s = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
        s += exp(p.scale * x[base + i] - m);
    }
    let inv = 1.0 / wg_sum(s, ids);
    for (var i = ids.lid; i < p.width; i += WG) {
        x[base + i] = exp(p.scale * x[base + i] - m) * inv;
    }
}
