// Matrix-matrix product for prefill: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for
// the step's tokens (at most p.n_tokens, the size it was built for) over one shard of W. Tiled: a workgroup of 64 computes a
// 32-row x 32-token tile, staging 32-element slices of W (dequantized once per tile) and
// of X in shared memory; each invocation owns a 4 x 4 block of the tile.
#include "lib/token_rows.wgsl"
#include "lib/step.wgsl"

const TM: u32 = 32u;   // rows per tile
const TN: u32 = 32u;   // tokens per tile
const TG: u32 = 8u;    // 4-element groups per k step (32 elements)

var<workgroup> ws: array<vec4<f32>, 256>;  // [TM][TG]
var<workgroup> xs: array<vec4<f32>, 256>;  // [TN][TG]

@compute @workgroup_size(64)
fn main(ids: Ids, gs: Groups) {
    let tile_r = gs.wid.x * TM;
    let tile_t = gs.wid.y * TN;
    let tr = ids.lid % 8u;   // rows tr*4 .. tr*4+3 of the tile
    let tc = ids.lid / 8u;   // tokens tc*4 .. tc*4+3 of the tile
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
            ws[e] = v;
        }
        for (var e = ids.lid; e < TN * TG; e += 64u) {
            let tok = tile_t + e / TG;
            let g = g0 + e % TG;
            var v = vec4<f32>(0.0);
            if (tok < n_tokens && g < groups) {
                v = load_x4(tok, g);
            }
            xs[e] = v;
        }
        workgroupBarrier();
        for (var g = 0u; g < TG; g++) {
            let x0 = xs[(tc * 4u + 0u) * TG + g];
            let x1 = xs[(tc * 4u + 1u) * TG + g];
            let x2 = xs[(tc * 4u + 2u) * TG + g];
            let x3 = xs[(tc * 4u + 3u) * TG + g];
            for (var r = 0u; r < 4u; r++) {
                let wv = ws[(tr * 4u + r) * TG + g];
                acc[r] += vec4<f32>(dot(wv, x0), dot(wv, x1), dot(wv, x2), dot(wv, x3));
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let row = tile_r + tr * 4u + r;
        for (var c = 0u; c < 4u; c++) {
            let tok = tile_t + tc * 4u + c;
            if (row < p.rows && tok < n_tokens) {
                y[p.y_offset + tok * p.y_stride + p.row_offset + row] = acc[r][c];
            }
        }
    }
}
