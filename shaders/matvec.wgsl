// Matrix-vector product for decode: y[y_offset + row_offset + r] = sum_k W[r, k] * x[x_offset + k]
// over the rows of one shard of W. LANES consecutive invocations share one row, so rows
// map onto subgroups; each lane walks the row's block parts with stride LANES, decoding a
// whole part (8 to 32 weights) with its block's scale unpacked once (the dtype's
// `dot_block_part`; split-row types read a part's quants in one 16-byte load), and the
// row's lanes are summed with subgroup shuffles or, without subgroups, in shared memory.
// WG and LANES come from the host's per-adapter table.
// GATED: y holds the FFN's gate projection, and the row's result u becomes
// y = act(y) * u (the up projection with the gated activation as its epilogue).
#include "lib/common.wgsl"
#ifdef GATED
#include "lib/act.wgsl"
#endif

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

#ifdef LANES_1
const LANES: u32 = 1u;
#endif
#ifdef LANES_4
const LANES: u32 = 4u;
#endif
#ifdef LANES_8
const LANES: u32 = 8u;
#endif
#ifdef LANES_16
const LANES: u32 = 16u;
#endif
#ifdef LANES_32
const LANES: u32 = 32u;
#endif
#ifdef LANES_64
const LANES: u32 = 64u;
#endif

// Rows per workgroup.
const ROWS: u32 = WG / LANES;

// x[e .. e+3] of the row's input (e a multiple of 4); past k it reads 0 (float rows
// may end inside a group).
fn xv4(e: u32) -> vec4<f32> {
    let o = p.x_offset + e;
#ifdef FLOAT_WEIGHTS
    if (e + 4u > p.k) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < p.k - e; c++) {
            v[c] = x[o + c];
        }
        return v;
    }
#endif
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
#endif
    return s;
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let lane = ids.lid % LANES;
    let row = wg_index(gs) * ROWS + ids.lid / LANES;
    var acc = 0.0;
    if (row < p.rows) {
        let base = row * p.row_words;
        let nb = (p.k + QK - 1u) / QK;
        for (var i = lane; i < nb * PARTS; i += LANES) {
            let blk = i / PARTS;
            acc += dot_block_part(base, nb, blk, i % PARTS, blk * QK);
        }
    }
    let total = row_sum(acc, ids, lane);
    if (lane == 0u && row < p.rows) {
        let yi = p.y_offset + p.row_offset + row;
#ifdef GATED
        y[yi] = act(y[yi]) * total;
#else
        y[yi] = total;
#endif
    }
}
