// Flash-decoding attention for each token t of the step (a query at position row_pos(t)
// over the KV cache of its slot, row_slot(t)): grids carry the token in their last used
// dimension, so a batched step attends every sequence's token in the same dispatches.
// Pass 1 and SINGLE take a block of `heads` query heads of one KV group per workgroup, so
// each K and V row is read once for all of them (GQA / MQA), as vec4 where head_dim
// allows (VEC4).
// Pass 1 (default): workgroup (x, head block b, token t) scores the CHUNK key positions
// of chunk c (the x-th of the token's range) against each head's q, and writes to each
// head's own slot of the scratch buffer the chunk's max score m, sum of exp(s - m) and
// the exp-weighted sum of V rows. Workgroups past the range exit.
// Pass 2 (COMBINE): one workgroup per (head, token) rescales the chunks to a common max and
// divides, over the chunks in parallel: the maximum and the denominator are workgroup
// reductions, each chunk's weight is computed once, and every invocation sums its dims.
// SINGLE: one pass for short contexts: one workgroup per (head block, token) walks the
// chunks in order with an online softmax per head (running max and sum, the output
// rescaled as the max grows) and writes the output itself, so a short step needs no
// scratch round trip and no pass 2.
// Dispatching a fixed grid for the capacity keeps the plan static while kv_len grows.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"
#include "lib/reduce.wgsl"

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
    heads: u32,       // query heads per workgroup (HEADS)
    softcap: f32,     // > 0: scores become softcap * tanh(score / softcap)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One key position per invocation in pass 1.
const CHUNK: u32 = WG;
// Dims per invocation in the combine pass: head_dim <= 256 (checked on the host) with WG = 64.
const DPT: u32 = 4u;
// Query heads per workgroup (HEADS, a divisor of the group size up to 8: a pipeline per
// count, so the per-head loops unroll and their arrays stay in registers).
#ifdef COMBINE
const HB: u32 = 1u;
#else
const HB: u32 = HEADS;
#endif
// vec4 columns of a head at most (head_dim <= 256).
const D4: u32 = 64u;
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
    return KvAt(row_slot(t), (h / p.group) * kv_head_stride(p.head_dim));
}

// First element (Q8: word) of position `pos`'s K or V head in the cache (kv_dim is the
// row's length in those units).
fn kv_elem(at: KvAt, pos: u32) -> u32 {
    return cache_row(at.slot, pos, p.capacity) * p.kv_dim + at.head;
}

// vec4 columns of a head (the last one zero-padded when head_dim is not a multiple of 4).
fn head_d4() -> u32 {
    return (p.head_dim + 3u) / 4u;
}

#ifdef SINKS
// Per-head attention sinks (gpt-oss): exp(sink[h]) joins head h's softmax denominator.
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

#ifdef COMBINE
@group(0) @binding(4) var<storage, read> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// The weights exp(m_c - m) of a tile of WG chunks.
var<workgroup> cw: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h = gs.wid.x;
    let t = gs.wid.y;
    // The whole workgroup runs the reductions below (barriers), so a workgroup with
    // nothing to combine walks an empty range and writes nothing.
    let ok = h < p.n_heads && live(t);
    var cr = vec2<u32>(0u, 0u);
    if (ok) {
        cr = chunk_range(t);
    }
    // The chunks in parallel: invocation i takes chunks cr.x + i, + WG, ... for the
    // maximum, then each tile's weights are computed once, by one invocation each, and
    // every invocation adds its dims of the tile's chunks.
    var mi = NEG;
    for (var c = cr.x + ids.lid; c < cr.y; c += WG) {
        mi = max(mi, part[ml_index(t, h, c)]);
    }
    var m = wg_max(mi, ids);
#ifdef SINKS
    var sk = NEG;
    if (ok) {
        sk = sinks[h];
    }
    m = max(m, sk);
#endif
    var li = 0.0;
    var acc: array<f32, DPT>;
    for (var c0 = cr.x; c0 < cr.y; c0 += WG) {
        let c = c0 + ids.lid;
        var w = 0.0;
        if (c < cr.y) {
            let i = ml_index(t, h, c);
            w = exp(part[i] - m);
            li += w * part[i + 1u];
        }
        cw[ids.lid] = w;
        workgroupBarrier();
        for (var k = 0u; k < min(WG, cr.y - c0); k++) {
            let base = slot_of(t, h, c0 + k) * p.head_dim;
            let wk = cw[k];
            for (var j = 0u; j < DPT; j++) {
                let d = ids.lid + j * WG;
                if (d < p.head_dim) {
                    acc[j] += wk * part[base + d];
                }
            }
        }
        workgroupBarrier();
    }
    var l = wg_sum(li, ids);
