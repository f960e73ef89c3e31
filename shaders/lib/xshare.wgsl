// The batched matvec's x-sharing form (LAZY_FORM): the invocations of a subgroup own
// different rows and read the same x, so lane c of the subgroup loads column c's x (a
// run of eight elements as two vec4 words) and the others take it from that lane where
// they use it (a register permute: c is a constant at every call once inlined): one
// load per lane for a run of eight elements of eight columns. A CPU rasterizer runs each
// invocation as a SIMD lane, where every load of x is a per-lane gather.
// (One element of every column per lane, as an earlier form loaded, took four times the
// gathers' setup: on lavapipe the Q8_0 step ran 1.07x slower.)

// Column c's vec4 v (this lane's if c is its own).
fn xg(v: vec4<f32>, c: u32) -> vec4<f32> {
    return subgroupShuffle(v, c);
}
