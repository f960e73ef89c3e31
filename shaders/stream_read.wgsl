// Streaming read for the bandwidth probe: every invocation walks the buffer with a
// grid-sized stride (RUNS: reads a contiguous run of it), XOR-folding vec4 words. The
// fold is written only when it equals a value the data never produces, so the loads
// cannot be optimized away and the kernel writes (almost) nothing: its time is the read
// bandwidth.
#include "lib/common.wgsl"

struct Params {
    n_vec4: u32,
    sentinel: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let threads = gs.nwg.x * gs.nwg.y * WG;
    let gid = wg_index(gs) * WG + ids.lid;
    var acc = vec4<u32>(0u);
#ifdef RUNS
    // One contiguous run per invocation, as a matvec's row per lane: a CPU rasterizer
    // (each invocation a SIMD lane) streams these, where the grid stride below puts each
    // invocation's next word megabytes away.
    let per = (p.n_vec4 + threads - 1u) / threads;
    let end = min(gid * per + per, p.n_vec4);
    for (var i = gid * per; i < end; i++) {
        acc ^= x[i];
    }
#else
    for (var i = gid; i < p.n_vec4; i += threads) {
        acc ^= x[i];
    }
#endif
    let f = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if (f == p.sentinel) {
        out[0] = gid;
    }
}
