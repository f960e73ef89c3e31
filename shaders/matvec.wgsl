// Matrix-vector product for decode: y[y_offset + row_offset + r] = sum_k W[r, k] * x[x_offset + k]
// over the rows of one shard of W. LANES consecutive invocations share NR rows, so rows
// map onto subgroups and each x value read serves NR rows. Each lane walks the rows'
// block parts with stride LANES, decoding a whole part (8 to 32 weights) with its
// block's scale unpacked once (the dtype's `dot_block_part`; split-row types and Q4_K
// read a part's quants in one 16-byte load), and the row's lanes are summed with
// subgroup shuffles or, without subgroups, in shared memory. WG, LANES and NR come from
// the host's per-adapter table. SEQ: each invocation walks SEQ groups of NR consecutive
// rows in turn (the host's `row_runs`: tall matrices on a CPU rasterizer).
// GATED: y holds the FFN's gate projection, and the row's result u becomes
// y = act(y) * u (the up projection with the gated activation as its epilogue). With
// PAIR both projections come from one dispatch: the weights hold the gate's rows, then
// the up's.
// XSHARE (one lane per row, with subgroups of at least 8, for types that preload x):
// the lanes of a subgroup share each part's x by broadcast (see load_xpart).
// A sub-block's residual add and the next pre-norm, folded into the projections around
// them so that decode has no dispatch for either (RmsNorm(x) * w = s * (x * w) with
// s = 1 / sqrt(mean(x^2) + eps), and W is linear):
// ADDY: the product is added to y, the residual stream (each row is read and written by
// the one invocation that owns it). With PREP the new rows r also leave hn[r] = y[r] *
// wn[r] (the next norm's weights applied) and each workgroup the sum of its rows'
// squares in ssq, at its index among the matrix's workgroups (with CLAIM each subgroup,
// at its index among the launched workgroups' subgroups).
// XNORM: x is such an hn, and each row's sum is scaled by s, from the first p.parts
// sums in ssq (a few per lane, shuffled together, with XBCAST).
// SANDWICH (Gemma's post-norms): the input binding holds a sub-block's output o, and
// each workgroup first forms the residual add through o's post-norm and the next
// pre-norm itself: v = res_in + RmsNorm(o) * post, x = v * wn in shared memory (XW4
// vec4s, the k values), each row's sum scaled by the norm of v as with XNORM. The
// dispatch with p.parts = 1 also writes v to res_out (its first workgroup), the
// residual stream for what follows; res_out is not res_in, which the other workgroups
// may still be reading.
// FLOAT_RUNS: float rows of whole runs of 32, read by runs (lib/float_runs.wgsl) with x
// on vec4 words; other float rows read x as scalars (X_SCALAR).
#ifdef FLOAT_WEIGHTS
#ifndef FLOAT_RUNS
#define X_SCALAR
#endif
#endif
#include "lib/common.wgsl"
#ifdef GATED
#include "lib/act.wgsl"
#endif
#ifdef PREP
#include "lib/reduce.wgsl"
#else
#ifdef SANDWICH
#include "lib/reduce.wgsl"
#endif
#endif

struct Params {
    rows: u32,        // rows in this shard
    k: u32,           // elements per row
    row_words: u32,   // words per row in GPU layout
    row_offset: u32,  // first row of this shard in the whole tensor
    x_offset: u32,
    y_offset: u32,
    eps: f32,         // XNORM, SANDWICH: the norms' epsilon
    parts: u32,       // XNORM: sums of squares in ssq; SANDWICH: 1 to write res_out
}