#ifdef SINKS
    l += exp(sk - m);
#endif
    if (ok && cr.x < cr.y) {
        for (var j = 0u; j < DPT; j++) {
            let d = ids.lid + j * WG;
            if (d < p.head_dim) {
                out[p.out_offset + head_elem(t, h, d)] = acc[j] / l;
            }
        }
    }
}
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
#ifdef Q8
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
#else
#ifdef VEC4
// head_dim and kv_dim are multiples of 4 (host-checked), so a head's row is whole vec4s.
#ifdef F16
// Four f16 values as two words, unpacked: a CPU adapter loads a vec4<f16> per 16-bit
// component (four loads, each a per-lane gather) and two words in two.
@group(0) @binding(1) var<storage, read> kc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec2<u32>>;

fn f16x4(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#else
@group(0) @binding(1) var<storage, read> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<kv_t>>;
#endif
#else
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
#endif
#endif

// The block's q heads, scaled, as vec4 columns: qs[g * D4 + d4].
var<workgroup> qs: array<vec4<f32>, 512>;
// Per head of the block, per key of the chunk: scores, then their exps.
var<workgroup> ss: array<f32, 512>;
var<workgroup> es: array<f32, 512>;

// vec4 column d4 of the K (or, with is_v, V) head row starting at element `e`.
fn kv_col(e: u32, d4: u32, is_v: bool) -> vec4<f32> {
#ifdef Q8
    let s = e + p.head_dim / 4u + d4 / 16u;
    if (is_v) {
        return q8_col(vc[e + d4], vc[s], d4);
    }
    return q8_col(kc[e + d4], kc[s], d4);
#else
#ifdef VEC4
#ifdef F16
    if (is_v) {
        return f16x4(vc[e / 4u + d4]);
    }
    return f16x4(kc[e / 4u + d4]);
#else
    if (is_v) {
        return vec4<f32>(vc[e / 4u + d4]);
    }
    return vec4<f32>(kc[e / 4u + d4]);
#endif
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let d = d4 * 4u + i;
        if (d < p.head_dim) {
            if (is_v) {
                r[i] = f32(vc[e + d]);
            } else {
                r[i] = f32(kc[e + d]);
            }
        }
    }
    return r;
#endif
#endif
}

// The block's q heads (first head h0) of token t, times scale, into shared memory.
fn load_q(t: u32, h0: u32, lid: u32) {
    let nd4 = head_d4();
    for (var i = lid; i < HB * nd4; i += WG) {
        let g = i / nd4;
        let d4 = i % nd4;
        var r = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let d = d4 * 4u + j;
            if (d < p.head_dim) {
                r[j] = q[p.q_offset + head_elem(t, h0 + g, d)] * p.scale;
            }
        }
        qs[g * D4 + d4] = r;
    }
}

// Each head's score of key position `pos` into ss[g * CHUNK + j] (NEG outside [lo, kv_len)).
fn score(pos: u32, j: u32, lo: u32, kv_len: u32, at: KvAt) {
    var s: array<f32, HB>;
    for (var g = 0u; g < HB; g++) {
        s[g] = NEG;
    }
    if (pos >= lo && pos < kv_len) {
        for (var g = 0u; g < HB; g++) {
            s[g] = 0.0;
        }
        let e = kv_elem(at, pos);
        for (var d4 = 0u; d4 < head_d4(); d4++) {
            let k = kv_col(e, d4, false);
            for (var g = 0u; g < HB; g++) {
                s[g] += dot(qs[g * D4 + d4], k);
            }
        }
    }
    for (var g = 0u; g < HB; g++) {
        if (p.softcap > 0.0 && s[g] > NEG) {
            s[g] = p.softcap * tanh(clamp(s[g] / p.softcap, -15.0, 15.0));
        }
        ss[g * CHUNK + j] = s[g];
    }
}

