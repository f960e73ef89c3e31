// Flash-decoding attention for one query token at position kv_len - 1.
// Pass 1 (default): workgroup (chunk c, head h) scores the CHUNK key positions of chunk c
// against q[h], and writes to its own slot of the scratch buffer the chunk's max score m,
// sum of exp(s - m) and the exp-weighted sum of V rows. Chunks outside [lo, kv_len) exit.
// Pass 2 (COMBINE): one workgroup per head rescales the chunks to a common max and divides.
// Dispatching a fixed grid for the capacity keeps the plan static while kv_len grows.
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
    max_chunks: u32,  // chunk slots per head in the scratch buffer
    q_offset: u32,
    out_offset: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

// One key position per invocation in pass 1.
const CHUNK: u32 = WG;
// Dims per invocation: head_dim <= 256 (checked on the host) with WG = 64.
const DPT: u32 = 4u;
// Finite stand-in for -inf, so exp(m_old - m_new) never sees inf - inf.
const NEG: f32 = -1e30;

@group(0) @binding(3) var<uniform> p: Params;

// Chunks holding keys of this step: [first, end).
fn chunk_range() -> vec2<u32> {
    let kv_len = min(step.kv_len, p.capacity);
    let lo = window_lo(kv_len, p.window);
    return vec2<u32>(lo / CHUNK, (kv_len + CHUNK - 1u) / CHUNK);
}

// Scratch layout: partial V sums [head][chunk][head_dim], then (m, l) pairs [head][chunk].
fn ml_index(h: u32, c: u32) -> u32 {
    return p.n_heads * p.max_chunks * p.head_dim + 2u * (h * p.max_chunks + c);
}

#ifdef COMBINE
@group(0) @binding(4) var<storage, read> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h = gs.wid.x;
    let cr = chunk_range();
    if (h >= p.n_heads || cr.x >= cr.y) {
        return;
    }
    // Every invocation reads the same few (m, l) pairs: broadcast loads, no reduction pass.
    var m = NEG;
    for (var c = cr.x; c < cr.y; c++) {
        m = max(m, part[ml_index(h, c)]);
    }
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var c = cr.x; c < cr.y; c++) {
        let i = ml_index(h, c);
        let w = exp(part[i] - m);
        l += w * part[i + 1u];
        let base = (h * p.max_chunks + c) * p.head_dim;
        for (var j = 0u; j < DPT; j++) {
            let d = ids.lid + j * WG;
            if (d < p.head_dim) {
                acc[j] += w * part[base + d];
            }
        }
    }
    for (var j = 0u; j < DPT; j++) {
        let d = ids.lid + j * WG;
        if (d < p.head_dim) {
            out[p.out_offset + h * p.head_dim + d] = acc[j] / l;
        }
    }
}
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> ss: array<f32, CHUNK>;
var<workgroup> es: array<f32, CHUNK>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let c = gs.wid.x;
    let h = gs.wid.y;
    let cr = chunk_range();
    if (h >= p.n_heads || c < cr.x || c >= cr.y || c >= p.max_chunks) {
        return;
    }
    let kv_len = min(step.kv_len, p.capacity);
    let lo = window_lo(kv_len, p.window);
    let kv_base = (h / p.group) * p.head_dim;
    for (var d = ids.lid; d < p.head_dim; d += WG) {
        qs[d] = q[p.q_offset + h * p.head_dim + d] * p.scale;
    }
    workgroupBarrier();

    // Scores: each invocation owns one key position.
    let c0 = c * CHUNK;
    let pos = c0 + ids.lid;
    var s = NEG;
    if (pos >= lo && pos < kv_len) {
        s = 0.0;
        let row = pos * p.kv_dim + kv_base;
        for (var d = 0u; d < p.head_dim; d++) {
            s += qs[d] * f32(kc[row + d]);
        }
    }
    ss[ids.lid] = s;
    workgroupBarrier();
    // The chunk has at least one valid position, so m is a real score.
    var m = NEG;
    for (var j = 0u; j < CHUNK; j++) {
        m = max(m, ss[j]);
    }
    var e = 0.0;
    if (s > NEG) {
        e = exp(s - m);
    }
    es[ids.lid] = e;
    workgroupBarrier();

    // Exp-weighted V rows: each invocation owns DPT dims (coalesced reads across the row).
    let j0 = max(lo, c0) - c0;
    let j1 = min(kv_len - c0, CHUNK);
    let slot = h * p.max_chunks + c;
    var l = 0.0;
    for (var j = 0u; j < DPT; j++) {
        let d = ids.lid + j * WG;
        if (d < p.head_dim) {
            var acc = 0.0;
            for (var i = j0; i < j1; i++) {
                acc += es[i] * f32(vc[(c0 + i) * p.kv_dim + kv_base + d]);
            }
            part[slot * p.head_dim + d] = acc;
        }
    }
    if (ids.lid == 0u) {
        for (var i = j0; i < j1; i++) {
            l += es[i];
        }
        let mi = ml_index(h, c);
        part[mi] = m;
        part[mi + 1u] = l;
    }
}
#endif
