// Groups a step's expert choices by expert for the prefill form of the expert
// projections: from sel[t * n_used + j], the slots (t * n_used + j) of each expert e in
// order[offsets[e] .. offsets[e + 1]], slots in increasing order. A counting sort run by
// one invocation (a step holds at most a few thousand slots); the second half of
// `offsets` is its scratch.
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct GroupParams {
    n_expert: u32,
    n_used: u32,
    max_tokens: u32,
    _pad: u32,
}

@group(0) @binding(1) var<storage, read> sel: array<u32>;
@group(0) @binding(2) var<storage, read_write> order: array<u32>;
@group(0) @binding(3) var<uniform> p: GroupParams;
@group(0) @binding(4) var<storage, read_write> offsets: array<u32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    if (ids.lid != 0u || wg_index(gs) != 0u) {
        return;
    }
    let total = min(p.max_tokens, step.n_tokens) * p.n_used;
    let cursor = p.n_expert + 1u;
    for (var e = 0u; e <= p.n_expert; e++) {
        offsets[e] = 0u;
    }
    for (var i = 0u; i < total; i++) {
        let e = min(sel[i], p.n_expert - 1u);
        offsets[e + 1u] += 1u;
    }
    for (var e = 0u; e < p.n_expert; e++) {
        offsets[e + 1u] += offsets[e];
        offsets[cursor + e] = offsets[e];
    }
    for (var i = 0u; i < total; i++) {
        let e = min(sel[i], p.n_expert - 1u);
        order[offsets[cursor + e]] = i;
        offsets[cursor + e] += 1u;
    }
}
