// The k largest of x[x_offset .. x_offset + width] with their indices, sorted descending,
// ties to the lower index, NaN never selected. Two dispatches: each workgroup of the
// first bitonic-sorts a chunk of CHUNK elements in shared memory and writes its best k
// to scratch; the FINAL variant merges the sorted chunk lists in one workgroup, k rounds
// of an argmax over the chunk heads. out = k ids, then k values as f32 bits; a slot with
// no candidate (fewer than k non-NaN values) gets id 0xFFFFFFFF.
#include "lib/common.wgsl"

struct Params {
    width: u32,
    x_offset: u32,
    k: u32,
    n_chunks: u32,
}

struct Best {
    v: f32,
    i: u32,  // NONE: no candidate
}

const NONE: u32 = 0xFFFFFFFFu;
const CHUNK: u32 = 1024u;      // elements per first-pass workgroup (4 per invocation)
const MAX_CHUNKS: u32 = 1024u; // host limit: width <= CHUNK * MAX_CHUNKS

@group(0) @binding(2) var<storage, read_write> scratch: array<Best>;  // n_chunks * k
#ifdef FINAL
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(4) var<uniform> p: Params;

// Whether c ranks before b. NaN is tested on the bits (see argmax.wgsl).
fn beats(c: Best, b: Best) -> bool {
    let nan = (bitcast<u32>(c.v) & 0x7FFFFFFFu) > 0x7F800000u;
    return c.i != NONE && !nan && (b.i == NONE || c.v > b.v || (c.v == b.v && c.i < b.i));
}

#ifdef FINAL
struct Cand {
    b: Best,
    chunk: u32,
}

var<workgroup> heads: array<u32, MAX_CHUNKS>;
var<workgroup> red: array<Cand, WG>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    for (var c = ids.lid; c < MAX_CHUNKS; c += WG) {
        heads[c] = 0u;
    }
    workgroupBarrier();
    for (var r = 0u; r < p.k; r++) {
        var best = Cand(Best(0.0, NONE), 0u);
        for (var c = ids.lid; c < min(p.n_chunks, MAX_CHUNKS); c += WG) {
            let h = heads[c];
            if (h < p.k) {
                let cand = scratch[c * p.k + h];
                if (beats(cand, best.b)) {
                    best = Cand(cand, c);
                }
            }
        }
        red[ids.lid] = best;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (ids.lid < s && beats(red[ids.lid + s].b, red[ids.lid].b)) {
                red[ids.lid] = red[ids.lid + s];
            }
            workgroupBarrier();
        }
        if (ids.lid == 0u) {
            let w = red[0];
            out[r] = w.b.i;
            out[p.k + r] = bitcast<u32>(w.b.v);
            if (w.b.i != NONE) {
                heads[w.chunk] += 1u;
            }
        }
        workgroupBarrier();
    }
}
#else
var<workgroup> s: array<Best, CHUNK>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs);
    // Groups past n_chunks (grid padding) sort sentinels and write nothing below.
    let start = min(g * CHUNK, p.width);
    for (var t = ids.lid; t < CHUNK; t += WG) {
        let k = start + t;
        var b = Best(0.0, NONE);
        if (k < p.width) {
            b = Best(x[p.x_offset + k], k);
            if (!beats(b, Best(0.0, NONE))) {
                b.i = NONE;  // NaN sorts last
            }
        }
        s[t] = b;
    }
    workgroupBarrier();
    for (var size = 2u; size <= CHUNK; size <<= 1u) {
        for (var j = size / 2u; j > 0u; j >>= 1u) {
            for (var q = ids.lid; q < CHUNK / 2u; q += WG) {
                let i = (q / j) * 2u * j + (q % j);
                let l = i + j;
                let a = s[i];
                let b = s[l];
                // Best first where (i & size) == 0, best last otherwise: bitonic merge.
                let first = (i & size) == 0u;
                if ((first && beats(b, a)) || (!first && beats(a, b))) {
                    s[i] = b;
                    s[l] = a;
                }
            }
            workgroupBarrier();
        }
    }
    if (g < p.n_chunks) {
        for (var t = ids.lid; t < p.k; t += WG) {
            scratch[g * p.k + t] = s[t];
        }
    }
}
#endif
