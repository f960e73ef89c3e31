// Flash-decoding attention for each token t of the step (a query at position row_pos(t)
// over the KV cache of its slot, row_slot(t)): grids carry the token in their last used
// dimension, so a batched step attends every sequence's token in the same dispatches.
// Pass 1 and SINGLE take a block of `heads` query heads of one KV group per workgroup, so
// each K and V row is read once for all of them (GQA / MQA), as vec4 where head_dim
// allows (VEC4). A token's cached range is cut into chunks of CHUNK positions, and the
// chunks into splits (split_chunks): pass 1's workgroup x takes split x.
// Pass 1, SGKEY form (adapters with subgroups of 8 to 64 lanes): the workgroup's
// subgroups walk the split's keys, one key per subgroup at a time, lanes splitting the
// head's columns, with an online softmax; the subgroups merge at the end and the
// workgroup writes each head's max m, sum of exp(s - m) and exp-weighted sum of V rows
// to the split's scratch slot.
// Pass 1, per-lane form (no subgroups): one chunk per split; each invocation scores one
// key, the chunk's max and exp-sum are workgroup reductions, and each invocation sums
// one vec4 column of V; same scratch output.
// Pass 2 (COMBINE): one workgroup per (head, token) rescales the splits to a common max
// and divides, over the splits in parallel: the maximum and the denominator are
// workgroup reductions, each split's weight is computed once, and every invocation sums
// its dims. SEQ (the few balanced splits a CPU rasterizer's pass 1 leaves): each
// invocation one vec4 column, walking the splits in order with an online softmax.
// FINAL (the SGKEY form with one split, for short contexts on a CPU rasterizer): the
// workgroup walks the whole range and writes the output, with no pass 2.
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
    splits: u32,      // pass 1's workgroups along x: the most splits of a token's chunks
    balanced: u32,    // 1: every split takes an equal share of the chunks (see split_chunks)
    _pad: u32,
    // ROPE only (q, k and v read from one projection's rows, rope_kv.wgsl's rule):
    half_dims: u32,   // rope_dims / 2
    src_stride: u32,  // elements between tokens in the q/k/v rows
    k_offset: u32,    // token 0's k and v in them (q at q_offset)
    v_offset: u32,
    eps: f32,         // NORM: the per-head RMSNorm's epsilon
    mscale: f32,      // multiplier of cos and sin
    temp_scale: f32,  // attention temperature of q (0: none), as rope_kv.wgsl
    temp_floor: u32,
}

// Key positions per chunk (one scratch slot each); in the per-lane pass 1 and the single
// pass, one per invocation.
const CHUNK: u32 = 64u;
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

// A scaled score, soft-capped when the params say so.
fn cap_score(s: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
    }
    return s;
}

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

// Chunks [first, end) of split x (pass 1's workgroup x) of token t's range. Balanced: each
// of the p.splits splits takes floor or ceil of the chunks' share, the empty ones (fewer
// chunks than splits) spread over the grid, since a CPU rasterizer hands each thread a
// run of workgroups; else one chunk per split, the first ones. Empty: first >= end.
fn split_chunks(t: u32, x: u32) -> vec2<u32> {
    let cr = chunk_range(t);
    let n = cr.y - cr.x;
    if (p.balanced != 0u) {
        return vec2<u32>(cr.x + x * n / p.splits, cr.x + (x + 1u) * n / p.splits);
    }
    return vec2<u32>(cr.x + x, cr.x + min(x + 1u, n));
}

// Splits of token t's range that may hold chunks (the combine's partials, in slots 0 .. n;
// the empty ones are skipped).
fn splits_of(t: u32) -> u32 {
    if (p.balanced != 0u) {
        return p.splits;
    }
    let cr = chunk_range(t);
    return cr.y - cr.x;
}

// Whether split x of token t holds chunks.
fn split_live(t: u32, x: u32) -> bool {
    let sc = split_chunks(t, x);
    return sc.x < sc.y;
}

