// Helpers shared by every kernel: invocation ids, f16 and byte unpacking.
// Never compiled alone; the registry prepends `const WG: u32` (workgroup size).

// The builtins every kernel takes, as two entry-point parameters: the invocation's own
// (`ids`) and its workgroup's (`gs`). They are kept apart because WGSL's uniformity
// analysis treats a struct as non-uniform when any member is: a workgroup id read from
// the same struct as local_invocation_index makes every branch on it non-uniform, and
// browsers (Tint) then reject the barriers that follow such a branch.
struct Ids {
    @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
#endif
}

struct Groups {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

// Workgroups past 65535 in x continue in y; this is the linear workgroup index.
fn wg_index(gs: Groups) -> u32 {
    return gs.wid.x + gs.wid.y * gs.nwg.x;
}

fn f16_lo(v: u32) -> f32 {
    return unpack2x16float(v).x;
}

fn f16_hi(v: u32) -> f32 {
    return unpack2x16float(v).y;
}

// The four bytes of a word, lowest first.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu);
}

// The four bytes of a word as signed 8-bit values.
fn sbytes4(v: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

// A byte as a signed 8-bit value.
fn sbyte(b: u32) -> f32 {
    return f32(bitcast<i32>(b << 24u) >> 24u);
}

// A 16-entry table of signed 8-bit values (entry i in byte i % 4 of word i / 4 of t)
// looked up by four 4-bit indices q: two selects and a shift per element, all in
// registers. (A private array indexed by q is a per-invocation copy and a per-lane
// load on a CPU rasterizer, local memory on some GPUs: on lavapipe IQ4_NL's prefill
// ran at 26.8 GFLOP/s through one, 37.6 through this.)
fn lut16_i8(t: vec4<u32>, q: vec4<u32>) -> vec4<f32> {
    let hi = q >= vec4<u32>(8u);
    let odd = (q & vec4<u32>(4u)) != vec4<u32>(0u);
    let w = select(select(vec4<u32>(t.x), vec4<u32>(t.y), odd),
        select(vec4<u32>(t.z), vec4<u32>(t.w), odd), hi);
    let s = bitcast<vec4<i32>>(w << (vec4<u32>(24u) - 8u * (q & vec4<u32>(3u))));
    return vec4<f32>(s >> vec4<u32>(24u));
}
