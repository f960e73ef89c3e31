// Expert projections of a mixture-of-experts FFN (ggml's MUL_MAT_ID): for each token t of
// the step and each of its n_used selected experts j (expert e = sel[t * n_used + j]),
//   y[t, j, r] = sum_k W[e * expert_rows + r, k] * x[t, j, k]  (+ bias[e * expert_rows + r])
// for r < expert_rows, so a step reads only the selected experts' rows. The tensor holds
// every expert's rows one after another; a dispatch covers one shard of them (global rows
// [row_offset, row_offset + rows)) and computes the outputs whose rows it holds. x is the
// token's row (x_slot_stride 0: every expert reads the FFN input) or one row per slot (the
// down projection reads each expert's activation). LANES consecutive invocations share an
// output row: each decodes its stride of the row's 4-element groups (the dtype's dq4_row);
// the lanes are summed with subgroup shuffles or in shared memory.
// Workgroup (row block, slot j, token t); with GROUPED (prefill), (row block, expert).
#ifndef FLOAT_WEIGHTS
#define X_VEC4
#endif
#include "lib/common.wgsl"
#include "lib/row_sum.wgsl"
#include "lib/step.wgsl"

struct IdParams {
    rows: u32,          // rows in this shard
    k: u32,             // elements per row
    row_words: u32,     // words per row in GPU layout
    row_offset: u32,    // first row of this shard in the whole tensor
    n_tokens: u32,      // most tokens per step (the size it was built for)
    x_offset: u32,
    x_stride: u32,      // elements between tokens in x
    x_slot_stride: u32, // elements between a token's slots in x (0: one row per token)
    y_offset: u32,
    y_stride: u32,      // elements between tokens in y (n_used * expert_rows or more)
    expert_rows: u32,   // output rows of one expert
    n_used: u32,        // experts per token
}

#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: IdParams;
@group(0) @binding(4) var<storage, read> sel: array<u32>;
#ifdef BIAS
@group(0) @binding(5) var<storage, read> bias: array<f32>;
#endif

const ROWS: u32 = WG / LANES;

// Elements 4g..4g+3 of x's row starting at element `o`; past k it reads 0.
fn load_x4(o: u32, g: u32) -> vec4<f32> {
#ifdef X_VEC4
    return x4[o / 4u + g];
#else
    let k0 = 4u * g;
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (k0 + c < p.k) {
            v[c] = x[o + k0 + c];
        }
    }
    return v;
#endif
}

#ifdef GROUPED
// Prefill: workgroup (row block, expert e) takes the step's slots that chose e, as
// moe_group.wgsl listed them (order[offsets[e] .. offsets[e + 1]]), and multiplies each
// decoded weight group into SLOTS of them at once, so e's rows are read once per SLOTS
// tokens rather than per token.
const SLOTS: u32 = 8u;
@group(0) @binding(6) var<storage, read> order: array<u32>;
@group(0) @binding(7) var<storage, read> offsets: array<u32>;
var<workgroup> range: vec2<u32>;

// Where slot `h` (t * n_used + j) reads x.
fn x_of(h: u32) -> u32 {
    return p.x_offset + (h / p.n_used) * p.x_stride + (h % p.n_used) * p.x_slot_stride;
}

