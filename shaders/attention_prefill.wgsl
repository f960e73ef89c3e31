// Causal attention for the step's tokens (prefill), flash-attention style: queries are
// tiled in rows of (token, head of one kv group), R rows per workgroup, so the K/V tile
// staged in shared memory serves every head that shares it (GQA / MQA). Each row is owned
// by L invocations, each holding D4L vec4 columns of the row's q and output in registers
// (columns lane, lane + L, ...; a pipeline per head_dim HD, so the loops over them are
// short and unroll: an indexed array lands in per-invocation memory on some compilers).
// Per key tile: lanes write partial dot products, every lane of a row sums them, and the
// row's running max / exp-sum / output are rescaled (online softmax). With SUBGROUPS (the
// row's 8 lanes within one subgroup) the partials are summed by shuffles instead and
// each key updates the softmax state as it comes: no shared partials, one barrier less.
// Query t sits at position row_pos(t) and sees keys [window_lo(row_pos(t) + 1), row_pos(t)]
// of its sequence; with NONCAUSAL (encoders: the whole input is one step) every key of the
// step's sequence up to its last token, or under a window w those within w / 2 positions
// either side (llama.cpp's symmetric window). The host runs this kernel only on steps
// whose tokens are one sequence's consecutive positions, so a workgroup's keys are one
// slot's.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"

#include "lib/prefill_params.wgsl"

#ifdef VEC4
// head_dim and kv_dim are multiples of 4 (host-checked): a head's row is whole vec4s.
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
#endif
#ifdef Q8
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
#else
#ifdef VEC4
@group(0) @binding(1) var<storage, read> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<kv_t>>;
#else
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
#endif
#endif
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#ifdef SINKS
// Per-head attention sinks (gpt-oss): exp(sink[h]) joins head h's softmax denominator.
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

const L: u32 = 8u;                   // lanes per row
const R: u32 = WG / L;               // rows per workgroup
const HD4: u32 = (HD + 3u) / 4u;     // vec4 columns of a head (the last zero-padded)
const D4L: u32 = (HD4 + L - 1u) / L; // vec4 columns per lane
// BK (keys per tile, at most 16: the `part` layout) is a define, sized so that each K / V
// tile is 4 KiB in either element type and the workgroup stays within the 16 KiB of
// shared memory WebGPU guarantees.
const NEG: f32 = -1e30;     // finite -inf: rows with no key yet rescale by exp(0) = 1

var<workgroup> ks: array<vec4<kv_t>, 512>;  // [key j][column], BK * HD4
var<workgroup> vs: array<vec4<kv_t>, 512>;
#ifndef SUBGROUPS
var<workgroup> part: array<f32, 1024>;      // [key j][invocation], 16 * WG
#endif

// Column c of the K (or V) head row starting at element (Q8: word) `e` of the cache.
fn kv_col(e: u32, c: u32, is_v: bool) -> vec4<kv_t> {
#ifdef Q8
    let s = e + HD / 4u + c / 16u;
    if (is_v) {
        return q8_col(vc[e + c], vc[s], c);
    }
    return q8_col(kc[e + c], kc[s], c);
#else
#ifdef VEC4
    if (is_v) {
        return vc[e / 4u + c];
    }
    return kc[e / 4u + c];
#else
    var r = vec4<kv_t>(kv_t(0.0));
    for (var i = 0u; i < 4u; i++) {
        let d = c * 4u + i;
        if (d < HD) {
            if (is_v) {
                r[i] = vc[e + d];
            } else {
                r[i] = kc[e + d];
            }
        }
    }
    return r;
#endif
#endif
}

// Column c of query row (t, h), scaled.
fn q_col(t: u32, h: u32, c: u32) -> vec4<f32> {
    let e = p.q_offset + t * p.n_heads * HD + h * HD;
#ifdef VEC4
    return q[e / 4u + c] * p.scale;
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let d = c * 4u + i;
        if (d < HD) {
            r[i] = q[e + d] * p.scale;
        }
    }
    return r;
#endif
}

// A row's whole score, soft-capped when the model says so.
fn capped(s: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
    }
    return s;
}

// This lane's part of q . key j of the tile (its columns lane, lane + L, ...).
fn lane_dot(qr: array<vec4<f32>, D4L>, lane: u32, j: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < D4L; i++) {
        let c = lane + i * L;
        if (c < HD4) {
            s += dot(qr[i], vec4<f32>(ks[j * HD4 + c]));
        }
    }
    return s;
}

// Adds w times this lane's columns of V row j of the tile to its output columns.
fn add_v(o: ptr<function, array<vec4<f32>, D4L>>, w: f32, lane: u32, j: u32) {
    for (var i = 0u; i < D4L; i++) {
        let c = lane + i * L;
        if (c < HD4) {
            (*o)[i] += w * vec4<f32>(vs[j * HD4 + c]);
        }
    }
}

