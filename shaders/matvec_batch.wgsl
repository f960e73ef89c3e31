// Matrix times the step's token columns, for a batched decode step that advances several
// sequences by one token each: Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for the
// tokens t0 <= t < t0 + COLS of this workgroup's column block (t < min(p.n_tokens,
// step.n_tokens)). LANES consecutive invocations share a row; each lane decodes its
// stride of the row's 4-element groups once (the dtype's dq4_row) and multiplies every
// decoded group into all COLS columns, so a step reads and decodes the weights once
// however many sequences it advances. The row's lanes are summed per column with
// subgroup shuffles or, without subgroups, in shared memory. WG and LANES come from the
// matvec geometry table; COLS (tokens per workgroup) from the host's pick per step.
// GATED: Y holds the FFN's gate projection, and the result u becomes y = act(y) * u.
// XSHARE (one lane per row, block types, subgroups of at least 8): the invocations of a
// subgroup own different rows and read the same x groups, so lane j of the subgroup
// loads group g + j of each column and the others take it by subgroupBroadcast: one
// load per column per eight groups instead of one per group. A CPU rasterizer runs each
// invocation as a SIMD lane, where every load of x is a per-lane gather and a broadcast
// a register move.
#ifndef FLOAT_WEIGHTS
#define X_VEC4
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
const BR: u32 = 4u;

// w's dot products with four columns' x.
fn dots4(w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(w, x0), dot(w, x1), dot(w, x2), dot(w, x3));
}

// The register tile: BR rows (their first words b0..b3) times four columns each in a0..a3
// and, with WIDE, four more in e0..e3.
var<private> b0: u32;
var<private> b1: u32;
var<private> b2: u32;
var<private> b3: u32;
var<private> a0: vec4<f32>;
var<private> a1: vec4<f32>;
var<private> a2: vec4<f32>;
var<private> a3: vec4<f32>;
#ifdef WIDE
var<private> e0: vec4<f32>;
var<private> e1: vec4<f32>;
var<private> e2: vec4<f32>;
var<private> e3: vec4<f32>;
#endif

// One 4-element group of the tile's rows (w0..w3), decoded once, into every column:
// x0..x3 (and x4..x7 with WIDE) are the columns' x at that group.
fn tile_add(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, x0: vec4<f32>,
        x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>,
        x6: vec4<f32>, x7: vec4<f32>) {
    a0 += dots4(w0, x0, x1, x2, x3);
    a1 += dots4(w1, x0, x1, x2, x3);
    a2 += dots4(w2, x0, x1, x2, x3);
    a3 += dots4(w3, x0, x1, x2, x3);
#ifdef WIDE
    e0 += dots4(w0, x4, x5, x6, x7);
    e1 += dots4(w1, x4, x5, x6, x7);
    e2 += dots4(w2, x4, x5, x6, x7);
    e3 += dots4(w3, x4, x5, x6, x7);
#endif
}

// Group g of the tile's rows through the type's group decoder.
fn tile_group(g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
        x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) {
    tile_add(dq4_row(b0, g), dq4_row(b1, g), dq4_row(b2, g), dq4_row(b3, g), x0, x1, x2, x3,
        x4, x5, x6, x7);
}

#ifdef XSHARE
#ifdef RAW8
// The words of the eight groups the loop is at, per row of the tile (raw8).
var<private> r0: Raw8;
var<private> r1: Raw8;
var<private> r2: Raw8;
var<private> r3: Raw8;
#endif
#ifdef RAW16
// The words of the sixteen groups the loop is at, per row of the tile (raw16).
var<private> r0: Raw16;
var<private> r1: Raw16;
var<private> r2: Raw16;
var<private> r3: Raw16;

fn share16(j: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
        x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) {
    tile_add(dq16(r0, j), dq16(r1, j), dq16(r2, j), dq16(r3, j), x0, x1, x2, x3, x4, x5, x6, x7);
}
#endif