#ifdef X_SCALAR
@group(0) @binding(1) var<storage, read> x: array<f32>;
#else
// Block types and float runs: rows are whole blocks (k a multiple of 32) and the host
// checks that x_offset is a multiple of 4, so x is read as vec4 words.
#ifdef XUNIFORM
// One lane per row where x fits a uniform window (X_WINDOW bytes, src/kernels/mod.rs;
// the host binds it at its start and gives x_offset from there): on a CPU rasterizer
// uniform loads are branch-free gathers where storage loads are per-lane loops.
@group(0) @binding(1) var<uniform> x4: array<vec4<f32>, 4096>;
#else
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#endif
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef XNORM
@group(0) @binding(8) var<storage, read> ssq: array<f32>;
#endif
#ifdef PREP
@group(0) @binding(6) var<storage, read> wn: array<f32>;
@group(0) @binding(7) var<storage, read_write> hn: array<f32>;
@group(0) @binding(8) var<storage, read_write> ssq: array<f32>;
#endif
#ifdef SANDWICH
#ifdef XUNIFORM
// Beside x's window, as uniform loads (see XUNIFORM): bound to their k values.
@group(0) @binding(6) var<uniform> wn4: array<vec4<f32>, XW4>;
@group(0) @binding(9) var<uniform> res_in: array<vec4<f32>, XW4>;
@group(0) @binding(10) var<uniform> post4: array<vec4<f32>, XW4>;
#else
@group(0) @binding(6) var<storage, read> wn4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> res_in: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> post4: array<vec4<f32>>;
#endif
@group(0) @binding(11) var<storage, read_write> res_out: array<vec4<f32>>;
var<workgroup> xw: array<vec4<f32>, XW4>;
#endif

// LANES (invocations per row) and NR (rows per invocation) come as constants from the
// host's table. Rows per workgroup: ROWS groups of NR.
const ROWS: u32 = WG / LANES;

// x[e .. e+3] of the input binding (e a multiple of 4); past k it reads 0 (float rows
// may end inside a group).
fn in4(e: u32) -> vec4<f32> {
#ifdef X_SCALAR
    let o = p.x_offset + e;
    if (e + 4u > p.k) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < p.k - e; c++) {
            v[c] = x[o + c];
        }
        return v;
    }
    return vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
#else
    return x4[(p.x_offset + e) / 4u];
#endif
}

// x[e .. e+3] of the product's x (e a multiple of 4): the input, or SANDWICH's x.
fn xv4(e: u32) -> vec4<f32> {
#ifdef SANDWICH
    return xw[e / 4u];
#else
    return in4(e);
#endif
}

#include "lib/row_sum.wgsl"

#ifdef XPRE
// The x of the part being read, loaded once for the invocation's NR rows (and PAIR's up
// rows) where each row would otherwise load it again: 8 vec4s, a run of 16 elements at
// x0 (vec4s 0..3) and one at x0 + hi (4..7), read through `xpart`, and the sums of each
// run (`xsum`, unless the dtype defines XNOSUM). A dtype that reads x this way defines
// XPRE and `part_x(part, e)`, the (x0, hi) of its part `part` of the block at element e.
var<private> xsum: vec2<f32>;

#ifdef XSHARE
#ifdef SUBGROUPS
// XSHARE (one lane per row, subgroups of at least 8): the subgroup's invocations own
// different rows and read the same part, so its lane j loads the part's vec4 j and the
// others take it from that lane where they use it: 1 load per lane instead of 8. A CPU
// rasterizer runs each invocation as a SIMD lane, where every load of x is a per-lane
// gather and taking a lane's value a register permute. (Taking all eight vec4s into
// registers when the part starts, as an earlier form did, kept 32 more registers live:
// on lavapipe the Q8_0 head ran 1.3x slower.)
#define XBCAST
#endif
#endif

#ifdef BLOCK_HEAD
// A dtype whose blocks have a header its parts share (K-quants' scales) defines
// BLOCK_HEAD, a type Head, `block_head(row, nb, blk) -> Head` and
// `dot_head_part(head, row, nb, blk, part, e)`. With one lane per row (XSHARE) the loop
// reads each header once per block (on lavapipe the Q4_K matvec ran 1.16x faster; Q6_K,
// its scales held across the parts, 0.8x); otherwise once per part, as here.
fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    return dot_head_part(block_head(row, nb, blk), row, nb, blk, part, e);
}

#ifdef XSHARE
#define HEAD_LOOP
#endif
#endif

#ifdef XBCAST
// This lane's vec4 of the part.
var<private> xl: vec4<f32>;

fn load_xpart(x0: u32, hi: u32, sl: u32) {
    xl = xv4(x0 + select(0u, hi, sl >= 4u) + 4u * (sl & 3u));
#ifndef XNOSUM
    // Each run's sum: the lanes of each group of four add theirs, lanes 0 and 4 hold them.
    var t = dot(xl, vec4<f32>(1.0));
    t += subgroupShuffleXor(t, 1u);
    t += subgroupShuffleXor(t, 2u);
    xsum = vec2<f32>(subgroupShuffle(t, 0u), subgroupShuffle(t, 4u));
#endif
}

