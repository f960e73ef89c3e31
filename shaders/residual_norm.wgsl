// The residual add of a sub-block fused with the next pre-norm, per token over the
// hidden width: x += o (POST: x += RmsNorm(o) * post, Gemma 3's sandwich norm), then
// h = RmsNorm(x) * w. One workgroup per token; each invocation reads back only the x
// elements it wrote, so one pass needs no barrier beyond the two sums.
// VEC4 (the host's pick where the width, the token stride and every offset are whole
// vec4s): every buffer is read and written four elements at a time, and the params count
// vec4s. On lavapipe a storage access at per-invocation addresses is a loop over the
// lanes, so a vec4 is a quarter of the loops; on GPUs it is a 16-byte access.
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"

// Widths, strides and offsets in elements of `elt` (vec4s with VEC4).
struct Params {
    width: u32,         // hidden width (w and post hold as many)
    token_stride: u32,  // elements between tokens, in x, o and h alike
    max_tokens: u32,    // tokens the dispatch was built for
    x_offset: u32,
    o_offset: u32,
    h_offset: u32,
    eps: f32,
    _pad: u32,
}

#ifdef VEC4
alias elt = vec4<f32>;
const PACK: u32 = 4u;

fn sq(v: elt) -> f32 {
    return dot(v, v);
}
#else
alias elt = f32;
const PACK: u32 = 1u;

fn sq(v: elt) -> f32 {
    return v * v;
}
#endif

@group(0) @binding(0) var<storage, read_write> x: array<elt>;
@group(0) @binding(1) var<storage, read> o: array<elt>;
@group(0) @binding(2) var<storage, read_write> h: array<elt>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> w: array<elt>;
#ifdef POST
@group(0) @binding(5) var<storage, read> post: array<elt>;
#endif

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = wg_index(gs);
    // Depends only on the workgroup id and uniforms: the whole workgroup leaves together.
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let base = t * p.token_stride;
#ifdef POST
    var so = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
        let v = o[p.o_offset + base + i];
        so += sq(v);
    }
    let ko = inverseSqrt(wg_sum(so, ids) / f32(p.width * PACK) + p.eps);
#endif
    var ss = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
#ifdef POST
        let add = o[p.o_offset + base + i] * ko * post[i];
#else
        let add = o[p.o_offset + base + i];
#endif
        let v = x[p.x_offset + base + i] + add;
        x[p.x_offset + base + i] = v;
        ss += sq(v);
    }
    let k = inverseSqrt(wg_sum(ss, ids) / f32(p.width * PACK) + p.eps);
    for (var i = ids.lid; i < p.width; i += WG) {
        h[p.h_offset + base + i] = x[p.x_offset + base + i] * k * w[i];
    }
}
