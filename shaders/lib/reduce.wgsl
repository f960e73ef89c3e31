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

var<workgroup> red1: array<f32, WG>;

// Sum of v over the workgroup, returned to every invocation (row ops scale every element
// by it). Must be called in uniform control flow; the closing barrier lets the caller
// reduce again right away without racing on red1.
fn wg_sum(v: f32, ids: Ids) -> f32 {
#ifdef SUBGROUPS
    let s = subgroupAdd(v);
    if (ids.lane == 0u) {
        red1[ids.lid / ids.sg_size] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < (WG + ids.sg_size - 1u) / ids.sg_size; i++) {
        t += red1[i];
    }
#else
    red1[ids.lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (ids.lid < s) {
            red1[ids.lid] += red1[ids.lid + s];
        }
        workgroupBarrier();
    }
    let t = red1[0];
#endif
    workgroupBarrier();
    return t;
}

// Maximum of v over the workgroup, returned to every invocation; as wg_sum.
fn wg_max(v: f32, ids: Ids) -> f32 {
#ifdef SUBGROUPS
    let s = subgroupMax(v);
    if (ids.lane == 0u) {
        red1[ids.lid / ids.sg_size] = s;
    }
    workgroupBarrier();
    var t = red1[0];
    for (var i = 1u; i < (WG + ids.sg_size - 1u) / ids.sg_size; i++) {
        t = max(t, red1[i]);
    }
#else
    red1[ids.lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (ids.lid < s) {
            red1[ids.lid] = max(red1[ids.lid], red1[ids.lid + s]);
        }
        workgroupBarrier();
    }
    let t = red1[0];
#endif
    workgroupBarrier();
    return t;
}
