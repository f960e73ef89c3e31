// The residual add of a sub-block fused with the next pre-norm, per token over the
// hidden width: x += o (POST: x += RmsNorm(o) * post, Gemma 3's sandwich norm), then
// h = RmsNorm(x) * w. One workgroup per token; each invocation reads back only the x
// elements it wrote, so one pass needs no barrier beyond the two sums.
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"

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

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> o: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> w: array<f32>;
#ifdef POST
@group(0) @binding(5) var<storage, read> post: array<f32>;
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
        so += v * v;
    }
    let ko = inverseSqrt(wg_sum(so, ids) / f32(p.width) + p.eps);
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
        ss += v * v;
    }
    let k = inverseSqrt(wg_sum(ss, ids) / f32(p.width) + p.eps);
    for (var i = ids.lid; i < p.width; i += WG) {
        h[p.h_offset + base + i] = x[p.x_offset + base + i] * k * w[i];
    }
}
