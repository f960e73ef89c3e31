// Embedding lookup: out[out_offset + t * out_stride + k] = W[ids[t], k], dequantized, for
// the step's tokens (at most p.n_ids, the size it was built for).
// Dispatched once per shard of W; each dispatch fills the tokens whose row it holds.
// POSITIONS: the row of token t is its position in its sequence (BERT's absolute position
// embeddings) rather than row_ids[t]; ADD: out += the row instead of out = the row.
// Without ADD the row is written times p.scale (1, or Gemma's embedding scale).
// NORM (one token): the first pre-norm's inputs with the row, as an adding projection
// leaves them for the projections that fold the norm in (`matvec.wgsl`'s PREP): hn =
// row * wn laid out as out, and the row's sum of squares in ssq[t]. One workgroup per
// token walks its row's groups.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#ifdef NORM
#include "lib/reduce.wgsl"
#endif

struct Params {
    rows: u32,
    k: u32,
    row_words: u32,
    row_offset: u32,
    n_ids: u32,
    out_offset: u32,
    out_stride: u32,
    scale: f32,
}

@group(0) @binding(1) var<storage, read> row_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef NORM
@group(0) @binding(4) var<storage, read> wn: array<f32>;
@group(0) @binding(5) var<storage, read_write> hn: array<f32>;
@group(0) @binding(6) var<storage, read_write> ssq: array<f32>;
#endif

#ifdef NORM
@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    // Both exits are the same for the whole workgroup (its token's), before the barriers.
    let t = gs.wid.y;
    if (t >= min(p.n_ids, step.n_tokens)) {
        return;
    }
    let id = row_ids[t];
    if (id < p.row_offset || id - p.row_offset >= p.rows) {
        return;
    }
    let groups = (p.k + 3u) / 4u;
    var ss = 0.0;
    for (var g = ids.lid; g < groups; g += WG) {
        let v = dq4_row((id - p.row_offset) * p.row_words, g) * p.scale;
        let o = p.out_offset + t * p.out_stride + 4u * g;
        for (var c = 0u; c < min(4u, p.k - 4u * g); c++) {
            out[o + c] = v[c];
            hn[o + c] = v[c] * wn[4u * g + c];
            ss += v[c] * v[c];
        }
    }
    let total = wg_sum(ss, ids);
    if (ids.lid == 0u) {
        ssq[t] = total;
    }
}
#else
@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = gs.wid.x * WG + ids.lid;
    let t = gs.wid.y;
    let groups = (p.k + 3u) / 4u;
    if (t >= min(p.n_ids, step.n_tokens) || g >= groups) {
        return;
    }
#ifdef POSITIONS
    // row_ids stays bound (the kernel's fixed layout); its first entry only keeps it live.
    let id = row_pos(t) + 0u * row_ids[0];
#else
    let id = row_ids[t];
#endif
    if (id < p.row_offset || id - p.row_offset >= p.rows) {
        return;
    }
    let v = dq4_row((id - p.row_offset) * p.row_words, g);
    let o = p.out_offset + t * p.out_stride + 4u * g;
    for (var c = 0u; c < min(4u, p.k - 4u * g); c++) {
#ifdef ADD
        out[o + c] += v[c];
#else
        out[o + c] = v[c] * p.scale;
#endif
    }
}
#endif