// Scratch slot of (token, head, split).
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

#ifdef ROPE
// Attention's preparation folded in (FINAL only, one token per sequence): the
// workgroup takes q of its heads and k and v of their KV head from the projection's rows
// (binding 0), normalizes (NORM) and rotates them as rope_kv.wgsl does, appends k and v
// to the cache at the token's position, and attends with q from registers.
@group(0) @binding(6) var<storage, read> freq: array<vec2<u32>>;
#ifdef FREQ_FACTORS
@group(0) @binding(11) var<storage, read> freq_factors: array<f32>;
#endif
#ifdef NORM
@group(0) @binding(9) var<storage, read> q_norm: array<f32>;
@group(0) @binding(10) var<storage, read> k_norm: array<f32>;
#endif
#include "lib/rope_angle.wgsl"
#endif

#ifdef COMBINE
@group(0) @binding(4) var<storage, read> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

#ifdef SEQ
// SEQ (few splits, as a CPU rasterizer's pass 1 leaves): workgroup (column block, head,
// token), each invocation one vec4 column of the head, walking the splits in order with
// an online softmax: no barrier, no shared memory.
@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h = gs.wid.y;
    let t = gs.wid.z;
    let d4 = gs.wid.x * WG + ids.lid;
    if (h >= p.n_heads || !live(t) || d4 >= head_d4()) {
        return;
    }
    let n = splits_of(t);
    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < n; c++) {
        if (!split_live(t, c)) {
            continue;
        }
        let i = ml_index(t, h, c);
        let mc = part[i];
        let mn = max(m, mc);
        let f = exp(m - mn);
        let w = exp(mc - mn);
        m = mn;
        l = l * f + w * part[i + 1u];
        let base = slot_of(t, h, c) * p.head_dim + d4 * 4u;
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            if (d4 * 4u + k < p.head_dim) {
                v[k] = part[base + k];
            }
        }
        acc = acc * f + w * v;
    }
#ifdef SINKS
    let sk = sinks[h];
    let mn = max(m, sk);
    let f = exp(m - mn);
    acc *= f;
    l = l * f + exp(sk - mn);