// Head g's exp weight of this invocation's key, exp(s - m) (0 outside the range), into
// es for the V sums, and the sum of the chunk's weights (workgroup reductions: every
// invocation scores one key, so the chunk's maximum and sum are a subgroup reduction
// and a few partials rather than each invocation walking all CHUNK scores).
// Uniform control flow: every invocation of the workgroup calls it.
fn chunk_exp(g: u32, m: f32, lid: u32, ids: Ids) -> f32 {
    let s = ss[g * CHUNK + lid];
    var e = 0.0;
    if (s > NEG) {
        e = exp(s - m);
    }
    es[g * CHUNK + lid] = e;
    return wg_sum(e, ids);
}

// Each head's es-weighted sum of V rows c0 + [j0, j1) at vec4 column d4, added to acc.
fn weighted_v(c0: u32, j0: u32, j1: u32, at: KvAt, d4: u32, acc: ptr<function, array<vec4<f32>, HB>>) {
    for (var i = j0; i < j1; i++) {
        let v = kv_col(kv_elem(at, c0 + i), d4, true);
        for (var g = 0u; g < HB; g++) {
            (*acc)[g] += es[g * CHUNK + i] * v;
        }
    }
}

#ifdef QSHARE
// QSHARE (pass 1; host: a CPU adapter with subgroups of at least 8, a vec4 f16/f32
// cache, head_dim / 4 a multiple of the subgroup size): values every lane of a subgroup needs
// (q in the scores, the exp weights in the V sums) are loaded once per subgroup, lane j
// taking the j-th of each 8 and the others receiving it by subgroupBroadcast. A CPU
// rasterizer runs each invocation as a SIMD lane, where a load of shared memory or a
// buffer is a per-lane gather and a broadcast a register move; without it each key's
// score read every head's q once per lane, 8 times the key's own K words. Every lane
// runs every step (positions outside [lo, kv_len) read a valid row and score NEG).

// Lane j of 8 in the subgroup.
var<private> sl: u32;

fn score_shared(pos: u32, j: u32, lo: u32, kv_len: u32, at: KvAt) {
    let ok = pos >= lo && pos < kv_len;
    let e = kv_elem(at, select(lo, pos, ok));
    var s: array<f32, HB>;
    for (var d8 = 0u; d8 < head_d4(); d8 += 8u) {
#unroll 8
        let k$i = kv_col(e, d8 + $iu, false);
#endunroll
        for (var g = 0u; g < HB; g++) {
            let qv = qs[g * D4 + d8 + sl];
#unroll 8
            s[g] += dot(subgroupBroadcast(qv, $iu), k$i);
#endunroll
        }
    }
    for (var g = 0u; g < HB; g++) {
        var v = select(NEG, s[g], ok);
        if (p.softcap > 0.0 && ok) {
            v = p.softcap * tanh(clamp(v / p.softcap, -15.0, 15.0));
        }
        ss[g * CHUNK + j] = v;
    }
}

// weighted_v over the keys in blocks of 8 from j0 rounded down (their exp weights are 0
// outside [j0, j1), and their rows are read clamped into [c0 + j0, c0 + j1)). The
// caller's `d4 < head_d4()` holds for whole subgroups (the host's condition).
fn weighted_v_shared(c0: u32, j0: u32, j1: u32, at: KvAt, d4: u32, acc: ptr<function, array<vec4<f32>, HB>>) {
    let first = c0 + j0;
    let last = c0 + j1 - 1u;
    for (var i0 = j0 & ~7u; i0 < j1; i0 += 8u) {
#unroll 8
        let v$i = kv_col(kv_elem(at, clamp(c0 + i0 + $iu, first, last)), d4, true);
#endunroll
        for (var g = 0u; g < HB; g++) {
            let ev = es[g * CHUNK + i0 + sl];
#unroll 8
            (*acc)[g] += subgroupBroadcast(ev, $iu) * v$i;
#endunroll
        }
    }
}
#endif

