// Causal prefill attention with one query row per invocation, for CPU rasterizers
// (lavapipe runs each invocation as a SIMD lane, where every load is a per-lane gather
// and a subgroup shuffle a register permute). Invocation i of a workgroup owns query row
// row0 + i, a (token, head of one kv group) pair, whole: its q and its output are HD4
// vec4s in registers, with an online softmax. The rows of a subgroup walk the same keys
// (the union of their ranges, each masking its own), so each key's K and V rows are
// loaded once per subgroup: lane j loads vec4 columns j, j + 8, ... and every lane takes
// column c from lane c % 8 by subgroupShuffle. The host runs it for f16 or f32 caches,
// head_dim a multiple of 32, vec4 q, and steps of one sequence's consecutive positions.
// Its twin is attention_prefill's (the same Params and bindings).
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
    softcap: f32,     // > 0: scores become softcap * tanh(score / softcap)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<kv_t>>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#ifdef SINKS
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

const HD4: u32 = HD / 4u;   // vec4 columns of a head
const PER: u32 = HD4 / 8u;  // columns each lane of eight loads per key
const NEG: f32 = -1e30;     // finite -inf: rows with no key yet rescale by exp(0) = 1

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n_tok = min(p.max_tokens, step.n_tokens);
    let row0 = gs.wid.x * WG;
    let kvh = gs.wid.y;
    if (row0 / p.group >= n_tok) {
        return;
    }
    let row = row0 + ids.lid;
    let t = row / p.group;
    let h = kvh * p.group + row % p.group;
    let live = t < n_tok;
    let tc = min(t, n_tok - 1u);
    let my_pos = row_pos(tc);
    let my_lo = window_lo(my_pos + 1u, p.window);
    let my_hi = min(my_pos + 1u, p.capacity);
    // The keys of the subgroup's rows; never past the cache.
    let k_lo = subgroupMin(my_lo);
    let k_hi = subgroupMax(my_hi);
    let slot = row_slot(tc);
    let lane = ids.lane % 8u;

    var qr: array<vec4<f32>, HD4>;
    var o: array<vec4<f32>, HD4>;
    let qe = (p.q_offset + tc * p.n_heads * HD + h * HD) / 4u;
    for (var c = 0u; c < HD4; c++) {
        qr[c] = q[qe + c] * p.scale;
    }
    var m = NEG;
    var lsum = 0.0;
    for (var s = k_lo; s < k_hi; s++) {
        let src = (cache_row(slot, s, p.capacity) * p.kv_dim + kvh * HD) / 4u + lane;
        var kl: array<vec4<f32>, PER>;
        var vl: array<vec4<f32>, PER>;
        for (var i = 0u; i < PER; i++) {
            kl[i] = vec4<f32>(kc[src + 8u * i]);
            vl[i] = vec4<f32>(vc[src + 8u * i]);
        }
        var sc = 0.0;
        for (var i = 0u; i < PER; i++) {
            for (var cc = 0u; cc < 8u; cc++) {
                sc += dot(qr[8u * i + cc], subgroupShuffle(kl[i], cc));
            }
        }
        if (p.softcap > 0.0) {
            sc = p.softcap * tanh(clamp(sc / p.softcap, -15.0, 15.0));
        }
        let ok = s >= my_lo && s < my_hi;
        let mn = select(m, max(m, sc), ok);
        let a = exp(m - mn);
        let w = select(0.0, exp(sc - mn), ok);
        lsum = lsum * a + w;
        m = mn;
        for (var i = 0u; i < PER; i++) {
            for (var cc = 0u; cc < 8u; cc++) {
                let c = 8u * i + cc;
                o[c] = o[c] * a + w * subgroupShuffle(vl[i], cc);
            }
        }
    }
#ifdef SINKS
    let sk = sinks[h];
    let mn = max(m, sk);
    let f = exp(m - mn);
    lsum = lsum * f + exp(sk - mn);
    for (var c = 0u; c < HD4; c++) {
        o[c] *= f;
    }
#endif
    if (live) {
        // lsum is 0 only for a query past the cache's capacity (a caller error).
        var inv = 0.0;
        if (lsum > 0.0) {
            inv = 1.0 / lsum;
        }
        let base = p.out_offset + t * p.n_heads * HD + h * HD;
        for (var c = 0u; c < HD4; c++) {
            let v = o[c] * inv;
            out[base + 4u * c] = v.x;
            out[base + 4u * c + 1u] = v.y;
            out[base + 4u * c + 2u] = v.z;
            out[base + 4u * c + 3u] = v.w;
        }
    }
}