#endif
    for (var k = 0u; k < 4u; k++) {
        let d = d4 * 4u + k;
        if (d < p.head_dim && l > 0.0) {
            out[p.out_offset + head_elem(t, h, d)] = acc[k] / l;
        }
    }
}
#else
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
        cr = vec2<u32>(0u, splits_of(t));
    }
    // The chunks in parallel: invocation i takes chunks cr.x + i, + WG, ... for the
    // maximum, then each tile's weights are computed once, by one invocation each, and
    // every invocation adds its dims of the tile's chunks.
    var mi = NEG;
    for (var c = cr.x + ids.lid; c < cr.y; c += WG) {
        if (split_live(t, c)) {
            mi = max(mi, part[ml_index(t, h, c)]);
        }
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
        if (c < cr.y && split_live(t, c)) {
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
#endif
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
#ifdef ROPE
// The cache is written here (f32 or f16, never Q8: the host checks).
#ifdef VEC4
#ifdef F16
@group(0) @binding(1) var<storage, read_write> kc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> vc: array<vec2<u32>>;
#else
@group(0) @binding(1) var<storage, read_write> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read_write> vc: array<vec4<kv_t>>;
#endif
#else
@group(0) @binding(1) var<storage, read_write> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read_write> vc: array<kv_t>;
#endif
#else
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
#else
@group(0) @binding(1) var<storage, read> kc: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<kv_t>>;
#endif
#else
@group(0) @binding(1) var<storage, read> kc: array<kv_t>;
@group(0) @binding(2) var<storage, read> vc: array<kv_t>;
#endif
#endif
#endif

#ifndef Q8
#ifdef VEC4
#ifdef F16
fn f16x4(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#endif
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


#ifdef ROPE
// Element d of the head at `base` of the projection's rows, normalized (NORM, by `inv`
// and the q or k weights).
fn normed(base: u32, d: u32, inv: f32, is_q: bool) -> f32 {
    var x = q[base + d];
#ifdef NORM
    x *= inv * select(k_norm[d], q_norm[d], is_q);
#endif
    return x;
}

// Element d of the head at `base`, normalized and rotated at position pos (rope_kv.wgsl's
// pairs: NEOX (i, i + half), else (2i, 2i + 1); dims past the rotary ones pass through).
fn roped(base: u32, d: u32, inv: f32, is_q: bool, pos: u32) -> f32 {
    let x = normed(base, d, inv, is_q);
    if (d >= 2u * p.half_dims) {
        return x;
    }
#ifdef NEOX
    let first = d < p.half_dims;
    let i = select(d - p.half_dims, d, first);
    let partner = select(d - p.half_dims, d + p.half_dims, first);
#else
    let first = (d & 1u) == 0u;
    let i = d / 2u;
    let partner = select(d - 1u, d + 1u, first);
#endif
    let xp = normed(base, partner, inv, is_q);
    let cs = rope_cs(i, pos) * p.mscale;
    return select(xp * cs.y + x * cs.x, x * cs.x - xp * cs.y, first);
}

// The RMSNorm factor of the head at `base` (1 without NORM), over the lanes' columns
// (lane l takes vec4 columns l, l + sg_size, ...). Uniform control flow.
fn head_inv(base: u32, lane: u32, sgs: u32) -> f32 {
#ifdef NORM
    var ss = 0.0;
    for (var d4 = lane; d4 < head_d4(); d4 += sgs) {
        for (var j = 0u; j < 4u; j++) {
            let d = d4 * 4u + j;
            if (d < p.head_dim) {
                let x = q[base + d];
                ss += x * x;
            }
        }
    }
    return inverseSqrt(subgroupAdd(ss) / f32(p.head_dim) + p.eps);
#else
    return 1.0;
#endif
}

// Writes vec4 column d4 of the K (or V) head row at element e of the cache.
fn put_col(e: u32, d4: u32, is_v: bool, r: vec4<f32>) {
#ifdef VEC4
#ifdef F16
    let w = vec2<u32>(pack2x16float(r.xy), pack2x16float(r.zw));
#else
    let w = vec4<kv_t>(r);
#endif
    if (is_v) {
        vc[e / 4u + d4] = w;
    } else {
        kc[e / 4u + d4] = w;
    }
#else
    for (var i = 0u; i < 4u; i++) {
        let d = d4 * 4u + i;
        if (d < p.head_dim) {
            if (is_v) {
                vc[e + d] = kv_t(r[i]);
            } else {
                kc[e + d] = kv_t(r[i]);
            }
        }
    }
#endif
}
#endif

#ifdef SGKEY
// SGKEY (pass 1 with subgroups of at least SGMIN lanes): each subgroup walks its keys of the
// chunk (key j to subgroup j % n_subgroups) on its own, the lanes splitting the head's
// vec4 columns (lane l takes columns l, l + sg_size, ...): a K or V row is read by
// neighbouring lanes from neighbouring words (one coalesced load per row on a GPU, one
// cache line per gather on a CPU rasterizer), each lane keeps its q columns and its part
// of every head's output in registers, and a score is one subgroupAdd. Each subgroup
// keeps an online softmax per head (running max and sum, its columns rescaled only when
// the max grows), so the walk needs no barrier; the subgroups' partials merge once at the
// end through shared memory.
// vec4 columns per lane: the head's over the smallest subgroup, a power of two (the host's
// `lane_cols`; at most 64 over SGMIN, head_dim <= 256).
const C4: u32 = LANE_C4;
// Subgroups per workgroup at most.
const NSG: u32 = (WG + SGMIN - 1u) / SGMIN;
#ifdef FINAL
// FINAL: the workgroup walks the token's whole range (one split) and writes the output.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
#endif

// Each subgroup's rescaled columns of one head, then each subgroup's (max, sum).
var<workgroup> mrg: array<vec4<f32>, NSG * D4>;
var<workgroup> mls: array<vec2<f32>, NSG>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let h0 = gs.wid.y * HB;
    let t = gs.wid.z;
    if (h0 >= p.n_heads || !live(t)) {
        return;
    }
    // Workgroup x walks split x of the token's chunks; its slot is x.
    let x = gs.wid.x;
    let sc = split_chunks(t, x);
    if (sc.x >= sc.y || x >= p.max_chunks) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    // Its keys: [k0, k1), at least one.
    let k0 = max(lo, sc.x * CHUNK);
    let k1 = min(kv_len, sc.y * CHUNK);
    let at = kv_at(t, h0);
    let sgs = ids.sg_size;
    let sgi = ids.lid / sgs;
    let nsg = (WG + sgs - 1u) / sgs;
    let nd4 = head_d4();
    // This lane's q columns of each head, scaled (0 past the head).
    var qr: array<array<vec4<f32>, C4>, HB>;
#ifdef ROPE
    // The token's k and v into the cache (the block is its KV group's only one: the
    // host checks), each subgroup computing them and the first one writing, then q.
    let pos = row_pos(t);
    let src = t * p.src_stride;
    let kh = h0 / p.group;
    let kb = p.k_offset + src + kh * p.head_dim;
    let vb = p.v_offset + src + kh * p.head_dim;
    let kinv = head_inv(kb, ids.lane, sgs);
    if (sgi == 0u && pos < p.capacity) {
        let e = kv_elem(at, pos);
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            if (d4 < nd4) {
                var kr = vec4<f32>(0.0);
                var vr = vec4<f32>(0.0);
                for (var j = 0u; j < 4u; j++) {
                    let d = d4 * 4u + j;
                    if (d < p.head_dim) {
                        kr[j] = roped(kb, d, kinv, false, pos);
                        vr[j] = q[vb + d];
                    }
                }
                put_col(e, d4, false, kr);
                put_col(e, d4, true, vr);
            }
        }
    }
    // The attention temperature's multiplier of this token's q (1 when off).
    let qt = 1.0 + p.temp_scale * log(f32(pos / p.temp_floor) + 1.0);
    for (var g = 0u; g < HB; g++) {
        let qb = p.q_offset + src + (h0 + g) * p.head_dim;
        let qinv = head_inv(qb, ids.lane, sgs);
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            var r = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j++) {
                let d = d4 * 4u + j;
                if (d4 < nd4 && d < p.head_dim) {
                    r[j] = roped(qb, d, qinv, true, pos) * qt * p.scale;
                }
            }
            qr[g][i] = r;
        }
    }
    // The cache writes before any subgroup reads the new row.
    storageBarrier();
    workgroupBarrier();
