// Matrix times the step's token columns, for a batched decode step that advances several
// sequences by one token each: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for the
// tokens t0 <= t < t0 + COLS of this workgroup's column block (t < min(p.n_tokens,
// step.n_tokens)). LANES consecutive invocations share a row; each lane decodes its
// stride of the row's 4-element groups once (the dtype's dq4_row) and multiplies every
// decoded group into all COLS columns, so a step reads and decodes the weights once
// however many sequences it advances. The row's lanes are summed per column with
// subgroup shuffles or, without subgroups, in shared memory. WG and LANES come from the
// matvec geometry table; COLS (tokens per workgroup) from the host's pick per step: 4,
// 8 (WIDE) or, in the x-sharing form, 16 (WIDE16: each lane also loads column c + 8's x
// and every decoded weight group serves 16 columns, a 4 x 16 register tile; with BR8,
// for the types the host's `tall` lists, 8 x 16: each column's x serves eight rows).
// GATED: Y holds the FFN's gate projection, and the result u becomes y = act(y) * u.
// PAIR (with GATED's activation): W holds a gated FFN's gate rows, then its up rows
// (p.rows each), and y = act(gate x) * (up x) in one dispatch: the 4-row tile takes two
// gate rows and the same two up rows.
// XSHARE (one lane per row, block types or float rows of whole runs of 32, subgroups of
// at least 8; the host adds LAZY_FORM): x shared across the subgroup, lane c loading column c (lib/xshare.wgsl), and
// the weights decoded from words loaded where they are used (lib/lazy.wgsl) where the
// type has the lazy form. On lavapipe the earlier form (a vec4 of x per lane, a block's
// words preloaded per row) held about 100 registers across a block and spilled:
// `benches/matvec` Q8_0 prefill 27 against 51 GFLOP/s now.
// x as vec4 words: block types (rows of whole blocks) and the x-sharing form (float rows
// of whole runs of 32, host-checked).
#ifndef FLOAT_WEIGHTS
#define X_VEC4
#endif
#ifdef XSHARE
#ifdef FLOAT_WEIGHTS
#define X_VEC4
#endif
#endif
#include "lib/token_rows.wgsl"
#include "lib/row_sum.wgsl"
#include "lib/step.wgsl"
#ifdef GATED
#include "lib/act.wgsl"
#endif

const ROWS: u32 = WG / LANES;

// Rows per invocation: each x value read serves BR rows, as each decoded weight group
// serves COLS columns (a BR x COLS register tile).
#ifdef BR8
const BR: u32 = 8u;
#else
const BR: u32 = 4u;
#endif
// Output rows per invocation: the tile's, or with PAIR its gate rows (the other half are
// the same rows of up).
#ifdef PAIR
const OUT_ROWS: u32 = BR / 2u;
#else
const OUT_ROWS: u32 = BR;
#endif

// w's dot products with four columns' x.
fn dots4(w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(w, x0), dot(w, x1), dot(w, x2), dot(w, x3));
}

// The register tile: BR rows (their first words b0..b3) times the columns, four to an
// accumulator block (its r0..r3 the tile's rows): columns 0..3 in cols0, with WIDE 4..7
// in cols4, with WIDE16 8..11 in cols8 and 12..15 in cols12.
var<private> b0: u32;
var<private> b1: u32;
var<private> b2: u32;
var<private> b3: u32;
#ifdef BR8
// BR8 (x-sharing form): rows 4..7 of the tile, their accumulators in the *h blocks.
var<private> b4: u32;
var<private> b5: u32;
var<private> b6: u32;
var<private> b7: u32;
#endif

