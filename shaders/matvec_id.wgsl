// Expert projections of a mixture-of-experts FFN (ggml's MUL_MAT_ID): for each token t of
// the step and each of its n_used selected experts j (expert e = sel[t * n_used + j]),
//   y[t, j, r] = sum_k W[e * expert_rows + r, k] * x[t, j, k]  (+ bias[e * expert_rows + r])
// for r < expert_rows, so a step reads only the selected experts' rows. The tensor holds
// every expert's rows one after another; a dispatch covers one shard of them (global rows
// [row_offset, row_offset + rows)) and computes the outputs whose rows it holds. x is the
// token's row (x_slot_stride 0: every expert reads the FFN input) or one row per slot (the
// down projection reads each expert's activation). LANES consecutive invocations share an
// output row: each decodes its stride of the row's 4-element groups (the dtype's dq4_row);
// the lanes are summed with subgroup shuffles or in shared memory.
// Workgroup (row block, slot j, token t).
#ifndef FLOAT_WEIGHTS
#define X_VEC4
#endif
#include "lib/common.wgsl"
#include "lib/row_sum.wgsl"
#include "lib/step.wgsl"

struct IdParams {
    rows: u32,          // rows in this shard
    k: u32,             // elements per row
    row_words: u32,     // words per row in GPU layout
    row_offset: u32,    // first row of this shard in the whole tensor
    n_tokens: u32,      // most tokens per step (the size it was built for)
    x_offset: u32,
    x_stride: u32,      // elements between tokens in x
    x_slot_stride: u32, // elements between a token's slots in x (0: one row per token)
    y_offset: u32,
    y_stride: u32,      // elements between tokens in y (n_used * expert_rows or more)
    expert_rows: u32,   // output rows of one expert
    n_used: u32,        // experts per token
}

#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: IdParams;
@group(0) @binding(4) var<storage, read> sel: array<u32>;
#ifdef BIAS
@group(0) @binding(5) var<storage, read> bias: array<f32>;
#endif

const ROWS: u32 = WG / LANES;

// Elements 4g..4g+3 of x's row starting at element `o`; past k it reads 0.
fn load_x4(o: u32, g: u32) -> vec4<f32> {
#ifdef X_VEC4
    return x4[o / 4u + g];
#else
    let k0 = 4u * g;
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (k0 + c < p.k) {
            v[c] = x[o + k0 + c];
        }
    }
    return v;
#endif
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = gs.wid.z;
    let j = gs.wid.y;
    if (t >= min(p.n_tokens, step.n_tokens) || j >= p.n_used) {
        return;
    }
    let lane = ids.lid % LANES;
    let r = gs.wid.x * ROWS + ids.lid / LANES;
    let e = sel[t * p.n_used + j];
    // The global row, and whether this shard holds it (rows past the expert's end
    // recompute its last row and store nothing: the lanes stay in step for the sums).
    let g = e * p.expert_rows + min(r, p.expert_rows - 1u);
    let mine = r < p.expert_rows && g >= p.row_offset && g - p.row_offset < p.rows;
    let local = min(g - min(g, p.row_offset), p.rows - 1u);
    let base = local * p.row_words;
    let xo = p.x_offset + t * p.x_stride + j * p.x_slot_stride;
    var acc = 0.0;
    if (mine) {
        for (var gi = lane; gi < (p.k + 3u) / 4u; gi += LANES) {
            acc += dot(dq4_row(base, gi), load_x4(xo, gi));
        }
    }
    let total = row_sum(acc, ids, lane);
    if (lane == 0u && mine) {
        var v = total;
#ifdef BIAS
        v += bias[e * p.expert_rows + r];
#endif
        y[p.y_offset + t * p.y_stride + j * p.expert_rows + r] = v;
    }
}
