// Matrix-matrix product for prefill: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for
// the step's tokens (at most p.n_tokens, the size it was built for) over one shard of W.
// Tiled: a workgroup of 64 computes a 64-row x TN-token tile (TN = 64 with WIDE, else
// 32), staging TG-group (4 elements each) slices of W (dequantized once per tile) and of
// X in shared memory; each invocation owns 8 rows x CN tokens of the tile, strided by 8
// (rows tr, tr + 8, ...; tokens tc, tc + 8, ...), so each W vec4 it loads serves CN dot
// products and each X vec4 8. The accumulators are named variables (an indexed array
// lands in per-invocation memory on some compilers, lavapipe's among them).
// The tiles are stored k-group major ([group][row], [group][token]): the 8 lanes with
// consecutive tr read 8 consecutive vec4s of the W tile (no shared-memory bank
// conflicts) and the lanes of one tc read the same X vec4 (a broadcast).
#include "lib/token_rows.wgsl"
#include "lib/step.wgsl"

#ifdef WIDE
const CN: u32 = 8u;        // tokens per invocation
#else
const CN: u32 = 4u;
#endif
const TM: u32 = 64u;       // rows per tile
const TN: u32 = 8u * CN;   // tokens per tile
const TG: u32 = 4u;        // 4-element groups per k step (16 elements)

var<workgroup> ws: array<vec4<f32>, 256>;  // [TG][TM]
var<workgroup> xs: array<vec4<f32>, 256>;  // [TG][TN]

// Writes row `row`'s outputs for tokens t0 + 8(4h + i) (a0: h = 0, a1: h = 1).
fn store_row(row: u32, t0: u32, n_tokens: u32, a0: vec4<f32>, a1: vec4<f32>) {
    if (row >= p.rows) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + 8u * i;
        if (t < n_tokens) {
            y[p.y_offset + t * p.y_stride + p.row_offset + row] = a0[i];
        }
        let u = t + 32u;
        if (CN == 8u && u < n_tokens) {
            y[p.y_offset + u * p.y_stride + p.row_offset + row] = a1[i];
        }
    }
}

