// Matrix-vector product for decode: y[y_offset + row_offset + r] = sum_k W[r, k] * x[x_offset + k]
// over the rows of one shard of W. Each workgroup takes 4 rows; every invocation walks the
// row's 4-element groups with stride WG, and the workgroup sums the partials.
#include "lib/reduce.wgsl"

struct Params {
    rows: u32,        // rows in this shard
    k: u32,           // elements per row
    row_words: u32,   // words per row in GPU layout
    row_offset: u32,  // first row of this shard in the whole tensor
    x_offset: u32,
    y_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// x[4g .. 4g+3]; elements past k read as 0 (float rows may end inside a group).
fn x4(g: u32) -> vec4<f32> {
    let k0 = 4u * g;
    let o = p.x_offset + k0;
#ifdef FLOAT_WEIGHTS
    if (k0 + 4u > p.k) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < p.k - k0; c++) {
            v[c] = x[o + c];
        }
        return v;
    }
#endif
    return vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let row0 = wg_index(gs) * 4u;
    let groups = (p.k + 3u) / 4u;
    var acc = vec4<f32>(0.0);
    for (var g = ids.lid; g < groups; g += WG) {
        let xv = x4(g);
        for (var r = 0u; r < 4u; r++) {
            let row = row0 + r;
            if (row < p.rows) {
                acc[r] += dot(dq4_row(row * p.row_words, g), xv);
            }
        }
    }
    let total = wg_sum4(acc, ids);
    if (ids.lid == 0u) {
        for (var r = 0u; r < 4u; r++) {
            if (row0 + r < p.rows) {
                y[p.y_offset + p.row_offset + row0 + r] = total[r];
            }
        }
    }
}