// vec4 j (0..7) of the part's x, from the lane that loaded it (j is a constant at every
// call once inlined, so this is a register permute).
fn xpart(j: u32) -> vec4<f32> {
    return subgroupShuffle(xl, j);
}
#else
var<private> xs: array<vec4<f32>, 8>;

fn load_xpart(x0: u32, hi: u32, sl: u32) {
    var s = vec4<f32>(0.0);
    var t = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        xs[j] = xv4(x0 + 4u * j);
        xs[4u + j] = xv4(x0 + hi + 4u * j);
        s += xs[j];
        t += xs[4u + j];
    }
#ifndef XNOSUM
    xsum = vec2<f32>(dot(s, vec4<f32>(1.0)), dot(t, vec4<f32>(1.0)));
#endif
}

fn xpart(j: u32) -> vec4<f32> {
    return xs[j];
}
#endif
#endif

#ifdef CLAIM
// Rows claimed at run time (lib/claim.wgsl): an item is a subgroup's rows.
#include "lib/claim.wgsl"
#endif

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    var xscale = 1.0;
#ifdef XNORM
    var ss = 0.0;
#ifdef XBCAST
    for (var i = ids.lane % 8u; i < p.parts; i += 8u) {
        ss += ssq[i];
    }
    ss += subgroupShuffleXor(ss, 1u);
    ss += subgroupShuffleXor(ss, 2u);
    ss += subgroupShuffleXor(ss, 4u);
#else
    for (var i = 0u; i < p.parts; i++) {
        ss += ssq[i];
    }
#endif
    xscale = inverseSqrt(ss / f32(p.k) + p.eps);
#endif
#ifdef SANDWICH
    {
        // The post-norm's scale of o, then v and its squares (each invocation keeps the
        // vec4s it wrote), then the pre-norm's scale of v; the host checks k % 4 == 0.
        let n4 = p.k / 4u;
        var so = 0.0;
        for (var i = ids.lid; i < n4; i += WG) {
            let o = in4(4u * i);
            so += dot(o, o);
        }
        let ko = inverseSqrt(wg_sum(so, ids) / f32(p.k) + p.eps);
        let writes = p.parts == 1u && wg_index(gs) == 0u;
        var sv = 0.0;
        for (var i = ids.lid; i < n4; i += WG) {
            let v = res_in[i] + in4(4u * i) * ko * post4[i];
            sv += dot(v, v);
            xw[i] = v * wn4[i];
            if (writes) {
                res_out[i] = v;
            }
        }
        // wg_sum's barriers also publish xw to the workgroup.
        xscale = inverseSqrt(wg_sum(sv, ids) / f32(p.k) + p.eps);
    }
#endif
#ifdef CLAIM
    let per = ids.sg_size * NR * SEQ;
    let items = (p.rows + per - 1u) / per;
    var sq = 0.0;
    loop {
        let item = claim_next(ids);
        if (item >= items) {
            break;
        }
        sq += rows_of((item * ids.sg_size + ids.lane) * NR * SEQ, ids, xscale);
    }
    claim_done(ids, gs);
#ifdef PREP
    // Which rows a subgroup did is known only at run time: each subgroup leaves the sum
    // of its own rows' squares, at its index among the launched workgroups' subgroups
    // (the host's parts: launches * WG / the adapter's one subgroup size, one shard),
    // and the norm's readers sum them all.
    let total = subgroupAdd(sq);
    if (ids.lane == 0u) {
        ssq[wg_index(gs) * subgroups_per_wg(ids) + ids.lid / ids.sg_size] = total;
    }
#endif
#else
    let wgi = wg_index(gs);
    let sq = rows_of((wgi * ROWS + ids.lid / LANES) * NR * SEQ, ids, xscale);
#ifdef PREP
    // Shards start on whole workgroups of rows (host-checked).
    let part = wg_sum(sq, ids);
    if (ids.lid == 0u) {
        ssq[p.row_offset / (ROWS * NR * SEQ) + wgi] = part;
    }