// Writes slot h's output row r of expert e.
fn store(h: u32, v: f32, e: u32, r: u32) {
    var out = v;
#ifdef BIAS
    out += bias[e * p.expert_rows + r];
#endif
    y[p.y_offset + (h / p.n_used) * p.y_stride + (h % p.n_used) * p.expert_rows + r] = out;
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let e = gs.wid.y;
    let lane = ids.lid % LANES;
    let r = gs.wid.x * ROWS + ids.lid / LANES;
    let g = e * p.expert_rows + min(r, p.expert_rows - 1u);
    let mine = r < p.expert_rows && g >= p.row_offset && g - p.row_offset < p.rows;
    let local = min(g - min(g, p.row_offset), p.rows - 1u);
    let base = local * p.row_words;
    let groups = (p.k + 3u) / 4u;
    if (ids.lid == 0u) {
        range = vec2<u32>(offsets[e], offsets[e + 1u]);
    }
    // The same for the whole workgroup, so the loop below stays in uniform control flow.
    let span = workgroupUniformLoad(&range);
    let first = span.x;
    let cnt = span.y - min(span.x, span.y);
    {
        for (var c0 = 0u; c0 < cnt; c0 += SLOTS) {
            // Slots past cnt repeat the last one (never stored). Named, not indexed: an
            // indexed array is memory on some compilers.
            let last = first + cnt - 1u;
            let h0 = order[min(first + c0, last)];
            let h1 = order[min(first + c0 + 1u, last)];
            let h2 = order[min(first + c0 + 2u, last)];
            let h3 = order[min(first + c0 + 3u, last)];
            let h4 = order[min(first + c0 + 4u, last)];
            let h5 = order[min(first + c0 + 5u, last)];
            let h6 = order[min(first + c0 + 6u, last)];
            let h7 = order[min(first + c0 + 7u, last)];
            let x0 = x_of(h0);
            let x1 = x_of(h1);
            let x2 = x_of(h2);
            let x3 = x_of(h3);
            let x4 = x_of(h4);
            let x5 = x_of(h5);
            let x6 = x_of(h6);
            let x7 = x_of(h7);
            var a = vec4<f32>(0.0);
            var b = vec4<f32>(0.0);
            if (mine) {
                for (var gi = lane; gi < groups; gi += LANES) {
                    let w = dq4_row(base, gi);
                    a += vec4<f32>(
                        dot(w, load_x4(x0, gi)),
                        dot(w, load_x4(x1, gi)),
                        dot(w, load_x4(x2, gi)),
                        dot(w, load_x4(x3, gi)),
                    );
                    b += vec4<f32>(
                        dot(w, load_x4(x4, gi)),
                        dot(w, load_x4(x5, gi)),
                        dot(w, load_x4(x6, gi)),
                        dot(w, load_x4(x7, gi)),
                    );
                }
            }
            let s0 = row_sum(a.x, ids, lane);
            let s1 = row_sum(a.y, ids, lane);
            let s2 = row_sum(a.z, ids, lane);
            let s3 = row_sum(a.w, ids, lane);
            let s4 = row_sum(b.x, ids, lane);
            let s5 = row_sum(b.y, ids, lane);
            let s6 = row_sum(b.z, ids, lane);
            let s7 = row_sum(b.w, ids, lane);
            if (lane == 0u && mine) {
                let n = cnt - c0;
                store(h0, s0, e, r);
                if (n > 1u) { store(h1, s1, e, r); }
                if (n > 2u) { store(h2, s2, e, r); }
                if (n > 3u) { store(h3, s3, e, r); }
                if (n > 4u) { store(h4, s4, e, r); }
                if (n > 5u) { store(h5, s5, e, r); }
                if (n > 6u) { store(h6, s6, e, r); }
                if (n > 7u) { store(h7, s7, e, r); }
            }
        }
    }
}
#else
@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = gs.wid.z;
    let j = gs.wid.y;
    if (t >= min(p.n_tokens, step.n_tokens) || j >= p.n_used) {
        return;
    }
    let lane = ids.lid % LANES;
    let r = gs.wid.x * ROWS + ids.lid / LANES;
    let e = sel[t * p.n_used + j];
    // The global row, and whether this shard holds it (rows past the expert's end
    // recompute its last row and store nothing: the lanes stay in step for the sums).
    let g = e * p.expert_rows + min(r, p.expert_rows - 1u);
    let mine = r < p.expert_rows && g >= p.row_offset && g - p.row_offset < p.rows;
    let local = min(g - min(g, p.row_offset), p.rows - 1u);
    let base = local * p.row_words;
    let xo = p.x_offset + t * p.x_stride + j * p.x_slot_stride;
    var acc = 0.0;
    if (mine) {
        for (var gi = lane; gi < (p.k + 3u) / 4u; gi += LANES) {
            acc += dot(dq4_row(base, gi), load_x4(xo, gi));
        }
    }
    let total = row_sum(acc, ids, lane);
    if (lane == 0u && mine) {
        var v = total;
#ifdef BIAS
        v += bias[e * p.expert_rows + r];
#endif
        y[p.y_offset + t * p.y_stride + j * p.expert_rows + r] = v;
    }
}
#endif
