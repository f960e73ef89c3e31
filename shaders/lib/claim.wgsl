// CLAIM (the CPU class's matvecs with subgroups, shaders/matvec.wgsl and
// matvec_batch.wgsl): a CPU rasterizer hands each of its threads a fixed share of a
// dispatch's workgroups (Mesa 25.0's llvmpipe: the first half to one thread and the
// second to the other, on two cores), so a dispatch lasts as long as its slowest
// thread's share, and a VM's cores run at different speeds from moment to moment. The
// host launches two workgroups per thread (`kernels::claim_launches`) and each subgroup
// takes the next item of work from claims[0] until none are left: a thread that runs
// faster does more. Each subgroup counts its end in claims[1]; the last one resets both,
// so the next dispatch (dispatches run in order) starts from 0 again. No workgroup
// barrier is needed (on lavapipe a barrier turns the shader into coroutines, and a
// first form that claimed per workgroup through one cost more CPU time than it saved).
@group(0) @binding(12) var<storage, read_write> claims: array<atomic<u32>, 4>;

// Subgroups in a workgroup.
fn subgroups_per_wg(ids: Ids) -> u32 {
    return (WG + ids.sg_size - 1u) / ids.sg_size;
}

// The subgroup's next item, claimed by its lane 0 (the same in every lane).
fn claim_next(ids: Ids) -> u32 {
    var c = 0u;
    if (ids.lane == 0u) {
        c = atomicAdd(&claims[0], 1u);
    }
    return subgroupBroadcast(c, 0u);
}

// The subgroup is done (it claimed an item past the last): the dispatch's last
// subgroup resets the counters.
fn claim_done(ids: Ids, gs: Groups) {
    if (ids.lane == 0u) {
        let subgroups = gs.nwg.x * gs.nwg.y * gs.nwg.z * subgroups_per_wg(ids);
        if (atomicAdd(&claims[1], 1u) == subgroups - 1u) {
            atomicStore(&claims[0], 0u);
            atomicStore(&claims[1], 0u);
        }
    }
}