@compute @workgroup_size(64)
fn main(ids: Ids, gs: Groups) {
    let tile_r = gs.wid.x * TM;
    let tile_t = gs.wid.y * TN;
    let tr = ids.lid % 8u;   // rows tr + 8r of the tile, r < 8
    let tc = ids.lid / 8u;   // tokens tc + 8c of the tile, c < CN
    let groups = (p.k + 3u) / 4u;
    let n_tokens = min(p.n_tokens, step.n_tokens);
    if (tile_t >= n_tokens) {
        return;
    }
    // a{r}_{h}: row tr + 8r, tokens tc + 8(4h + i) in component i.
    var a0_0 = vec4<f32>(0.0);
    var a0_1 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0);
    var a1_1 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0);
    var a2_1 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0);
    var a3_1 = vec4<f32>(0.0);
    var a4_0 = vec4<f32>(0.0);
    var a4_1 = vec4<f32>(0.0);
    var a5_0 = vec4<f32>(0.0);
    var a5_1 = vec4<f32>(0.0);
    var a6_0 = vec4<f32>(0.0);
    var a6_1 = vec4<f32>(0.0);
    var a7_0 = vec4<f32>(0.0);
    var a7_1 = vec4<f32>(0.0);
    for (var g0 = 0u; g0 < groups; g0 += TG) {
        for (var e = ids.lid; e < TM * TG; e += 64u) {
            let row = tile_r + e / TG;
            let g = g0 + e % TG;
            var v = vec4<f32>(0.0);
            if (row < p.rows && g < groups) {
                v = dq4_row(row * p.row_words, g);
            }
            ws[(e % TG) * TM + e / TG] = v;
        }
        for (var e = ids.lid; e < TN * TG; e += 64u) {
            let tok = tile_t + e / TG;
            let g = g0 + e % TG;
            var v = vec4<f32>(0.0);
            if (tok < n_tokens && g < groups) {
                v = load_x4(tok, g);
            }
            xs[(e % TG) * TN + e / TG] = v;
        }
        workgroupBarrier();
        for (var g = 0u; g < TG; g++) {
            let x0 = xs[g * TN + tc + 0u];
            let x1 = xs[g * TN + tc + 8u];
            let x2 = xs[g * TN + tc + 16u];
            let x3 = xs[g * TN + tc + 24u];
#ifdef WIDE
            let x4 = xs[g * TN + tc + 32u];
            let x5 = xs[g * TN + tc + 40u];
            let x6 = xs[g * TN + tc + 48u];
            let x7 = xs[g * TN + tc + 56u];
#endif
            let w0 = ws[g * TM + tr + 0u];
            a0_0 += vec4<f32>(dot(w0, x0), dot(w0, x1), dot(w0, x2), dot(w0, x3));
#ifdef WIDE
            a0_1 += vec4<f32>(dot(w0, x4), dot(w0, x5), dot(w0, x6), dot(w0, x7));
#endif
            let w1 = ws[g * TM + tr + 8u];
            a1_0 += vec4<f32>(dot(w1, x0), dot(w1, x1), dot(w1, x2), dot(w1, x3));
#ifdef WIDE
            a1_1 += vec4<f32>(dot(w1, x4), dot(w1, x5), dot(w1, x6), dot(w1, x7));
#endif
            let w2 = ws[g * TM + tr + 16u];
            a2_0 += vec4<f32>(dot(w2, x0), dot(w2, x1), dot(w2, x2), dot(w2, x3));
#ifdef WIDE
            a2_1 += vec4<f32>(dot(w2, x4), dot(w2, x5), dot(w2, x6), dot(w2, x7));
#endif
            let w3 = ws[g * TM + tr + 24u];
            a3_0 += vec4<f32>(dot(w3, x0), dot(w3, x1), dot(w3, x2), dot(w3, x3));
#ifdef WIDE
            a3_1 += vec4<f32>(dot(w3, x4), dot(w3, x5), dot(w3, x6), dot(w3, x7));
#endif
            let w4 = ws[g * TM + tr + 32u];
            a4_0 += vec4<f32>(dot(w4, x0), dot(w4, x1), dot(w4, x2), dot(w4, x3));
#ifdef WIDE
            a4_1 += vec4<f32>(dot(w4, x4), dot(w4, x5), dot(w4, x6), dot(w4, x7));
#endif
            let w5 = ws[g * TM + tr + 40u];
            a5_0 += vec4<f32>(dot(w5, x0), dot(w5, x1), dot(w5, x2), dot(w5, x3));
#ifdef WIDE
            a5_1 += vec4<f32>(dot(w5, x4), dot(w5, x5), dot(w5, x6), dot(w5, x7));
#endif
            let w6 = ws[g * TM + tr + 48u];
            a6_0 += vec4<f32>(dot(w6, x0), dot(w6, x1), dot(w6, x2), dot(w6, x3));
#ifdef WIDE
            a6_1 += vec4<f32>(dot(w6, x4), dot(w6, x5), dot(w6, x6), dot(w6, x7));
#endif
            let w7 = ws[g * TM + tr + 56u];
            a7_0 += vec4<f32>(dot(w7, x0), dot(w7, x1), dot(w7, x2), dot(w7, x3));
#ifdef WIDE
            a7_1 += vec4<f32>(dot(w7, x4), dot(w7, x5), dot(w7, x6), dot(w7, x7));
#endif
        }
        workgroupBarrier();
    }
    store_row(tile_r + tr + 0u, tile_t + tc, n_tokens, a0_0, a0_1);
    store_row(tile_r + tr + 8u, tile_t + tc, n_tokens, a1_0, a1_1);
    store_row(tile_r + tr + 16u, tile_t + tc, n_tokens, a2_0, a2_1);
    store_row(tile_r + tr + 24u, tile_t + tc, n_tokens, a3_0, a3_1);
    store_row(tile_r + tr + 32u, tile_t + tc, n_tokens, a4_0, a4_1);
    store_row(tile_r + tr + 40u, tile_t + tc, n_tokens, a5_0, a5_1);
    store_row(tile_r + tr + 48u, tile_t + tc, n_tokens, a6_0, a6_1);
    store_row(tile_r + tr + 56u, tile_t + tc, n_tokens, a7_0, a7_1);
}
