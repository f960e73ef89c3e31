// LayerNorm with weight and bias over each token's row, in place (BERT's norms, which
// come after the residual add): RESIDUAL first adds the sub-block output o into x, then
// x = (x - mean) / sqrt(var + eps) * w + b, and h gets a copy of the result (the next
// sub-block's input). Mean first, then the variance around it (ggml_norm's two passes).
// One workgroup per token; each invocation reads back only the x elements it wrote.
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,         // hidden width (w and b hold as many)
    token_stride: u32,  // elements between tokens, in x, o and h alike
    max_tokens: u32,    // tokens the dispatch was built for
    x_offset: u32,
    o_offset: u32,
    h_offset: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
#ifdef RESIDUAL
@group(0) @binding(1) var<storage, read> o: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = wg_index(gs);
    // Depends only on the workgroup id and uniforms: the whole workgroup leaves together.
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let base = p.x_offset + t * p.token_stride;
    var s = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
#ifdef RESIDUAL
        let v = x[base + i] + o[p.o_offset + t * p.token_stride + i];
        x[base + i] = v;
#else
        let v = x[base + i];
#endif
        s += v;
    }
    let mean = wg_sum(s, ids) / f32(p.width);
    var ss = 0.0;
    for (var i = ids.lid; i < p.width; i += WG) {
        let d = x[base + i] - mean;
        ss += d * d;
    }
    let k = inverseSqrt(wg_sum(ss, ids) / f32(p.width) + p.eps);
    let hb = p.h_offset + t * p.token_stride;
    for (var i = ids.lid; i < p.width; i += WG) {
        let v = (x[base + i] - mean) * k * w[i] + b[i];
        x[base + i] = v;
        h[hb + i] = v;
    }
}
