// The weight kernels over a step's tokens (matmul, matvec_batch): Y[t, row_offset + r] =
// sum_k W[r, k] * X[t, k], X and Y rows x_stride and y_stride apart. Their uniform, the
// x and y bindings, and x read four elements at a time. With X_VEC4 (block types: rows
// are whole blocks and the host checks that x's offset and stride are multiples of 4) x
// is bound as vec4 words.
#include "lib/common.wgsl"

struct Params {
    rows: u32,        // rows in this shard
    k: u32,           // elements per row
    row_words: u32,   // words per row in GPU layout
    row_offset: u32,  // first row of this shard in the whole tensor
    n_tokens: u32,    // most tokens per step (the size it was built for)
    x_offset: u32,
    x_stride: u32,    // elements between tokens in x
    y_stride: u32,    // elements between tokens in y
    y_offset: u32,
    t_first: u32,     // first token of this dispatch's column blocks (x_offset is its x)
    blocks: u32,      // the batched matvec's column blocks in this dispatch (CLAIM)
    _pad: u32,
}

#ifdef XUNIFORM
// The batched matvec's x-sharing form where the step's x fits a uniform window (the host
// binds it at its start and gives x_offset from there): on a CPU rasterizer uniform
// loads are branch-free gathers where storage loads are per-lane loops. 4096 vec4 words:
// the host's X_WINDOW bytes (src/kernels/mod.rs).
@group(0) @binding(1) var<uniform> x4: array<vec4<f32>, 4096>;
#else
#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// x[tok, 4g .. 4g+3]; past k it reads 0 (float rows may end inside a group).
fn load_x4(tok: u32, g: u32) -> vec4<f32> {
#ifdef X_VEC4
    return x4[(p.x_offset + tok * p.x_stride) / 4u + g];
#else
    let k0 = 4u * g;
    let o = p.x_offset + tok * p.x_stride + k0;
    if (k0 + 4u > p.k) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < p.k - k0; c++) {
            v[c] = x[o + c];
        }
        return v;
    }
    return vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
#endif
}
