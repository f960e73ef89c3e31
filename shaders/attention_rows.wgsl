// Causal prefill attention with one query row per invocation, for CPU rasterizers
// (lavapipe runs each invocation as a SIMD lane, where every load is a per-lane loop of
// scalar loads and a subgroup shuffle a register permute). Each invocation owns a query
// row, a (token, head of one kv group) pair, for its online softmax (max, sum). The rows
// of a subgroup walk the same keys (the union of their ranges, each masking its own),
// two keys per pass. Each group of eight lanes shares its eight rows' q and outputs by
// columns: lane j holds vec4 column j of every 32-dim part of all eight rows, and loads
// only that column of each K and V row, so a loaded column is used where it lands. A
// key's scores are the lanes' partial dot products summed across the group (a
// reduce-scatter of three shuffle exchanges, row r's left in lane r); the rows' softmax
// factors come back to every lane by eight shuffles. Against the form before (each lane
// its own row, every K and V column taken from its loading lane by shuffles: 512 permutes
// a pass), Gemma 3's pp512 attention went from 46.7 to 43.6 ms a layer, then to 31.7 ms
// with the f16 cache read as vec2<u32> words (`hearth profile -p 512 -n 0`). The head is
// held in NP parts of 32 dims, each its own array named by `#unroll`: no array is indexed
// by a runtime value, so q and the outputs stay registers (or plain spills). The host
// runs it for f16 or f32 caches, head_dim a multiple of 32, vec4 q, and steps of one
// sequence's consecutive positions. Its twin is attention_prefill's (the same Params
// and bindings). R2 (heads of 128 dims or more): each invocation takes two rows, so each
// K and V column loaded serves sixteen rows (Gemma 3's pp512 attention 866-889 ->
// 665-666 ms; with 64 dims the doubled softmax work outweighed the loads saved, and the
// one-row form below is the code as it was before R2).
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"

#include "lib/prefill_params.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
#ifdef F16
// An f16 cache as vec2<u32> words (four values each): on lavapipe a load costs per
// 32-bit component, each a bounds test and a scalar load per lane.
@group(0) @binding(1) var<storage, read> kc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec2<u32>>;