#else
    for (var g = 0u; g < HB; g++) {
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            var r = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j++) {
                let d = d4 * 4u + j;
                if (d4 < nd4 && d < p.head_dim) {
                    r[j] = q[p.q_offset + head_elem(t, h0 + g, d)] * p.scale;
                }
            }
            qr[g][i] = r;
        }
    }
#endif
    var m: array<f32, HB>;
    var l: array<f32, HB>;
    var acc: array<array<vec4<f32>, C4>, HB>;
    for (var g = 0u; g < HB; g++) {
        m[g] = NEG;
    }
    // Every subgroup runs the same number of rounds (the subgroup sums need whole
    // subgroups); a round past k1 reads row k0 and weighs it 0.
    for (var jb = k0; jb < k1; jb += nsg) {
        let j = jb + sgi;
        let ok = j < k1;
        let e = kv_elem(at, select(k0, j, ok));
        var kr: array<vec4<f32>, C4>;
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            if (d4 < nd4) {
                kr[i] = kv_col(e, d4, false);
            }
        }
        var w: array<f32, HB>;
        for (var g = 0u; g < HB; g++) {
            var s = 0.0;
            for (var i = 0u; i < C4; i++) {
                s += dot(qr[g][i], kr[i]);
            }
            s = select(NEG, cap_score(subgroupAdd(s)), ok);
            if (s > m[g]) {
                let f = exp(m[g] - s);
                m[g] = s;
                l[g] *= f;
                for (var i = 0u; i < C4; i++) {
                    acc[g][i] *= f;
                }
            }
            w[g] = select(0.0, exp(s - m[g]), ok);
            l[g] += w[g];
        }
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            if (d4 < nd4) {
                let v = kv_col(e, d4, true);
                for (var g = 0u; g < HB; g++) {
                    acc[g][i] += w[g] * v;
                }
            }
        }
    }
    // Merge the subgroups per head: rescale each to the common max, sum the columns.
    for (var g = 0u; g < HB; g++) {
        if (ids.lane == 0u) {
            mls[sgi] = vec2<f32>(m[g], l[g]);
        }
        workgroupBarrier();
        var mx = NEG;
        for (var s = 0u; s < nsg; s++) {
            mx = max(mx, mls[s].x);
        }
        // A subgroup with no key in range has m = NEG and l = 0: weight 0.
        let f = exp(m[g] - mx);
        for (var i = 0u; i < C4; i++) {
            let d4 = ids.lane + i * sgs;
            if (d4 < nd4) {
                mrg[sgi * D4 + d4] = acc[g][i] * f;
            }
        }
        workgroupBarrier();
        var ls = 0.0;
        for (var s = 0u; s < nsg; s++) {
            ls += mls[s].y * exp(mls[s].x - mx);
        }
#ifdef FINAL
        // The whole range is this workgroup's: the softmax ends here (the range holds a
        // key, so mx is a real score and ls >= 1).
        var fo = 1.0;
#ifdef SINKS
        // The sink joins the denominator: rescale to the larger of the two maxima.
        let sk = sinks[h0 + g];
        let mn = max(mx, sk);
        fo = exp(mx - mn);
        ls = ls * fo + exp(sk - mn);
#endif
        let inv = fo / ls;
#else
        let base = slot_of(t, h0 + g, x) * p.head_dim;
#endif
        for (var d4 = ids.lid; d4 < nd4; d4 += WG) {
            var r = vec4<f32>(0.0);
            for (var s = 0u; s < nsg; s++) {
                r += mrg[s * D4 + d4];
            }
            for (var k = 0u; k < 4u; k++) {
                let d = d4 * 4u + k;
                if (d < p.head_dim) {
#ifdef FINAL
                    out[p.out_offset + head_elem(t, h0 + g, d)] = r[k] * inv;
#else
                    part[base + d] = r[k];
#endif
                }
            }
        }
#ifndef FINAL
        if (ids.lid == 0u) {
            let mi = ml_index(t, h0 + g, x);
            part[mi] = mx;
            part[mi + 1u] = ls;
        }
#endif
        // The next head reuses mls and mrg.
        workgroupBarrier();
    }
}
#else
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
    // covers only the window's chunks; the host gives this form one chunk per split);
    // its scratch slot is x.
    let sc = split_chunks(t, gs.wid.x);
    let c = sc.x;
    if (c >= sc.y || gs.wid.x >= p.max_chunks) {
        return;
    }
    let kv_len = kv_len_of(t);
    let lo = window_lo(kv_len, p.window);
    let at = kv_at(t, h0);
    load_q(t, h0, ids.lid);
    workgroupBarrier();

    // Scores: each invocation owns one key position, for every head of the block.
    let c0 = c * CHUNK;
    score(c0 + ids.lid, ids.lid, lo, kv_len, at);
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
        weighted_v(c0, j0, j1, at, d4, &acc);
        for (var g = 0u; g < HB; g++) {
            let base = slot_of(t, h0 + g, gs.wid.x) * p.head_dim;
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
            let mi = ml_index(t, h0 + g, gs.wid.x);
            part[mi] = m[g];
            part[mi + 1u] = l[g];
        }
    }
}
#endif
#endif
#endif
