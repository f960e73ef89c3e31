// Flash-decoding attention for each token t of the step (a query at position row_pos(t)
// over the KV cache of its slot, row_slot(t)): grids carry the token in their last used
// dimension, so a batched step attends every sequence's token in the same dispatches.
// Pass 1 (default): workgroup (chunk c, head h, token t) scores the CHUNK key positions of chunk c
// against q[h], and writes to its own slot of the scratch buffer the chunk's max score m,
// sum of exp(s - m) and the exp-weighted sum of V rows. Chunks outside [lo, kv_len) exit.
// Pass 2 (COMBINE): one workgroup per (head, token) rescales the chunks to a common max and divides.
// SINGLE: one pass for short contexts: one workgroup per (head, token) walks the chunks in order
// with an online softmax (running max and sum, the output rescaled as the max grows) and
// writes the output itself, so a short step needs no scratch round trip and no pass 2.
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
    max_tokens: u32,  // tokens per step the grid and the scratch buffer are sized for
    _pad0: u32,
}

// One key position per invocation in pass 1.
const CHUNK: u32 = WG;
// Dims per invocation: head_dim <= 256 (checked on the host) with WG = 64.
const DPT: u32 = 4u;
// Finite stand-in for -inf, so exp(m_old - m_new) never sees inf - inf.
const NEG: f32 = -1e30;

@group(0) @binding(3) var<uniform> p: Params;

// Whether token t is in this step.
fn live(t: u32) -> bool {
    return t < min(p.max_tokens, step.n_tokens);
}

// Keys token t attends: its position + 1, within the capacity.
fn kv_len_of(t: u32) -> u32 {
    return min(row_pos(t) + 1u, p.capacity);
}

// Chunks holding keys of token t: [first, end).
fn chunk_range(t: u32) -> vec2<u32> {
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    return vec2<u32>(lo / CHUNK, (kv_len + CHUNK - 1u) / CHUNK);
}

// Scratch slot of (token, head, chunk).
fn slot_of(t: u32, h: u32, c: u32) -> u32 {
    return (t * p.n_heads + h) * p.max_chunks + c;
}

// Scratch layout: partial V sums [token][head][chunk][head_dim], then (m, l) pairs
// [token][head][chunk].
fn ml_index(t: u32, h: u32, c: u32) -> u32 {
    return p.max_tokens * p.n_heads * p.max_chunks * p.head_dim + 2u * slot_of(t, h, c);
}

// Element d of head h of token t in q and out.
fn head_elem(t: u32, h: u32, d: u32) -> u32 {
    return (t * p.n_heads + h) * p.head_dim + d;
}

// Where token t's query head h reads the cache: its slot and the offset of its KV head
// (group) within a row.
struct KvAt {
    slot: u32,
    head: u32,
}

fn kv_at(t: u32, h: u32) -> KvAt {
    return KvAt(row_slot(t), (h / p.group) * p.head_dim);
}

// First element of position `pos`'s K or V head in the cache.
fn kv_elem(at: KvAt, pos: u32) -> u32 {
    return cache_row(at.slot, pos, p.capacity) * p.kv_dim + at.head;
}

#ifdef COMBINE
@group(0) @binding(4) var<storage, read> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h = gs.wid.x;
    let t = gs.wid.y;
    if (h >= p.n_heads || !live(t)) {
        return;
    }
    let cr = chunk_range(t);
    if (cr.x >= cr.y) {
        return;
    }
    // Every invocation reads the same few (m, l) pairs: broadcast loads, no reduction pass.
    var m = NEG;
    for (var c = cr.x; c < cr.y; c++) {
        m = max(m, part[ml_index(t, h, c)]);
    }
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var c = cr.x; c < cr.y; c++) {
        let i = ml_index(t, h, c);
        let w = exp(part[i] - m);
        l += w * part[i + 1u];
        let base = slot_of(t, h, c) * p.head_dim;
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
            out[p.out_offset + head_elem(t, h, d)] = acc[j] / l;
        }
    }
}
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> ss: array<f32, CHUNK>;
var<workgroup> es: array<f32, CHUNK>;

// q[t, h] * scale into shared memory.
fn load_q(t: u32, h: u32, lid: u32) {
    for (var d = lid; d < p.head_dim; d += WG) {
        qs[d] = q[p.q_offset + head_elem(t, h, d)] * p.scale;
    }
}