fn k4(i: u32) -> vec4<f32> {
    let w = kc[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

fn v4(i: u32) -> vec4<f32> {
    let w = vc[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#else
@group(0) @binding(1) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<f32>>;

fn k4(i: u32) -> vec4<f32> {
    return kc[i];
}

fn v4(i: u32) -> vec4<f32> {
    return vc[i];
}
#endif
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#ifdef SINKS
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

const NEG: f32 = -1e30;     // finite -inf: rows with no key yet rescale by exp(0) = 1

alias Part = array<vec4<f32>, 8>;

// This lane's vec4 column of part `at` (vec4 index `at` of each row's head) of the
// eight rows of its group, scaled: row r's q starts at vec4 qr[r].
fn load_q(d: ptr<function, Part>, qr: array<u32, 8>, at: u32) {
#unroll 8
    (*d)[$i] = q[qr[$i] + at] * p.scale;
#endunroll
}

// The part's share of the eight rows' scores of two keys, from this lane's column of
// each (k, k2), into acc (row r: (key 1, key 2)).
fn qk(qt: ptr<function, Part>, k: vec4<f32>, k2: vec4<f32>, acc: ptr<function, array<vec2<f32>, 8>>) {
#unroll 8
    (*acc)[$i] += vec2<f32>(dot((*qt)[$i], k), dot((*qt)[$i], k2));
#endunroll
}

// The rows' outputs o = o * a + w * v + w2 * v2 in this lane's column of the part
// (c[r] = (a, w, w2) of row r).
fn pv(o: ptr<function, Part>, v: vec4<f32>, v2: vec4<f32>, c: ptr<function, array<vec3<f32>, 8>>) {
#unroll 8
    (*o)[$i] = (*o)[$i] * (*c)[$i].x + (*c)[$i].y * v + (*c)[$i].z * v2;
#endunroll
}

fn store(o: ptr<function, Part>, base: array<u32, 8>, inv: array<f32, 8>, live: u32, at: u32) {
#unroll 8
    if ((live & (1u << $iu)) != 0u) {
        let v$i = (*o)[$i] * inv[$i];
        out[base[$i] + at] = v$i.x;
        out[base[$i] + at + 1u] = v$i.y;
        out[base[$i] + at + 2u] = v$i.z;
        out[base[$i] + at + 3u] = v$i.w;
    }
#endunroll
}

// The sum over the eight lanes of a group of each row's partial scores, row r's left in
// lane r (a reduce-scatter: three exchanges that each halve the rows a lane keeps).
fn scores(acc: array<vec2<f32>, 8>, l8: u32) -> vec2<f32> {
    let b2 = (l8 & 4u) != 0u;
    var h4: array<vec2<f32>, 4>;
#unroll 4
    h4[$i] = select(acc[$i], acc[$i + 4], b2) + subgroupShuffleXor(select(acc[$i + 4], acc[$i], b2), 4u);
#endunroll
    let b1 = (l8 & 2u) != 0u;
    var h2: array<vec2<f32>, 2>;
#unroll 2
    h2[$i] = select(h4[$i], h4[$i + 2], b1) + subgroupShuffleXor(select(h4[$i + 2], h4[$i], b1), 2u);
#endunroll
    let b0 = (l8 & 1u) != 0u;
    return select(h2[0], h2[1], b0) + subgroupShuffleXor(select(h2[1], h2[0], b0), 1u);
}

#ifdef R2
// An invocation's row: its query's token (clamped into the step) and head, whether the
// token is in the step, and its keys lo..hi.
struct Row {
    t: u32,
    h: u32,
    live: bool,
    lo: u32,
    hi: u32,
}

fn row_of(row: u32, n_tok: u32, kvh: u32) -> Row {
    let t = row / p.group;
    let tc = min(t, n_tok - 1u);
    let pos = row_pos(tc);
    return Row(tc, kvh * p.group + row % p.group, t < n_tok, window_lo(pos + 1u, p.window),
        min(pos + 1u, p.capacity));
}

// This row's q, as the group's lanes address it (vec4 l8 of each part of each row: qr).
fn q_rows(r: Row, l8: u32, g0: u32) -> array<u32, 8> {
    let qe = (p.q_offset + r.t * p.n_heads * HD + r.h * HD) / 4u;
    var qr: array<u32, 8>;
#unroll 8
    qr[$i] = subgroupShuffle(qe, g0 + $iu) + l8;
#endunroll
    return qr;
}

// The online softmax (max, sum) `ml` of row r over keys s and s + 1 with scores sc: its
// update, and the factors (a, w, w2) of the group's eight rows, row r's in c[r].
fn soft(r: Row, ml: ptr<function, vec2<f32>>, sc0: vec2<f32>, s: u32, g0: u32,
        c: ptr<function, array<vec3<f32>, 8>>) {
    var sc = sc0;
    if (p.softcap > 0.0) {
        sc = p.softcap * tanh(clamp(sc / p.softcap, vec2<f32>(-15.0), vec2<f32>(15.0)));
    }
    let m = (*ml).x;
    let ok = s >= r.lo && s < r.hi;
    let ok2 = s + 1u >= r.lo && s + 1u < r.hi;
    let mn = max(m, max(select(m, sc.x, ok), select(m, sc.y, ok2)));
    let a = exp(m - mn);
    let w = select(0.0, exp(sc.x - mn), ok);
    let w2 = select(0.0, exp(sc.y - mn), ok2);
    *ml = vec2<f32>(mn, (*ml).y * a + w + w2);
    let mine = vec3<f32>(a, w, w2);
#unroll 8
    (*c)[$i] = subgroupShuffle(mine, g0 + $iu);
#endunroll
}

#ifdef SINKS
// The head's sink joins the row's softmax: the factors that rescale the group's outputs.
fn sink(r: Row, ml: ptr<function, vec2<f32>>, g0: u32) -> array<vec3<f32>, 8> {
    let sk = sinks[r.h];
    let mn = max((*ml).x, sk);
    let f = exp((*ml).x - mn);
    *ml = vec2<f32>(mn, (*ml).y * f + exp(sk - mn));
    var c: array<vec3<f32>, 8>;
#unroll 8
    c[$i] = vec3<f32>(subgroupShuffle(f, g0 + $iu), 0.0, 0.0);
#endunroll
    return c;
}
#endif

// Where the group's eight rows' outputs go (this lane's column), their 1 / sums, and
// which are live (bit r).
struct Out {
    base: array<u32, 8>,
    inv: array<f32, 8>,
    live: u32,
}

fn out_of(r: Row, l: f32, l8: u32, g0: u32) -> Out {
    // l is 0 only for a query past the cache's capacity (a caller error).
    var mine_inv = 0.0;
    if (l > 0.0) {
        mine_inv = 1.0 / l;
    }
    let mine_base = p.out_offset + r.t * p.n_heads * HD + r.h * HD;
    let mine_live = select(0u, 1u, r.live);
    var o: Out;
    o.live = 0u;
#unroll 8
    o.base[$i] = subgroupShuffle(mine_base, g0 + $iu) + 4u * l8;
    o.inv[$i] = subgroupShuffle(mine_inv, g0 + $iu);
    o.live |= subgroupShuffle(mine_live, g0 + $iu) << $iu;
#endunroll
    return o;
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n_tok = min(p.max_tokens, step.n_tokens);
    // R2: two rows per invocation (2 lid and 2 lid + 1: mostly two heads of one token),
    // so each group of eight lanes holds sixteen rows as two sets of eight, A and B, and
    // every K and V column it loads serves both.
    let row0 = gs.wid.x * 2u * WG;
    let kvh = gs.wid.y;
    if (row0 / p.group >= n_tok) {
        return;
    }
    let ra = row_of(row0 + 2u * ids.lid, n_tok, kvh);
    var mla = vec2<f32>(NEG, 0.0);
    let rb = row_of(row0 + 2u * ids.lid + 1u, n_tok, kvh);
    var mlb = vec2<f32>(NEG, 0.0);
    // The keys of the subgroup's rows; never past the cache.
    let k_lo = subgroupMin(min(ra.lo, rb.lo));
    let k_hi = subgroupMax(max(ra.hi, rb.hi));
    let slot = row_slot(ra.t);
    // Each group of eight lanes (l8 = 0..7, from lane g0) shares its rows' work: lane j
    // holds vec4 column j of each 32-dim part of all its rows' q and output, so K and V
    // columns are used where they are loaded, and each set's scores are summed across
    // the lanes once per key.
    let l8 = ids.lane % 8u;
    let g0 = ids.lane - l8;
    let qa = q_rows(ra, l8, g0);
#unroll NP
    var qa$i: Part;
    var oa$i: Part;
    load_q(&qa$i, qa, 8u * $i);
#endunroll
    let qb = q_rows(rb, l8, g0);
#unroll NP
    var qb$i: Part;
    var ob$i: Part;
    load_q(&qb$i, qb, 8u * $i);
#endunroll
    for (var s = k_lo; s < k_hi; s += 2u) {
        // Two keys per pass, the second clamped into the range (and masked).
        let s2 = min(s + 1u, k_hi - 1u);
        let src = (cache_row(slot, s, p.capacity) * p.kv_dim + kvh * HD) / 4u + l8;
        let src2 = (cache_row(slot, s2, p.capacity) * p.kv_dim + kvh * HD) / 4u + l8;
        var acca: array<vec2<f32>, 8>;
#unroll NP
        let ka$i = k4(src + 8u * $i);
        let kb$i = k4(src2 + 8u * $i);
        qk(&qa$i, ka$i, kb$i, &acca);
#endunroll
        var ca: array<vec3<f32>, 8>;
        soft(ra, &mla, scores(acca, l8), s, g0, &ca);
        var accb: array<vec2<f32>, 8>;
#unroll NP
        qk(&qb$i, ka$i, kb$i, &accb);
#endunroll
        var cb: array<vec3<f32>, 8>;
        soft(rb, &mlb, scores(accb, l8), s, g0, &cb);
#unroll NP
        let va$i = v4(src + 8u * $i);
        let vb$i = v4(src2 + 8u * $i);
        pv(&oa$i, va$i, vb$i, &ca);
#endunroll
#unroll NP
        pv(&ob$i, va$i, vb$i, &cb);
#endunroll
    }
#ifdef SINKS
    let z = vec4<f32>(0.0);
    var sa = sink(ra, &mla, g0);
    var sb = sink(rb, &mlb, g0);
#unroll NP
    pv(&oa$i, z, z, &sa);
    pv(&ob$i, z, z, &sb);
#endunroll
#endif
    let outa = out_of(ra, mla.y, l8, g0);
    let outb = out_of(rb, mlb.y, l8, g0);
#unroll NP
    store(&oa$i, outa.base, outa.inv, outa.live, 32u * $i);
    store(&ob$i, outb.base, outb.inv, outb.live, 32u * $i);
#endunroll
}
#else
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
    // Each group of eight lanes (l8 = 0..7, from lane g0) shares its rows' work: lane j
    // holds vec4 column j of each 32-dim part of all eight rows' q and output, so K and V
    // columns are used where they are loaded, and the rows' scores are summed across
    // the lanes once per key.
    let l8 = ids.lane % 8u;
    let g0 = ids.lane - l8;

    let qe = (p.q_offset + tc * p.n_heads * HD + h * HD) / 4u;
    var qr: array<u32, 8>;
#unroll 8
    qr[$i] = subgroupShuffle(qe, g0 + $iu) + l8;
#endunroll
#unroll NP
    var q$i: Part;
    var o$i: Part;
    load_q(&q$i, qr, 8u * $i);
#endunroll
    var m = NEG;
    var lsum = 0.0;
    for (var s = k_lo; s < k_hi; s += 2u) {
        // Two keys per pass, the second clamped into the range (and masked).
        let s2 = min(s + 1u, k_hi - 1u);
        let src = (cache_row(slot, s, p.capacity) * p.kv_dim + kvh * HD) / 4u + l8;
        let src2 = (cache_row(slot, s2, p.capacity) * p.kv_dim + kvh * HD) / 4u + l8;
        var acc: array<vec2<f32>, 8>;
#unroll NP
        qk(&q$i, k4(src + 8u * $i), k4(src2 + 8u * $i), &acc);
#endunroll
        var sc = scores(acc, l8);
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
        var c: array<vec3<f32>, 8>;
        let mine = vec3<f32>(a, w, w2);
#unroll 8
        c[$i] = subgroupShuffle(mine, g0 + $iu);
#endunroll
#unroll NP
        pv(&o$i, v4(src + 8u * $i), v4(src2 + 8u * $i), &c);
#endunroll
    }
#ifdef SINKS
    let sk = sinks[h];
    let mn = max(m, sk);
    let f = exp(m - mn);
    lsum = lsum * f + exp(sk - mn);
    var c: array<vec3<f32>, 8>;
#unroll 8
    c[$i] = vec3<f32>(subgroupShuffle(f, g0 + $iu), 0.0, 0.0);
#endunroll
    let z = vec4<f32>(0.0);
#unroll NP
    pv(&o$i, z, z, &c);
#endunroll
#endif
    // lsum is 0 only for a query past the cache's capacity (a caller error).
    var mine_inv = 0.0;
    if (lsum > 0.0) {
        mine_inv = 1.0 / lsum;
    }
    let mine_base = p.out_offset + t * p.n_heads * HD + h * HD;
    let mine_live = select(0u, 1u, live);
    var base: array<u32, 8>;
    var inv: array<f32, 8>;
    var lv = 0u;
#unroll 8
    base[$i] = subgroupShuffle(mine_base, g0 + $iu) + 4u * l8;
    inv[$i] = subgroupShuffle(mine_inv, g0 + $iu);
    lv |= subgroupShuffle(mine_live, g0 + $iu) << $iu;
#endunroll
#unroll NP
    store(&o$i, base, inv, lv, 32u * $i);
#endunroll
}
#endif
