// Causal prefill attention with one query row per invocation, for CPU rasterizers
// (lavapipe runs each invocation as a SIMD lane, where every load is a per-lane gather
// and a subgroup shuffle a register permute). Invocation i of a workgroup owns query row
// row0 + i, a (token, head of one kv group) pair, whole: its q and its output are HD / 4
// vec4s, with an online softmax. The rows of a subgroup walk the same keys (the union of
// their ranges, each masking its own), two keys per pass, so each key's K and V rows are
// loaded once per subgroup: lane j loads vec4 columns j, j + 8, ... and every lane takes
// column c from lane c % 8 by subgroupShuffle. The head is held in NP parts of 32 dims,
// each its own array named by `#unroll` with loops of 8: no array is indexed by a
// runtime value, so q and the output stay registers (or plain spills). Indexing one
// HD / 4 array made lavapipe gather per lane: Gemma 3's pp512 attention (head_dim 256)
// took 2.5 s that way, 0.69 s this way. The host runs it for f16 or f32 caches, head_dim
// a multiple of 32, vec4 q, and steps of one sequence's consecutive positions. Its twin
// is attention_prefill's (the same Params and bindings).
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"

#include "lib/prefill_params.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<kv_t>>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#ifdef SINKS
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

const NEG: f32 = -1e30;     // finite -inf: rows with no key yet rescale by exp(0) = 1

alias Part = array<vec4<f32>, 8>;

// Part `at` (vec4 index) of this row's q, scaled.
fn load_q(d: ptr<function, Part>, at: u32) {
    for (var c = 0u; c < 8u; c++) {
        (*d)[c] = q[at + c] * p.scale;
    }
}

// The part's share of the scores of two keys whose columns (lane j: column j) are in
// k and k2.
fn qk(qr: ptr<function, Part>, k: vec4<f32>, k2: vec4<f32>) -> vec2<f32> {
    var sc = vec2<f32>(0.0);
    for (var cc = 0u; cc < 8u; cc++) {
        let qv = (*qr)[cc];
        sc += vec2<f32>(dot(qv, subgroupShuffle(k, cc)), dot(qv, subgroupShuffle(k2, cc)));
    }
    return sc;
}

// o = o * a + w * v + w2 * v2 for the part's columns of two V rows.
fn pv(o: ptr<function, Part>, v: vec4<f32>, v2: vec4<f32>, a: f32, w: f32, w2: f32) {
    for (var cc = 0u; cc < 8u; cc++) {
        (*o)[cc] = (*o)[cc] * a + w * subgroupShuffle(v, cc) + w2 * subgroupShuffle(v2, cc);
    }
}

fn store(o: ptr<function, Part>, base: u32, inv: f32) {
    for (var c = 0u; c < 8u; c++) {
        let v = (*o)[c] * inv;
        out[base + 4u * c] = v.x;
        out[base + 4u * c + 1u] = v.y;
        out[base + 4u * c + 2u] = v.z;
        out[base + 4u * c + 3u] = v.w;
    }
}

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

    let qe = (p.q_offset + tc * p.n_heads * HD + h * HD) / 4u;
#unroll NP
    var q$i: Part;
    var o$i: Part;
    load_q(&q$i, qe + 8u * $i);
#endunroll
    var m = NEG;
    var lsum = 0.0;
    for (var s = k_lo; s < k_hi; s += 2u) {
        // Two keys per pass, the second clamped into the range (and masked).
        let s2 = min(s + 1u, k_hi - 1u);
        let src = (cache_row(slot, s, p.capacity) * p.kv_dim + kvh * HD) / 4u + lane;
        let src2 = (cache_row(slot, s2, p.capacity) * p.kv_dim + kvh * HD) / 4u + lane;
        var sc = vec2<f32>(0.0);
#unroll NP
        sc += qk(&q$i, vec4<f32>(kc[src + 8u * $i]), vec4<f32>(kc[src2 + 8u * $i]));
#endunroll
        if (p.softcap > 0.0) {
            sc = p.softcap * tanh(clamp(sc / p.softcap, vec2<f32>(-15.0), vec2<f32>(15.0)));
        }
        let ok = s >= my_lo && s < my_hi;
        let ok2 = s + 1u >= my_lo && s + 1u < my_hi;
        let mn = max(m, max(select(m, sc.x, ok), select(m, sc.y, ok2)));
        let a = exp(m - mn);
        let w = select(0.0, exp(sc.x - mn), ok);
        let w2 = select(0.0, exp(sc.y - mn), ok2);
        lsum = lsum * a + w + w2;
        m = mn;
#unroll NP
        pv(&o$i, vec4<f32>(vc[src + 8u * $i]), vec4<f32>(vc[src2 + 8u * $i]), a, w, w2);
#endunroll
    }
#ifdef SINKS
    let sk = sinks[h];
    let mn = max(m, sk);
    let f = exp(m - mn);
    lsum = lsum * f + exp(sk - mn);
    let z = vec4<f32>(0.0);
#unroll NP
    pv(&o$i, z, z, f, 0.0, 0.0);
#endunroll
#endif
    if (live) {
        // lsum is 0 only for a query past the cache's capacity (a caller error).
        var inv = 0.0;
        if (lsum > 0.0) {
            inv = 1.0 / lsum;
        }
        let base = p.out_offset + t * p.n_heads * HD + h * HD;
#unroll NP
        store(&o$i, base + 32u * $i, inv);
#endunroll
    }
}