#endif
#endif
}

// The invocation's SEQ groups of NR rows from row first0 (NR in registers; the parts of
// x it reads are shared by them), consecutive. Returns the sum of the squares of the new
// rows it wrote (PREP; else 0).
fn rows_of(first0: u32, ids: Ids, xscale: f32) -> f32 {
    let lane = ids.lid % LANES;
    var sq = 0.0;
    // SEQ: the invocation walks SEQ groups of NR consecutive rows in turn, so each lane
    // reads one contiguous stretch of the weights.
    for (var s = 0u; s < SEQ; s++) {
        let first = first0 + s * NR;
        var acc: array<f32, NR>;
#ifdef PAIR
        // PAIR: the weights hold 2 * p.rows rows, a gated FFN's gate then its up projection;
        // row r's result is act(gate r) * up r, both read against the same x.
        var acc_up: array<f32, NR>;
#endif
#ifdef XBCAST
        // Every lane of the subgroup takes part in the broadcasts: rows past the end are
        // recomputed as the last (never stored), never skipped.
        let sl = ids.lane % 8u;
        {
#else
        let sl = 0u;
        if (first < p.rows) {
#endif
            let nb = (p.k + QK - 1u) / QK;
#ifdef HEAD_LOOP
            // One lane per row walks its row's blocks in order, so the dtype reads a block's
            // header (its scales) once for the block's parts, not once per part. (Rows are
            // unrolled: the headers held in an array indexed by a loop variable went to
            // memory on lavapipe and lost the gain.)
            // Row bases, rows past the end recomputed as the last (never stored).
#unroll NR
            let r$i = min(first + $iu, p.rows - 1u) * p.row_words;
#endunroll
#ifdef PAIR
#unroll NR
            let u$i = (min(first + $iu, p.rows - 1u) + p.rows) * p.row_words;
#endunroll
#endif
            for (var blk = 0u; blk < nb; blk++) {
#unroll NR
                let h$i = block_head(r$i, nb, blk);
#endunroll
#ifdef PAIR
#unroll NR
                let hu$i = block_head(u$i, nb, blk);
#endunroll
#endif
                for (var part = 0u; part < PARTS; part++) {
                    let xp = part_x(part, blk * QK);
                    load_xpart(xp.x, xp.y, sl);
#unroll NR
                    acc[$i] += dot_head_part(h$i, r$i, nb, blk, part, blk * QK);
#endunroll
#ifdef PAIR
#unroll NR
                    acc_up[$i] += dot_head_part(hu$i, u$i, nb, blk, part, blk * QK);
#endunroll
#endif
                }
            }
#else
            for (var i = lane; i < nb * PARTS; i += LANES) {
                let blk = i / PARTS;
#ifdef XPRE
                let xp = part_x(i % PARTS, blk * QK);
                load_xpart(xp.x, xp.y, sl);
#endif
                for (var r = 0u; r < NR; r++) {
                    // Past the last row, recompute it (never stored).
                    let row = min(first + r, p.rows - 1u);
                    acc[r] += dot_block_part(row * p.row_words, nb, blk, i % PARTS, blk * QK);
#ifdef PAIR
                    let up = (row + p.rows) * p.row_words;
                    acc_up[r] += dot_block_part(up, nb, blk, i % PARTS, blk * QK);
#endif
                }
            }
#endif
        }
        for (var r = 0u; r < NR; r++) {
            let total = row_sum(acc[r], ids, lane) * xscale;
#ifdef PAIR
            let up_total = row_sum(acc_up[r], ids, lane) * xscale;
#endif
            let row = first + r;
            if (lane == 0u && row < p.rows) {
                let yi = p.y_offset + p.row_offset + row;
#ifdef PAIR
                y[yi] = gated(total, up_total);
#else
#ifdef GATED
                y[yi] = gated(y[yi], total);
#else
#ifdef ADDY
                let v = y[yi] + total;
                y[yi] = v;
#ifdef PREP
                hn[p.row_offset + row] = v * wn[p.row_offset + row];
                sq += v * v;
#endif
#else
                y[yi] = total;
#endif
#endif
#endif
            }
        }
    }
    return sq;
}
