// Matrix times the step's token columns, for a batched decode step that advances several
// sequences by one token each: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for the
// tokens t0 <= t < t0 + COLS of this workgroup's column block (t < min(p.n_tokens,
// step.n_tokens)). LANES consecutive invocations share a row; each lane decodes its
// stride of the row's 4-element groups once (the dtype's dq4_row) and multiplies every
// decoded group into all COLS columns, so a step reads and decodes the weights once
// however many sequences it advances. The row's lanes are summed per column with
// subgroup shuffles or, without subgroups, in shared memory. WG and LANES come from the
// matvec geometry table; COLS (tokens per workgroup) from the host's pick per step.
// GATED: Y holds the FFN's gate projection, and the result u becomes y = act(y) * u.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#ifdef GATED
#include "lib/act.wgsl"
#endif

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const ROWS: u32 = WG / LANES;

// x[tok, 4g .. 4g+3]; past k it reads 0 (float rows may end inside a group).
fn load_x4(tok: u32, g: u32) -> vec4<f32> {
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
}

#ifndef SUBGROUPS
var<workgroup> lane_sums: array<f32, WG>;
#endif

// The sum of v over the LANES lanes of a row, valid in lane 0. Uniform control flow.
fn row_sum(v: f32, ids: Ids, lane: u32) -> f32 {
    var s = v;
#ifdef SUBGROUPS
    // The host uses this form only when LANES divides the smallest subgroup size.
    for (var m = LANES / 2u; m > 0u; m >>= 1u) {
        s += subgroupShuffleXor(s, m);
    }
#else
    lane_sums[ids.lid] = s;
    workgroupBarrier();
    for (var m = LANES / 2u; m > 0u; m >>= 1u) {
        if (lane < m) {
            lane_sums[ids.lid] += lane_sums[ids.lid + m];
        }
        workgroupBarrier();
    }
    s = lane_sums[ids.lid];
    // The next column overwrites lane_sums.
    workgroupBarrier();
#endif
    return s;
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n = min(p.n_tokens, step.n_tokens);
    let t0 = gs.wid.z * COLS;
    if (t0 >= n) {
        return;
    }
    let lane = ids.lid % LANES;
    let row = (gs.wid.x + gs.wid.y * gs.nwg.x) * ROWS + ids.lid / LANES;
    // Past the last row, recompute it (never stored): the lanes stay in step for the sums.
    let r = min(row, p.rows - 1u);
    let base = r * p.row_words;
    let groups = (p.k + 3u) / 4u;
    // Columns past the step's tokens repeat its last token (never stored).
    let last = n - 1u;
    var acc: array<f32, COLS>;
    for (var g = lane; g < groups; g += LANES) {
        let wv = dq4_row(base, g);
        for (var c = 0u; c < COLS; c++) {
            acc[c] += dot(wv, load_x4(min(t0 + c, last), g));
        }
    }
    for (var c = 0u; c < COLS; c++) {
        let total = row_sum(acc[c], ids, lane);
        let t = t0 + c;
        if (lane == 0u && row < p.rows && t < n) {
            let yi = p.y_offset + t * p.y_stride + p.row_offset + row;
#ifdef GATED
            y[yi] = act(y[yi]) * total;
#else
            y[yi] = total;
#endif
        }
    }
}