// Group g + j of the tile's rows (j < 8): from the words raw8 loaded for groups g..g+7
// when the type has the whole-block form, else through its group decoder.
fn share_group(g: u32, j: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
        x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) {
#ifdef RAW8
    tile_add(dq8(r0, j), dq8(r1, j), dq8(r2, j), dq8(r3, j), x0, x1, x2, x3, x4, x5, x6, x7);
#else
    tile_group(g + j, x0, x1, x2, x3, x4, x5, x6, x7);
#endif
}
#endif

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let n = min(p.n_tokens, step.n_tokens);
    let t0 = gs.wid.z * COLS;
    if (t0 >= n) {
        return;
    }
    let lane = ids.lid % LANES;
    let first = ((gs.wid.x + gs.wid.y * gs.nwg.x) * ROWS + ids.lid / LANES) * BR;
    // Past the last row, recompute it (never stored): the lanes stay in step for the sums.
    let top = p.rows - 1u;
    b0 = min(first, top) * p.row_words;
    b1 = min(first + 1u, top) * p.row_words;
    b2 = min(first + 2u, top) * p.row_words;
    b3 = min(first + 3u, top) * p.row_words;
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
#ifdef RAW16
    // K-quant rows are whole blocks of 256 elements: groups is a multiple of 16. Each pass
    // takes two runs of 8 groups (pair_groups) whose words raw16 loads once.
    let j = ids.lane % 8u;
    let z = vec4<f32>(0.0);
    for (var g = 0u; g < groups; g += 16u) {
        let gp = pair_groups(g);
#unroll COLS
        let s$i = load_x4(c$i, gp.x + j);
        let t$i = load_x4(c$i, gp.y + j);
#endunroll
#ifndef WIDE
        let s4 = z;
        let s5 = z;
        let s6 = z;
        let s7 = z;
        let t4 = z;
        let t5 = z;
        let t6 = z;
        let t7 = z;
#endif
        r0 = raw16(b0, g);
        r1 = raw16(b1, g);
        r2 = raw16(b2, g);
        r3 = raw16(b3, g);
#unroll 8
        share16($i, subgroupBroadcast(s0, $iu), subgroupBroadcast(s1, $iu), subgroupBroadcast(s2, $iu), subgroupBroadcast(s3, $iu), subgroupBroadcast(s4, $iu), subgroupBroadcast(s5, $iu), subgroupBroadcast(s6, $iu), subgroupBroadcast(s7, $iu));
#endunroll
#unroll 8
        share16(8 + $i, subgroupBroadcast(t0, $iu), subgroupBroadcast(t1, $iu), subgroupBroadcast(t2, $iu), subgroupBroadcast(t3, $iu), subgroupBroadcast(t4, $iu), subgroupBroadcast(t5, $iu), subgroupBroadcast(t6, $iu), subgroupBroadcast(t7, $iu));
#endunroll
    }
#else
#ifdef XSHARE
    // Block rows hold whole blocks of at least 32 elements, so groups is a multiple of 8.
    let j = ids.lane % 8u;
    for (var g = 0u; g < groups; g += 8u) {
#unroll COLS
        let s$i = load_x4(c$i, g + j);
#endunroll
#ifndef WIDE
        let s4 = vec4<f32>(0.0);
        let s5 = s4;
        let s6 = s4;
        let s7 = s4;
#endif
#ifdef RAW8
        r0 = raw8(b0, g);
        r1 = raw8(b1, g);
        r2 = raw8(b2, g);
        r3 = raw8(b3, g);
#endif
#unroll 8
        share_group(g, $iu, subgroupBroadcast(s0, $iu), subgroupBroadcast(s1, $iu), subgroupBroadcast(s2, $iu), subgroupBroadcast(s3, $iu), subgroupBroadcast(s4, $iu), subgroupBroadcast(s5, $iu), subgroupBroadcast(s6, $iu), subgroupBroadcast(s7, $iu));
#endunroll
    }
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
#endif
    let lo = array<vec4<f32>, 4>(a0, a1, a2, a3);
#ifdef WIDE
    let hi = array<vec4<f32>, 4>(e0, e1, e2, e3);
#endif
    for (var r = 0u; r < BR; r++) {
        for (var c = 0u; c < COLS; c++) {
#ifdef WIDE
            let v = select(lo[r][c & 3u], hi[r][c & 3u], c >= 4u);
#else
            let v = lo[r][c];
#endif
            let total = row_sum(v, ids, lane);
            let t = t0 + c;
            let row = first + r;
            if (lane == 0u && row < p.rows && t < n) {
                let yi = p.y_offset + t * p.y_stride + p.row_offset + row;
#ifdef GATED
                y[yi] = gated(y[yi], total);
#else
                y[yi] = total;
#endif
            }
        }
    }
}
