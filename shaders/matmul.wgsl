// Matrix-matrix product for prefill: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for
// the step's tokens (at most p.n_tokens, the size it was built for) over one shard of W. Tiled: a workgroup of 64 computes a
// 32-row x 32-token tile, staging 32-element slices of W (dequantized once per tile) and
// of X in shared memory; each invocation owns 4 rows x 4 tokens of the tile, strided by 8
// (rows tr, tr + 8, ...; tokens tc, tc + 8, ...). The tiles are stored k-group major
// ([group][row], [group][token]), so the 8 lanes with consecutive tr read 8 consecutive
// vec4s of the W tile (no shared-memory bank conflicts) and lanes of one tc read the
// same X vec4 (a broadcast).
#include "lib/token_rows.wgsl"
#include "lib/step.wgsl"

const TM: u32 = 32u;   // rows per tile
const TN: u32 = 32u;   // tokens per tile
const TG: u32 = 8u;    // 4-element groups per k step (32 elements)

var<workgroup> ws: array<vec4<f32>, 256>;  // [TG][TM]
var<workgroup> xs: array<vec4<f32>, 256>;  // [TG][TN]

@compute @workgroup_size(64)
fn main(ids: Ids, gs: Groups) {
    let tile_r = gs.wid.x * TM;
    let tile_t = gs.wid.y * TN;
    let tr = ids.lid % 8u;   // rows tr + 8r of the tile, r < 4
    let tc = ids.lid / 8u;   // tokens tc + 8c of the tile, c < 4
    let groups = (p.k + 3u) / 4u;
    let n_tokens = min(p.n_tokens, step.n_tokens);
    if (tile_t >= n_tokens) {
        return;
    }
    var acc: array<vec4<f32>, 4>;  // acc[r][c]
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
            let x0 = xs[g * TN + tc];
            let x1 = xs[g * TN + tc + 8u];
            let x2 = xs[g * TN + tc + 16u];
            let x3 = xs[g * TN + tc + 24u];
            for (var r = 0u; r < 4u; r++) {
                let wv = ws[g * TM + tr + 8u * r];
                acc[r] += vec4<f32>(dot(wv, x0), dot(wv, x1), dot(wv, x2), dot(wv, x3));
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let row = tile_r + tr + 8u * r;
        for (var c = 0u; c < 4u; c++) {
            let tok = tile_t + tc + 8u * c;
            if (row < p.rows && tok < n_tokens) {
                y[p.y_offset + tok * p.y_stride + p.row_offset + row] = acc[r][c];
            }
        }
    }
}