struct Acc {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

var<private> cols0: Acc;
#ifdef WIDE
var<private> cols4: Acc;
#endif
#ifdef WIDE16
var<private> cols8: Acc;
var<private> cols12: Acc;
#endif
#ifdef BR8
var<private> cols0h: Acc;
#ifdef WIDE
var<private> cols4h: Acc;
#endif
#ifdef WIDE16
var<private> cols8h: Acc;
var<private> cols12h: Acc;
#endif
#endif

// One 4-element group of the tile's rows (w0..w3), decoded once, into four columns'
// accumulators t: x0..x3 are the columns' x at that group.
fn acc_add(t: ptr<private, Acc>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>,
        w3: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
    (*t).r0 += dots4(w0, x0, x1, x2, x3);
    (*t).r1 += dots4(w1, x0, x1, x2, x3);
    (*t).r2 += dots4(w2, x0, x1, x2, x3);
    (*t).r3 += dots4(w3, x0, x1, x2, x3);
}

// The group into columns 0..3 (x0..x3) and, with WIDE, 4..7 (x4..x7).
fn tile_add(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, x0: vec4<f32>,
        x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>,
        x6: vec4<f32>, x7: vec4<f32>) {
    acc_add(&cols0, w0, w1, w2, w3, x0, x1, x2, x3);
#ifdef WIDE
    acc_add(&cols4, w0, w1, w2, w3, x4, x5, x6, x7);
#endif
}

// Group g of the tile's rows through the type's group decoder.
fn tile_group(g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
        x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) {
    tile_add(dq4_row(b0, g), dq4_row(b1, g), dq4_row(b2, g), dq4_row(b3, g), x0, x1, x2, x3,
        x4, x5, x6, x7);
}

#ifdef XSHARE
// The first vec4 word of x of this lane's column (token), and with WIDE16 of the column
// eight further.
var<private> xcol: u32;
#ifdef WIDE16
var<private> xcol2: u32;

// The x words at vec4 offset o of this lane's columns: column c's in a, with WIDE16
// column c + 8's in b.
struct Xs {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn xs_at(o: u32) -> Xs {
    return Xs(x4[xcol + o], x4[xcol2 + o]);
}
#else
struct Xs {
    a: vec4<f32>,
}

fn xs_at(o: u32) -> Xs {
    return Xs(x4[xcol + o]);
}
#endif

#include "lib/xshare.wgsl"

// Four decoded weight groups of the tile's rows against every column's x words v.
fn tile_xg(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, v: Xs) {
    tile_add(w0, w1, w2, w3, xg(v.a, 0u), xg(v.a, 1u), xg(v.a, 2u), xg(v.a, 3u), xg(v.a, 4u),
        xg(v.a, 5u), xg(v.a, 6u), xg(v.a, 7u));
#ifdef WIDE16
    acc_add(&cols8, w0, w1, w2, w3, xg(v.b, 0u), xg(v.b, 1u), xg(v.b, 2u), xg(v.b, 3u));
    acc_add(&cols12, w0, w1, w2, w3, xg(v.b, 4u), xg(v.b, 5u), xg(v.b, 6u), xg(v.b, 7u));
#endif
}

#ifdef BR8
// Eight decoded weight groups of the tile's rows against every column's x words v, the
// columns' x taken once for both halves.
fn tile_xg8(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, w4: vec4<f32>,
        w5: vec4<f32>, w6: vec4<f32>, w7: vec4<f32>, v: Xs) {
    let x0 = xg(v.a, 0u);
    let x1 = xg(v.a, 1u);
    let x2 = xg(v.a, 2u);
    let x3 = xg(v.a, 3u);
    acc_add(&cols0, w0, w1, w2, w3, x0, x1, x2, x3);
    acc_add(&cols0h, w4, w5, w6, w7, x0, x1, x2, x3);
#ifdef WIDE
    let x4 = xg(v.a, 4u);
    let x5 = xg(v.a, 5u);
    let x6 = xg(v.a, 6u);
    let x7 = xg(v.a, 7u);
    acc_add(&cols4, w0, w1, w2, w3, x4, x5, x6, x7);
    acc_add(&cols4h, w4, w5, w6, w7, x4, x5, x6, x7);
#endif
#ifdef WIDE16
    let y0 = xg(v.b, 0u);
    let y1 = xg(v.b, 1u);
    let y2 = xg(v.b, 2u);
    let y3 = xg(v.b, 3u);
    acc_add(&cols8, w0, w1, w2, w3, y0, y1, y2, y3);
    acc_add(&cols8h, w4, w5, w6, w7, y0, y1, y2, y3);
    let y4 = xg(v.b, 4u);
    let y5 = xg(v.b, 5u);
    let y6 = xg(v.b, 6u);
    let y7 = xg(v.b, 7u);
    acc_add(&cols12, w0, w1, w2, w3, y4, y5, y6, y7);
    acc_add(&cols12h, w4, w5, w6, w7, y4, y5, y6, y7);
#endif
}
#endif

#ifdef LAZY
// The scales (and word addresses) of the groups the loop is at, per row of the tile
// (lazy_scale).
var<private> l0: Lazy;
var<private> l1: Lazy;
var<private> l2: Lazy;
var<private> l3: Lazy;
#ifdef BR8
var<private> l4: Lazy;
var<private> l5: Lazy;
var<private> l6: Lazy;
var<private> l7: Lazy;
#endif

// The tile's rows' scales from group g.
fn lazy_scales(g: u32) {
    l0 = lazy_scale(b0, g);
    l1 = lazy_scale(b1, g);
    l2 = lazy_scale(b2, g);
    l3 = lazy_scale(b3, g);
#ifdef BR8
    l4 = lazy_scale(b4, g);
    l5 = lazy_scale(b5, g);
    l6 = lazy_scale(b6, g);
    l7 = lazy_scale(b7, g);
#endif
}
#endif

#ifdef LAZY_QUAD
// Group j of run k (elements 32k + 4j.. of the step from element e0 = e - 4j) of the
// tile's rows, from their words w0..w3 of slot j, against every column's x.
#ifdef BR8
fn quad_run(k: u32, j: u32, e: u32, w0: vec3<u32>, w1: vec3<u32>, w2: vec3<u32>,
        w3: vec3<u32>, w4: vec3<u32>, w5: vec3<u32>, w6: vec3<u32>, w7: vec3<u32>) {
    tile_xg8(lazy_run(l0, w0, j, k), lazy_run(l1, w1, j, k), lazy_run(l2, w2, j, k),
        lazy_run(l3, w3, j, k), lazy_run(l4, w4, j, k), lazy_run(l5, w5, j, k),
        lazy_run(l6, w6, j, k), lazy_run(l7, w7, j, k), xs_at((e + 32u * k) / 4u));
}

fn share_quad(j: u32, e: u32) {
    let w0 = lazy_words(l0, j);
    let w1 = lazy_words(l1, j);
    let w2 = lazy_words(l2, j);
    let w3 = lazy_words(l3, j);
    let w4 = lazy_words(l4, j);
    let w5 = lazy_words(l5, j);
    let w6 = lazy_words(l6, j);
    let w7 = lazy_words(l7, j);
    quad_run(0u, j, e, w0, w1, w2, w3, w4, w5, w6, w7);
    quad_run(1u, j, e, w0, w1, w2, w3, w4, w5, w6, w7);
    quad_run(2u, j, e, w0, w1, w2, w3, w4, w5, w6, w7);
    quad_run(3u, j, e, w0, w1, w2, w3, w4, w5, w6, w7);
}
#else
fn quad_run(k: u32, j: u32, e: u32, w0: vec3<u32>, w1: vec3<u32>, w2: vec3<u32>,
        w3: vec3<u32>) {
    tile_xg(lazy_run(l0, w0, j, k), lazy_run(l1, w1, j, k), lazy_run(l2, w2, j, k),
        lazy_run(l3, w3, j, k), xs_at((e + 32u * k) / 4u));
}

// Word slot j of the step's four runs: each row's words loaded once, then each run
// decoded from them where it is used (x elements e.. of run 0).
fn share_quad(j: u32, e: u32) {
    let w0 = lazy_words(l0, j);
    let w1 = lazy_words(l1, j);
    let w2 = lazy_words(l2, j);
    let w3 = lazy_words(l3, j);
    quad_run(0u, j, e, w0, w1, w2, w3);
    quad_run(1u, j, e, w0, w1, w2, w3);
    quad_run(2u, j, e, w0, w1, w2, w3);
    quad_run(3u, j, e, w0, w1, w2, w3);
}
#endif
#else
#ifdef LAZY_PAIR
// Group j + i of the tile's rows against the columns' x words s (from the first run),
// and group j + i + LAZY_GROUPS / 2 against t (from the second) (i = 0 or 1).
fn share_pair1(j: u32, i: u32, s: Xs, t: Xs) {
    let p0 = lazy_pair(l0, j + i);
    let p1 = lazy_pair(l1, j + i);
    let p2 = lazy_pair(l2, j + i);
    let p3 = lazy_pair(l3, j + i);
#ifdef BR8
    let p4 = lazy_pair(l4, j + i);
    let p5 = lazy_pair(l5, j + i);
    let p6 = lazy_pair(l6, j + i);
    let p7 = lazy_pair(l7, j + i);
    tile_xg8(p0[0], p1[0], p2[0], p3[0], p4[0], p5[0], p6[0], p7[0], s);
    tile_xg8(p0[1], p1[1], p2[1], p3[1], p4[1], p5[1], p6[1], p7[1], t);
#else
    tile_xg(p0[0], p1[0], p2[0], p3[0], s);
    tile_xg(p0[1], p1[1], p2[1], p3[1], t);
#endif
}

// Groups j and j + 1 (j even) of each run against x elements e.x..e.x+7 and e.y..e.y+7
// of every column.
fn share_pair(j: u32, e: vec2<u32>) {
    let s = e.x / 4u;
    let t = e.y / 4u;
    share_pair1(j, 0u, xs_at(s), xs_at(t));
    share_pair1(j, 1u, xs_at(s + 1u), xs_at(t + 1u));
}
#else
#ifdef LAZY
// One group of the tile's rows against the columns' x words v, decoded where it is used
// (the decoder's lazy_dec) from the rows' words: rows 0..3's in q, with BR8 rows 4..7's
// in h.
fn tile_words(q: vec4<u32>, h: vec4<u32>, v: Xs) {
#ifdef BR8
    tile_xg8(lazy_dec(l0, q.x), lazy_dec(l1, q.y), lazy_dec(l2, q.z), lazy_dec(l3, q.w),
        lazy_dec(l4, h.x), lazy_dec(l5, h.y), lazy_dec(l6, h.z), lazy_dec(l7, h.w), v);
#else
    tile_xg(lazy_dec(l0, q.x), lazy_dec(l1, q.y), lazy_dec(l2, q.z), lazy_dec(l3, q.w), v);
#endif
}

#ifdef LAZY_W4
// Groups g + j .. g + j + 3 (j a multiple of 4) against x elements e..e+15 of every
// column, each row's four words in one load (the decoder's lazy_words4; built without
// BR8, which needs 16 columns).
fn share_run4(g: u32, j: u32, e: u32) {
    let s = e / 4u;
    let q0 = lazy_words4(l0, j);
    let q1 = lazy_words4(l1, j);
    let q2 = lazy_words4(l2, j);
    let q3 = lazy_words4(l3, j);
    let h = vec4<u32>(0u);
    tile_words(vec4<u32>(q0.x, q1.x, q2.x, q3.x), h, xs_at(s));
    tile_words(vec4<u32>(q0.y, q1.y, q2.y, q3.y), h, xs_at(s + 1u));
    tile_words(vec4<u32>(q0.z, q1.z, q2.z, q3.z), h, xs_at(s + 2u));
    tile_words(vec4<u32>(q0.w, q1.w, q2.w, q3.w), h, xs_at(s + 3u));
}
#else
// Groups g + j and g + j + 1 (j even) against x elements e..e+7 of every column, each
// row's two words in one load (the decoder's lazy_words2).
fn share_run(g: u32, j: u32, e: u32) {
    let s = e / 4u;
    let q0 = lazy_words2(l0, j);
    let q1 = lazy_words2(l1, j);
    let q2 = lazy_words2(l2, j);
    let q3 = lazy_words2(l3, j);
#ifdef BR8
    let q4 = lazy_words2(l4, j);
    let q5 = lazy_words2(l5, j);
    let q6 = lazy_words2(l6, j);
    let q7 = lazy_words2(l7, j);
    let hx = vec4<u32>(q4.x, q5.x, q6.x, q7.x);
    let hy = vec4<u32>(q4.y, q5.y, q6.y, q7.y);
#else
    let hx = vec4<u32>(0u);
    let hy = hx;
#endif
    tile_words(vec4<u32>(q0.x, q1.x, q2.x, q3.x), hx, xs_at(s));
    tile_words(vec4<u32>(q0.y, q1.y, q2.y, q3.y), hy, xs_at(s + 1u));
}
#endif
#else
// Group g + j + i of the tile's rows, through the type's group decoder, against the
// columns' x words v.
fn share_group(g: u32, j: u32, i: u32, v: Xs) {
    let h = g + j + i;
#ifdef BR8
    tile_xg8(dq4_row(b0, h), dq4_row(b1, h), dq4_row(b2, h), dq4_row(b3, h), dq4_row(b4, h),
        dq4_row(b5, h), dq4_row(b6, h), dq4_row(b7, h), v);
#else
    tile_xg(dq4_row(b0, h), dq4_row(b1, h), dq4_row(b2, h), dq4_row(b3, h), v);
#endif
}

// Groups g + j and g + j + 1 (j even) against x elements e..e+7 of every column.
fn share_run(g: u32, j: u32, e: u32) {
    let s = e / 4u;
    share_group(g, j, 0u, xs_at(s));
    share_group(g, j, 1u, xs_at(s + 1u));
}
#endif
#endif
#endif
#endif

// The sum over the row's lanes of one accumulator, stored by lane 0 if its row and
// column t are in the step.
fn store1(v: f32, row: u32, t: u32, ids: Ids, lane: u32, n: u32) {
    let total = row_sum(v, ids, lane);
    if (lane == 0u && row < p.rows && t < n) {
        let yi = p.y_offset + t * p.y_stride + p.row_offset + row;
#ifdef GATED
        y[yi] = gated(y[yi], total);
#else
        y[yi] = total;
#endif
    }
}

#ifdef PAIR
// act(gate) * up of one output row (each summed over the row's lanes), stored by lane 0
// if the row and column t are in the step.
fn store_pair(g: f32, u: f32, row: u32, t: u32, ids: Ids, lane: u32, n: u32) {
    let gt = row_sum(g, ids, lane);
    let ut = row_sum(u, ids, lane);
    if (lane == 0u && row < p.rows && t < n) {
        y[p.y_offset + t * p.y_stride + p.row_offset + row] = gated(gt, ut);
    }
}
#endif

// Column c of an accumulator block (column t of the step), the tile's rows from first
// (PAIR: rows 0 and 1 gate, 2 and 3 their up).
fn store4(t: Acc, c: u32, first: u32, col: u32, ids: Ids, lane: u32, n: u32) {
#ifdef PAIR
    store_pair(t.r0[c], t.r2[c], first, col, ids, lane, n);
    store_pair(t.r1[c], t.r3[c], first + 1u, col, ids, lane, n);
#else
    store1(t.r0[c], first, col, ids, lane, n);
    store1(t.r1[c], first + 1u, col, ids, lane, n);
    store1(t.r2[c], first + 2u, col, ids, lane, n);
    store1(t.r3[c], first + 3u, col, ids, lane, n);
#endif
}

#ifdef CLAIM
// Work claimed at run time (lib/claim.wgsl), in the x-sharing form through a window
// (the CPU class's): an item is a subgroup's rows of one column block; p.blocks holds
// the dispatch's column blocks.
#include "lib/claim.wgsl"

// The tile's accumulators back to zero for the next item.
fn zero_tile() {
    cols0 = Acc();
#ifdef WIDE
    cols4 = Acc();
#endif
#ifdef WIDE16
    cols8 = Acc();
    cols12 = Acc();
#endif
#ifdef BR8
    cols0h = Acc();
#ifdef WIDE
    cols4h = Acc();
#endif
#ifdef WIDE16
    cols8h = Acc();
    cols12h = Acc();
#endif
#endif
}
#endif

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
#ifdef CLAIM
    let per = ids.sg_size * OUT_ROWS;
    let row_items = (p.rows + per - 1u) / per;
    let items = row_items * p.blocks;
    loop {
        let item = claim_next(ids);
        if (item >= items) {
            break;
        }
        zero_tile();
        tile_item(((item % row_items) * ids.sg_size + ids.lane) * OUT_ROWS, item / row_items, ids);
    }
    claim_done(ids, gs);
#else
    tile_item(((gs.wid.x + gs.wid.y * gs.nwg.x) * ROWS + ids.lid / LANES) * OUT_ROWS, gs.wid.z, ids);
#endif
}

// The tile of OUT_ROWS rows per invocation from row `first` times column block `zb`.
fn tile_item(first: u32, zb: u32, ids: Ids) {
    let n = min(p.n_tokens, step.n_tokens);
    let t0 = p.t_first + zb * COLS;
    if (t0 >= n) {
        return;
    }
    let lane = ids.lid % LANES;
    // Past the last row, recompute it (never stored): the lanes stay in step for the sums.
    let top = p.rows - 1u;
    b0 = min(first, top) * p.row_words;
    b1 = min(first + 1u, top) * p.row_words;
#ifdef PAIR
    // The same rows of up, p.rows further.
    b2 = (min(first, top) + p.rows) * p.row_words;
    b3 = (min(first + 1u, top) + p.rows) * p.row_words;
#else
    b2 = min(first + 2u, top) * p.row_words;
    b3 = min(first + 3u, top) * p.row_words;
#endif
#ifdef BR8
    b4 = min(first + 4u, top) * p.row_words;
    b5 = min(first + 5u, top) * p.row_words;
    b6 = min(first + 6u, top) * p.row_words;
    b7 = min(first + 7u, top) * p.row_words;
#endif
    let groups = (p.k + 3u) / 4u;
    // Columns past the step's tokens repeat its last token (never stored). The
    // accumulators are named vec4s (row r, 4 columns each), so they stay in registers.
    let last = n - 1u;
    let c0 = min(t0, last);
    let c1 = min(t0 + 1u, last);
    let c2 = min(t0 + 2u, last);
    let c3 = min(t0 + 3u, last);
#ifdef WIDE
    let c4 = min(t0 + 4u, last);
    let c5 = min(t0 + 5u, last);
    let c6 = min(t0 + 6u, last);
    let c7 = min(t0 + 7u, last);
#endif
#ifdef XSHARE
    // Lane c of the subgroup loads column c's x (lanes past COLS repeat the last).
    // x_offset is the x of token t_first (a per-block uniform window starts near it).
    let xc = min(t0 + min(ids.lane % 8u, COLS - 1u), last);
    xcol = (p.x_offset + (xc - p.t_first) * p.x_stride) / 4u;
#ifdef WIDE16
    xcol2 = (p.x_offset + (min(t0 + 8u + ids.lane % 8u, last) - p.t_first) * p.x_stride) / 4u;
#endif
#ifdef LAZY_QUAD
    // Rows are whole blocks: groups is a multiple of LAZY_GROUPS (32).
    for (var g = 0u; g < groups; g += LAZY_GROUPS) {
        lazy_scales(g);
        for (var j = 0u; j < 8u; j++) {
            share_quad(j, 4u * (g + j));
        }
    }
#else
#ifdef LAZY_PAIR
    // Rows are whole blocks: groups is a multiple of LAZY_GROUPS.
    for (var g = 0u; g < groups; g += LAZY_GROUPS) {
        let e = lazy_runs(g);
        lazy_scales(g);
        for (var j = 0u; j < LAZY_GROUPS / 2u; j += 2u) {
            share_pair(j, e + 4u * j);
        }
    }
#else
    // Block rows hold whole blocks of at least 32 elements, so groups is a multiple of 8.
    for (var g = 0u; g < groups; g += 8u) {
#ifdef LAZY
        lazy_scales(g);
#endif
#ifdef LAZY_W4
        for (var j = 0u; j < 8u; j += 4u) {
            share_run4(g, j, 4u * (g + j));
        }
#else
        for (var j = 0u; j < 8u; j += 2u) {
            share_run(g, j, 4u * (g + j));
        }
#endif
    }
#endif
#endif
#else
    for (var g = lane; g < groups; g += LANES) {
#ifdef WIDE
        tile_group(g, load_x4(c0, g), load_x4(c1, g), load_x4(c2, g), load_x4(c3, g),
            load_x4(c4, g), load_x4(c5, g), load_x4(c6, g), load_x4(c7, g));
#else
        let z = vec4<f32>(0.0);
        tile_group(g, load_x4(c0, g), load_x4(c1, g), load_x4(c2, g), load_x4(c3, g), z, z, z, z);
#endif
    }
#endif
    // The tile's rows by constant index (an array of them indexed by a loop variable put
    // the accumulators in memory: on a CPU rasterizer, a per-lane gather each), its
    // columns by a loop variable (a select among a vec4's four).
    for (var c = 0u; c < 4u; c++) {
        store4(cols0, c, first, t0 + c, ids, lane, n);
#ifdef WIDE
        store4(cols4, c, first, t0 + 4u + c, ids, lane, n);
#endif
#ifdef WIDE16
        store4(cols8, c, first, t0 + 8u + c, ids, lane, n);
        store4(cols12, c, first, t0 + 12u + c, ids, lane, n);
#endif
#ifdef BR8
        store4(cols0h, c, first + 4u, t0 + c, ids, lane, n);
#ifdef WIDE
        store4(cols4h, c, first + 4u, t0 + 4u + c, ids, lane, n);
#endif
#ifdef WIDE16
        store4(cols8h, c, first + 4u, t0 + 8u + c, ids, lane, n);
        store4(cols12h, c, first + 4u, t0 + 12u + c, ids, lane, n);
#endif
#endif
    }
}
