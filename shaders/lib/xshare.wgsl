// The batched matvec's x-sharing form (LAZY_FORM): the invocations of a subgroup
// own different rows and read the same x, so lane j of the subgroup loads element e + j
// of a run of 8 and the others take it by subgroupBroadcast: one load per eight
// elements instead of one per element. A CPU rasterizer runs each invocation as a SIMD
// lane, where every load of x is a per-lane gather and a broadcast a register move. x
// comes one element per lane (not a vec4 of a group per lane) so that few registers stay
// live: on lavapipe the vec4 form spilled.

// Elements 4j..4j+3 of the run of 8 whose element sl lane sl holds (j = 0 or 1).
// (subgroupBroadcast takes constant lanes: j is a constant at every call.)
fn bx(s: f32, j: u32) -> vec4<f32> {
    if (j == 0u) {
        return vec4<f32>(subgroupBroadcast(s, 0u), subgroupBroadcast(s, 1u),
            subgroupBroadcast(s, 2u), subgroupBroadcast(s, 3u));
    }
    return vec4<f32>(subgroupBroadcast(s, 4u), subgroupBroadcast(s, 5u),
        subgroupBroadcast(s, 6u), subgroupBroadcast(s, 7u));
}
