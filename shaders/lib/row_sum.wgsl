// The sum over the LANES consecutive invocations that share a row (the matvec kernels):
// subgroup shuffles, or a shared-memory tree without subgroups. Needs WG and LANES.
#include "lib/common.wgsl"

#ifndef SUBGROUPS
var<workgroup> lane_sums: array<f32, WG>;
#endif

// The sum of v over the LANES lanes of a row, valid in lane 0. Uniform control flow.
fn row_sum(v: f32, ids: Ids, lane: u32) -> f32 {
    var s = v;
#ifdef SUBGROUPS
    // The host uses this form only when LANES divides the smallest subgroup size.
    for (var m = LANES / 2u; m > 0u; m >>= 1u) {
        s += subgroupShuffleXor(s, m);
    }
#else
    lane_sums[ids.lid] = s;
    workgroupBarrier();
    for (var m = LANES / 2u; m > 0u; m >>= 1u) {
        if (lane < m) {
            lane_sums[ids.lid] += lane_sums[ids.lid + m];
        }
        workgroupBarrier();
    }
    s = lane_sums[ids.lid];
#endif
    return s;
}