// The first key a query at `pos` sees.
fn key_lo(pos: u32) -> u32 {
#ifdef NONCAUSAL
    if (p.window > 0u) {
        return pos - min(pos, p.window / 2u);
    }
    return 0u;
#else
    return window_lo(pos + 1u, p.window);
#endif
}

// One past the last key a query at `pos` sees; `end` is one past the step's last position.
fn key_hi(pos: u32, end: u32) -> u32 {
#ifdef NONCAUSAL
    if (p.window > 0u) {
        return min(pos + p.window / 2u + 1u, end);
    }
    return end;
#else
    return pos + 1u;
#endif
}

#ifndef SUBGROUPS
// Row r's score of key j of the tile: the sum of its lanes' partials.
fn row_score(j: u32, r: u32) -> f32 {
    var s = 0.0;
    for (var x = 0u; x < L; x++) {
        s += part[j * WG + r * L + x];
    }
    return capped(s);
}
#endif

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
    let end = row_pos(n_tok - 1u) + 1u;
    let k_lo = key_lo(row_pos(t_first));
    let k_hi = min(key_hi(row_pos(t_last), end), p.capacity);
    let slot = row_slot(t_first);

    let r = ids.lid / L;
    let lane = ids.lid % L;
    let row = row0 + r;
    let t = row / p.group;
    let h = kvh * p.group + row % p.group;
    let live = t < n_tok;
    let my_pos = row_pos(min(t, n_tok - 1u));
    let my_hi = key_hi(my_pos, end);
    let my_lo = key_lo(my_pos);

    var qr: array<vec4<f32>, D4L>;
    var o: array<vec4<f32>, D4L>;
    for (var i = 0u; i < D4L; i++) {
        let c = lane + i * L;
        if (live && c < HD4) {
            qr[i] = q_col(t, h, c);
        }
    }
    var m = NEG;
    var lsum = 0.0;

    for (var k0 = k_lo; k0 < k_hi; k0 += BK) {
        let nk = min(BK, k_hi - k0);
        for (var e = ids.lid; e < nk * HD4; e += WG) {
            let j = e / HD4;
            let c = e % HD4;
            let src = cache_row(slot, k0 + j, p.capacity) * p.kv_dim + kvh * kv_head_stride(HD);
            ks[e] = kv_col(src, c, false);
            vs[e] = kv_col(src, c, true);
        }
        workgroupBarrier();
#ifdef SUBGROUPS
        for (var j = 0u; j < nk; j++) {
            var s = lane_dot(qr, lane, j);
            // The row's lanes are 8 consecutive invocations of one subgroup.
            s += subgroupShuffleXor(s, 1u);
            s += subgroupShuffleXor(s, 2u);
            s += subgroupShuffleXor(s, 4u);
            s = capped(s);
            let kp = k0 + j;
            if (kp >= my_lo && kp < my_hi) {
                if (s > m) {
                    let a = exp(m - s);
                    lsum *= a;
                    for (var i = 0u; i < D4L; i++) {
                        o[i] *= a;
                    }
                    m = s;
                }
                let w = exp(s - m);
                lsum += w;
                add_v(&o, w, lane, j);
            }
        }
#else
        for (var j = 0u; j < nk; j++) {
            part[j * WG + ids.lid] = lane_dot(qr, lane, j);
        }
        workgroupBarrier();
        // Every lane of the row sums the same partials in the same order, so the row's
        // softmax state stays identical across its lanes: the tile's max first, then
        // the scores again for their weights.
        var mt = m;
        for (var j = 0u; j < nk; j++) {
            let kp = k0 + j;
            if (kp >= my_lo && kp < my_hi) {
                let s = row_score(j, r);
                mt = max(mt, s);
            }
        }
        let alpha = exp(m - mt);
        lsum *= alpha;
        for (var i = 0u; i < D4L; i++) {
            o[i] *= alpha;
        }
        for (var j = 0u; j < nk; j++) {
            let kp = k0 + j;
            if (kp >= my_lo && kp < my_hi) {
                let s = row_score(j, r);
                let w = exp(s - mt);
                lsum += w;
                add_v(&o, w, lane, j);
            }
        }
        m = mt;
#endif
        // The next tile overwrites ks, vs and part.
        workgroupBarrier();
    }

#ifdef SINKS
    if (live) {
        let s = sinks[h];
        let mn = max(m, s);
        let f = exp(m - mn);
        lsum = lsum * f + exp(s - mn);
        for (var i = 0u; i < D4L; i++) {
            o[i] *= f;
        }
    }
#endif
    if (live) {
        // lsum is 0 only for a query past the cache's capacity (a caller error).
        var inv = 0.0;
        if (lsum > 0.0) {
            inv = 1.0 / lsum;
        }
        let base = p.out_offset + t * p.n_heads * HD + h * HD;
        for (var i = 0u; i < D4L; i++) {
            let c = lane + i * L;
            for (var k = 0u; k < 4u; k++) {
                let d = c * 4u + k;
                if (c < HD4 && d < HD) {
                    out[base + d] = o[i][k] * inv;
                }
            }
        }
    }
}