#ifdef SINGLE
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Writes vec4 column d4 of head h of token t (the part within head_dim).
fn store_col(t: u32, h: u32, d4: u32, r: vec4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        let d = d4 * 4u + i;
        if (d < p.head_dim) {
            out[p.out_offset + head_elem(t, h, d)] = r[i];
        }
    }
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h0 = gs.wid.x * HB;
    let t = gs.wid.y;
    if (h0 >= p.n_heads || !live(t)) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    let cr = chunk_range(t);
    let at = kv_at(t, h0);
    load_q(t, h0, ids.lid);
    workgroupBarrier();
    var m: array<f32, HB>;
    var l: array<f32, HB>;
    var acc: array<vec4<f32>, HB>;
    for (var g = 0u; g < HB; g++) {
        m[g] = NEG;
    }
    let d4 = ids.lid;
    for (var c = cr.x; c < cr.y; c++) {
        let c0 = c * CHUNK;
        score(c0 + ids.lid, ids.lid, lo, kv_len, at);
        workgroupBarrier();
        // Every chunk in range holds a valid position, so mc is a real score and the
        // rescale of the old sums exp(m - mc) is 0 on the first chunk.
        for (var g = 0u; g < HB; g++) {
            let mc = max(m[g], wg_max(ss[g * CHUNK + ids.lid], ids));
            let f = exp(m[g] - mc);
            m[g] = mc;
            // chunk_exp's closing barrier orders the es writes before the V sums.
            l[g] = l[g] * f + chunk_exp(g, mc, ids.lid, ids);
            acc[g] *= f;
        }
        let j0 = max(lo, c0) - c0;
        let j1 = min(kv_len - c0, CHUNK);
        if (d4 < head_d4()) {
            weighted_v(c0, j0, j1, at, d4, &acc);
        }
        // The next chunk overwrites ss and es.
        workgroupBarrier();
    }
#ifdef SINKS
    // The sink joins each head's denominator: rescale to the larger of the two maxima.
    for (var g = 0u; g < HB; g++) {
        let s = sinks[h0 + g];
        let mn = max(m[g], s);
        let f = exp(m[g] - mn);
        acc[g] *= f;
        l[g] = l[g] * f + exp(s - mn);
    }
#endif
    if (d4 < head_d4()) {
        for (var g = 0u; g < HB; g++) {
            store_col(t, h0 + g, d4, acc[g] / l[g]);
        }
    }
}
#else
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h0 = gs.wid.y * HB;
    let t = gs.wid.z;
    if (h0 >= p.n_heads || !live(t)) {
        return;
    }
    // Workgroup x takes the x-th chunk of the token's range (a windowed layer's grid
    // covers only the window's chunks); its scratch slot is the chunk's own.
    let cr = chunk_range(t);
    let c = cr.x + gs.wid.x;
    if (c >= cr.y || c >= p.max_chunks) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    let at = kv_at(t, h0);
#ifdef QSHARE
    sl = ids.lane % 8u;
#endif
    load_q(t, h0, ids.lid);
    workgroupBarrier();

    // Scores: each invocation owns one key position, for every head of the block.
    let c0 = c * CHUNK;
#ifdef QSHARE
    score_shared(c0 + ids.lid, ids.lid, lo, kv_len, at);
#else
    score(c0 + ids.lid, ids.lid, lo, kv_len, at);
#endif
    workgroupBarrier();
    // The chunk has at least one valid position, so each m is a real score.
    var m: array<f32, HB>;
    var l: array<f32, HB>;
    for (var g = 0u; g < HB; g++) {
        m[g] = wg_max(ss[g * CHUNK + ids.lid], ids);
        l[g] = chunk_exp(g, m[g], ids.lid, ids);
    }

    // Exp-weighted V rows: each invocation owns one vec4 column of every head.
    let j0 = max(lo, c0) - c0;
    let j1 = min(kv_len - c0, CHUNK);
    let d4 = ids.lid;
    if (d4 < head_d4()) {
        var acc: array<vec4<f32>, HB>;
#ifdef QSHARE
        weighted_v_shared(c0, j0, j1, at, d4, &acc);
#else
        weighted_v(c0, j0, j1, at, d4, &acc);
#endif
        for (var g = 0u; g < HB; g++) {
            let base = slot_of(t, h0 + g, c) * p.head_dim;
            for (var i = 0u; i < 4u; i++) {
                let d = d4 * 4u + i;
                if (d < p.head_dim) {
                    part[base + d] = acc[g][i];
                }
            }
        }
    }
    if (ids.lid == 0u) {
        for (var g = 0u; g < HB; g++) {
            let mi = ml_index(t, h0 + g, c);
            part[mi] = m[g];
            part[mi + 1u] = l[g];
        }
    }
}
#endif
#endif
