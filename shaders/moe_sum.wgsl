// The mixture-of-experts FFN's output for each token t of the step: the weighted sum of
// its experts' down projections, out[t, i] = sum_j wts[t * n_used + j] * y[t, j, i] for
// i < width (y rows width apart, a token's n_used rows together); with SHARED, plus
// sigmoid(shared_gate[t]) times the shared expert's output already in out. One
// invocation per element.
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct SumParams {
    width: u32,
    n_used: u32,
    y_offset: u32,
    out_offset: u32,
    out_stride: u32,
    max_tokens: u32,
    groups_per_token: u32,
    _pad: u32,
}

@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: SumParams;
@group(0) @binding(4) var<storage, read> wts: array<f32>;
#ifdef SHARED
// A shared expert's gate logit per token; its output is already in `out`.
@group(0) @binding(5) var<storage, read> shared_gate: array<f32>;
#endif

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs);
    let t = g / p.groups_per_token;
    let i = (g % p.groups_per_token) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens) || i >= p.width) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        s += wts[t * p.n_used + j] * y[p.y_offset + (t * p.n_used + j) * p.width + i];
    }
    let o = p.out_offset + t * p.out_stride + i;
#ifdef SHARED
    s += out[o] / (1.0 + exp(-clamp(shared_gate[t], -80.0, 80.0)));
#endif
    out[o] = s;
}
