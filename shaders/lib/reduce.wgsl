// Workgroup sums. With subgroups each subgroup reduces in registers and one lane per
// subgroup leaves its partial in shared memory; without them, a tree in shared memory.
// The subgroup path assumes subgroups are contiguous runs of local_invocation_index,
// as on every Vulkan, Metal and D3D12 implementation; the kernel tests check it.
#include "lib/common.wgsl"

var<workgroup> red4: array<vec4<f32>, WG>;

// Sum of v over the workgroup; the result is valid in invocation 0 only.
// Must be called in uniform control flow.
fn wg_sum4(v: vec4<f32>, ids: Ids) -> vec4<f32> {
#ifdef SUBGROUPS
    let s = subgroupAdd(v);
    if (ids.lane == 0u) {
        red4[ids.lid / ids.sg_size] = s;
    }
    workgroupBarrier();
    var t = vec4<f32>(0.0);
    if (ids.lid == 0u) {
        let n = (WG + ids.sg_size - 1u) / ids.sg_size;
        for (var i = 0u; i < n; i++) {
            t += red4[i];
        }
    }
    return t;
#else
    red4[ids.lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (ids.lid < s) {
            red4[ids.lid] += red4[ids.lid + s];
        }
        workgroupBarrier();
    }
    return red4[0];
#endif
}
