// Element-wise over token rows: y[t, i] += scale * x[t, i] (x_stride 0 broadcasts x's
// first row, for biases), or with SCALE x[t, i] *= scale in place, or with SOFTCAP
// x[t, i] = scale * tanh(x[t, i] / scale) in place (logit soft-capping). One invocation per
// element; workgroups run token-major (groups_per_token per token).
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,             // elements per token
    x_stride: u32,          // elements between x's tokens (0: broadcast row 0)
    y_stride: u32,          // elements between y's tokens
    x_offset: u32,
    y_offset: u32,
    max_tokens: u32,        // tokens the dispatch was built for
    groups_per_token: u32,
    scale: f32,
}

#ifdef SOFTCAP
#define SCALE
#endif
#ifdef SCALE
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#endif
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs);
    let t = g / p.groups_per_token;
    let i = (g % p.groups_per_token) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens) || i >= p.width) {
        return;
    }
    let xi = p.x_offset + t * p.x_stride + i;
#ifdef SOFTCAP
    // tanh saturates to 1 in f32 long before 15; the clamp keeps exp-based tanh
    // implementations away from inf / inf.
    x[xi] = p.scale * tanh(clamp(x[xi] / p.scale, -15.0, 15.0));
#else
#ifdef SCALE
    x[xi] *= p.scale;
#else
    let yi = p.y_offset + t * p.y_stride + i;
    y[yi] += p.scale * x[xi];
#endif
#endif
}
