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
#ifndef FLOAT_WEIGHTS
#define X_VEC4
#endif
#include "lib/token_rows.wgsl"
#include "lib/row_sum.wgsl"
#include "lib/step.wgsl"
#ifdef GATED
#include "lib/act.wgsl"
#endif

const ROWS: u32 = WG / LANES;

// Rows per invocation: each x value read serves BR rows, as each decoded weight group
// serves COLS columns (a BR x COLS register tile).
const BR: u32 = 4u;

// w's dot products with four columns' x.
fn dots4(w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(w, x0), dot(w, x1), dot(w, x2), dot(w, x3));
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n = min(p.n_tokens, step.n_tokens);
    let t0 = gs.wid.z * COLS;
    if (t0 >= n) {
        return;
    }
    let lane = ids.lid % LANES;
    let first = ((gs.wid.x + gs.wid.y * gs.nwg.x) * ROWS + ids.lid / LANES) * BR;
    // Past the last row, recompute it (never stored): the lanes stay in step for the sums.
    let top = p.rows - 1u;
    let b0 = min(first, top) * p.row_words;
    let b1 = min(first + 1u, top) * p.row_words;
    let b2 = min(first + 2u, top) * p.row_words;
    let b3 = min(first + 3u, top) * p.row_words;
    let groups = (p.k + 3u) / 4u;
    // Columns past the step's tokens repeat its last token (never stored). The
    // accumulators are named vec4s (row r, 4 columns each), so they stay in registers.
    let last = n - 1u;
    let c0 = min(t0, last);
    let c1 = min(t0 + 1u, last);
    let c2 = min(t0 + 2u, last);
    let c3 = min(t0 + 3u, last);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
#ifdef WIDE
    let c4 = min(t0 + 4u, last);
    let c5 = min(t0 + 5u, last);
    let c6 = min(t0 + 6u, last);
    let c7 = min(t0 + 7u, last);
    var e0 = vec4<f32>(0.0);
    var e1 = vec4<f32>(0.0);
    var e2 = vec4<f32>(0.0);
    var e3 = vec4<f32>(0.0);
#endif
    for (var g = lane; g < groups; g += LANES) {
        let x0 = load_x4(c0, g);
        let x1 = load_x4(c1, g);
        let x2 = load_x4(c2, g);
        let x3 = load_x4(c3, g);
        let w0 = dq4_row(b0, g);
        let w1 = dq4_row(b1, g);
        let w2 = dq4_row(b2, g);
        let w3 = dq4_row(b3, g);
        a0 += dots4(w0, x0, x1, x2, x3);
        a1 += dots4(w1, x0, x1, x2, x3);
        a2 += dots4(w2, x0, x1, x2, x3);
        a3 += dots4(w3, x0, x1, x2, x3);
#ifdef WIDE
        let x4 = load_x4(c4, g);
        let x5 = load_x4(c5, g);
        let x6 = load_x4(c6, g);
        let x7 = load_x4(c7, g);
        e0 += dots4(w0, x4, x5, x6, x7);
        e1 += dots4(w1, x4, x5, x6, x7);
        e2 += dots4(w2, x4, x5, x6, x7);
        e3 += dots4(w3, x4, x5, x6, x7);
#endif
    }
    let lo = array<vec4<f32>, 4>(a0, a1, a2, a3);
#ifdef WIDE
    let hi = array<vec4<f32>, 4>(e0, e1, e2, e3);
#endif
    for (var r = 0u; r < BR; r++) {
        for (var c = 0u; c < COLS; c++) {
#ifdef WIDE
            let v = select(lo[r][c & 3u], hi[r][c & 3u], c >= 4u);
#else
            let v = lo[r][c];
#endif
            let total = row_sum(v, ids, lane);
            let t = t0 + c;
            let row = first + r;
            if (lane == 0u && row < p.rows && t < n) {
                let yi = p.y_offset + t * p.y_stride + p.row_offset + row;
#ifdef GATED
                y[yi] = gated(y[yi], total);
#else
                y[yi] = total;
#endif
            }
        }
    }
}