// The score of key position `pos` (NEG outside [lo, kv_len)).
fn score(pos: u32, lo: u32, kv_len: u32, at: KvAt) -> f32 {
    var s = NEG;
    if (pos >= lo && pos < kv_len) {
        s = 0.0;
        let row = kv_elem(at, pos);
        for (var d = 0u; d < p.head_dim; d++) {
            s += qs[d] * f32(kc[row + d]);
        }
    }
    return s;
}

// The largest of the chunk's scores in `ss` and `m`.
fn chunk_max(m: f32) -> f32 {
    var mc = m;
    for (var j = 0u; j < CHUNK; j++) {
        mc = max(mc, ss[j]);
    }
    return mc;
}

// The es-weighted sum of V rows c0 + [j0, j1) at dim d.
fn weighted_v(c0: u32, j0: u32, j1: u32, at: KvAt, d: u32) -> f32 {
    var acc = 0.0;
    for (var i = j0; i < j1; i++) {
        acc += es[i] * f32(vc[kv_elem(at, c0 + i) + d]);
    }
    return acc;
}

#ifdef SINGLE
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h = gs.wid.x;
    let t = gs.wid.y;
    if (h >= p.n_heads || !live(t)) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    let cr = chunk_range(t);
    let at = kv_at(t, h);
    load_q(t, h, ids.lid);
    workgroupBarrier();
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var c = cr.x; c < cr.y; c++) {
        let c0 = c * CHUNK;
        let s = score(c0 + ids.lid, lo, kv_len, at);
        ss[ids.lid] = s;
        workgroupBarrier();
        // Every chunk in range holds a valid position, so mc is a real score and the
        // rescale of the old sums exp(m - mc) is 0 on the first chunk.
        let mc = chunk_max(m);
        let f = exp(m - mc);
        var e = 0.0;
        if (s > NEG) {
            e = exp(s - mc);
        }
        es[ids.lid] = e;
        workgroupBarrier();
        let j0 = max(lo, c0) - c0;
        let j1 = min(kv_len - c0, CHUNK);
        for (var j = 0u; j < DPT; j++) {
            let d = ids.lid + j * WG;
            if (d < p.head_dim) {
                acc[j] = acc[j] * f + weighted_v(c0, j0, j1, at, d);
            }
        }
        var lc = 0.0;
        for (var i = j0; i < j1; i++) {
            lc += es[i];
        }
        l = l * f + lc;
        m = mc;
        // The next chunk overwrites ss and es.
        workgroupBarrier();
    }
    for (var j = 0u; j < DPT; j++) {
        let d = ids.lid + j * WG;
        if (d < p.head_dim) {
            out[p.out_offset + head_elem(t, h, d)] = acc[j] / l;
        }
    }
}
#else
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let c = gs.wid.x;
    let h = gs.wid.y;
    let t = gs.wid.z;
    if (h >= p.n_heads || !live(t)) {
        return;
    }
    let cr = chunk_range(t);
    if (c < cr.x || c >= cr.y || c >= p.max_chunks) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    let at = kv_at(t, h);
    load_q(t, h, ids.lid);
    workgroupBarrier();

    // Scores: each invocation owns one key position.
    let c0 = c * CHUNK;
    let s = score(c0 + ids.lid, lo, kv_len, at);
    ss[ids.lid] = s;
    workgroupBarrier();
    // The chunk has at least one valid position, so m is a real score.
    let m = chunk_max(NEG);
    var e = 0.0;
    if (s > NEG) {
        e = exp(s - m);
    }
    es[ids.lid] = e;
    workgroupBarrier();

    // Exp-weighted V rows: each invocation owns DPT dims (coalesced reads across the row).
    let j0 = max(lo, c0) - c0;
    let j1 = min(kv_len - c0, CHUNK);
    let slot = slot_of(t, h, c);
    for (var j = 0u; j < DPT; j++) {
        let d = ids.lid + j * WG;
        if (d < p.head_dim) {
            part[slot * p.head_dim + d] = weighted_v(c0, j0, j1, at, d);
        }
    }
    if (ids.lid == 0u) {
        var l = 0.0;
        for (var i = j0; i < j1; i++) {
            l += es[i];
        }
        let mi = ml_index(t, h, c);
        part[mi] = m;
        part[mi + 1u] = l;
    }
}
#endif
#endif
