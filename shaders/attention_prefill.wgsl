// Causal attention for the step's tokens (prefill), flash-attention style: queries are
// tiled in rows of (token, head of one kv group), R rows per workgroup, so the K/V tile
// staged in shared memory serves every head that shares it (GQA / MQA). Each row is owned
// by L invocations, each holding head_dim / L of the row's q and output in registers.
// Per key tile: lanes write partial dot products, every lane of a row sums them, and the
// row's running max / exp-sum / output are rescaled (online softmax).
// Query t sits at position row_pos(t) and sees keys [window_lo(row_pos(t) + 1), row_pos(t)]
// of its sequence. The host runs this kernel only on steps whose tokens are one sequence's
// consecutive positions, so a workgroup's keys are one slot's.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"

struct Params {
    n_heads: u32,
    group: u32,       // q heads per kv head
    head_dim: u32,
    kv_dim: u32,
    capacity: u32,
    window: u32,      // 0: no sliding window
    max_tokens: u32,
    q_offset: u32,
    out_offset: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const L: u32 = 8u;          // lanes per row
const R: u32 = WG / L;      // rows per workgroup
// HD (head_dim), DPL (dims per lane, ceil(HD / L)) and BK (keys per tile) are defines,
// a pipeline per head_dim: the per-lane loops then unroll and q, the output and the
// scores stay in registers rather than in indexed per-invocation memory.
const BK_MAX: u32 = 16u;    // keys per tile at most (the `part` layout)
// Elements of each K / V tile: 4 KiB in either element type, so the workgroup stays
// within the 16 KiB of shared memory WebGPU guarantees.
#ifdef F16
const TILE: u32 = 2048u;
#else
const TILE: u32 = 1024u;
#endif
const NEG: f32 = -1e30;     // finite -inf: rows with no key yet rescale by exp(0) = 1

var<workgroup> ks: array<kv_t, TILE>;
var<workgroup> vs: array<kv_t, TILE>;
var<workgroup> part: array<f32, 1024>;  // [key j][invocation], BK_MAX * WG

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n_tok = min(p.max_tokens, step.n_tokens);
    let row0 = gs.wid.x * R;
    let kvh = gs.wid.y;
    let t_first = row0 / p.group;
    if (t_first >= n_tok) {
        return;
    }
    let t_last = min((row0 + R - 1u) / p.group, n_tok - 1u);
    // Keys any row of this workgroup needs (clamped to the cache: never read past it).
    let k_lo = window_lo(row_pos(t_first) + 1u, p.window);
    let k_hi = min(row_pos(t_last) + 1u, p.capacity);
    let slot = row_slot(t_first);
    let hd = HD;
    let bk = BK;
    let nd = DPL;

    let r = ids.lid / L;
    let lane = ids.lid % L;
    let row = row0 + r;
    let t = row / p.group;
    let h = kvh * p.group + row % p.group;
    let live = t < n_tok;
    let my_hi = row_pos(min(t, n_tok - 1u)) + 1u;
    let my_lo = window_lo(my_hi, p.window);
    let stride = p.n_heads * hd;

    var qr: array<f32, DPL>;
    var o: array<f32, DPL>;
    if (live) {
        for (var i = 0u; i < nd; i++) {
            let d = lane + i * L;
            if (d < hd) {
                qr[i] = q[p.q_offset + t * stride + h * hd + d] * p.scale;
            }
        }
    }
    var m = NEG;
    var lsum = 0.0;
    var sc: array<f32, BK>;

    for (var k0 = k_lo; k0 < k_hi; k0 += bk) {
        let nk = min(bk, k_hi - k0);
        for (var e = ids.lid; e < nk * hd; e += WG) {
            let src = cache_row(slot, k0 + e / hd, p.capacity) * p.kv_dim + kvh * hd + e % hd;
            ks[e] = kc[src];
            vs[e] = vc[src];
        }
        workgroupBarrier();
        for (var j = 0u; j < nk; j++) {
            var s = 0.0;
            for (var i = 0u; i < nd; i++) {
                let d = lane + i * L;
                if (d < hd) {
                    s += qr[i] * f32(ks[j * hd + d]);
                }
            }
            part[j * WG + ids.lid] = s;
        }
        workgroupBarrier();
        // Every lane of the row sums the same partials in the same order, so the row's
        // softmax state stays identical across its lanes.
        var mt = m;
        for (var j = 0u; j < BK; j++) {
            let kp = k0 + j;
            var s = NEG;
            if (j < nk && kp >= my_lo && kp < my_hi) {
                s = 0.0;
                for (var x = 0u; x < L; x++) {
                    s += part[j * WG + r * L + x];
                }
                mt = max(mt, s);
            }
            sc[j] = s;
        }
        let alpha = exp(m - mt);
        lsum *= alpha;
        for (var i = 0u; i < nd; i++) {
            o[i] *= alpha;
        }
        for (var j = 0u; j < BK; j++) {
            if (sc[j] > NEG) {
                let w = exp(sc[j] - mt);
                lsum += w;
                for (var i = 0u; i < nd; i++) {
                    let d = lane + i * L;
                    if (d < hd) {
                        o[i] += w * f32(vs[j * hd + d]);
                    }
                }
            }
        }
        m = mt;
        // The next tile overwrites ks, vs and part.
        workgroupBarrier();
    }

    if (live) {
        // lsum is 0 only for a query past the cache's capacity (a caller error).
        var inv = 0.0;
        if (lsum > 0.0) {
            inv = 1.0 / lsum;
        }
        for (var i = 0u; i < nd; i++) {
            let d = lane + i * L;
            if (d < hd) {
                out[p.out_offset + t * stride + h * hd + d] = o[i] * inv;
            }
        }
    }
}
