// Index of the maximum of each row r (grid z) of x, x[x_offset + r * row_stride ..][..width],
// in two dispatches: each workgroup of the first reduces a chunk of its row to (value,
// index) in the row's partials; the FINAL variant reduces a row's partials with one
// workgroup and writes the index to out[out_index + r]. Ties go to the lowest index; NaN
// never wins; if nothing is comparable, u32::MAX is written.
#include "lib/common.wgsl"

struct Params {
    width: u32,
    x_offset: u32,
    chunk: u32,        // elements per first-pass workgroup
    n_partials: u32,   // first-pass workgroups
    out_index: u32,
    row_stride: u32,   // elements from one row of x to the next
    _pad0: u32,
    _pad1: u32,
}

struct Best {
    v: f32,
    i: u32,  // NONE: no candidate yet
}

const NONE: u32 = 0xFFFFFFFFu;

#ifdef FINAL
@group(0) @binding(2) var<storage, read> partials: array<Best>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
#else
#ifdef VEC4
// x as vec4 words (the host checks that the offset and width are multiples of 4): on a
// CPU rasterizer a load costs per instruction and per 32-bit component.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> partials: array<Best>;
#endif
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> red: array<Best, WG>;

// Whether c beats b. NaN is tested on the bits: implementations may assume floats are
// never NaN and fold comparisons with it.
fn beats(c: Best, b: Best) -> bool {
    let nan = (bitcast<u32>(c.v) & 0x7FFFFFFFu) > 0x7F800000u;
    return c.i != NONE && !nan && (b.i == NONE || c.v > b.v || (c.v == b.v && c.i < b.i));
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    var b = Best(0.0, NONE);
    let row = gs.wid.z;
    // This row's partials.
    let pr = row * p.n_partials;
#ifdef FINAL
    for (var k = ids.lid; k < p.n_partials; k += WG) {
        let c = partials[pr + k];
        if (beats(c, b)) {
            b = c;
        }
    }
#else
    let g = wg_index(gs);
    // Groups past n_partials (grid padding) find an empty range and write nothing below.
    let start = min(g * p.chunk, p.width);
    let end = min(start + p.chunk, p.width);
    let xo = p.x_offset + row * p.row_stride;
#ifdef VEC4
    for (var k = start + 4u * ids.lid; k < end; k += 4u * WG) {
        let v = x4[(xo + k) / 4u];
        for (var j = 0u; j < 4u; j++) {
            let c = Best(v[j], k + j);
            if (beats(c, b)) {
                b = c;
            }
        }
    }
#else
    for (var k = start + ids.lid; k < end; k += WG) {
        let c = Best(x[xo + k], k);
        if (beats(c, b)) {
            b = c;
        }
    }
#endif
#endif
    red[ids.lid] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (ids.lid < s && beats(red[ids.lid + s], red[ids.lid])) {
            red[ids.lid] = red[ids.lid + s];
        }
        workgroupBarrier();
    }
    if (ids.lid == 0u) {
#ifdef FINAL
        out[p.out_index + row] = red[0].i;
#else
        if (g < p.n_partials) {
            partials[pr + g] = red[0];
        }
#endif
    }
}
