// The 12-byte scale/min packing shared by Q4_K and Q5_K: eight 6-bit scales and eight
// 6-bit mins. Returns (scale, min) of sub-block j from the 12 bytes as three words.
fn scale_min_k4(sc: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(scale_byte(sc, j) & 63u), f32(scale_byte(sc, j + 4u) & 63u));
    }
    let hi = scale_byte(sc, j + 4u);
    let s = (hi & 0xFu) | ((scale_byte(sc, j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((scale_byte(sc, j) >> 6u) << 4u);
    return vec2<f32>(f32(s), f32(m));
}

// From a Q4_K or Q5_K block's header word (f16 d and dmin, then the 12 scale bytes):
// d * scale of sub-blocks 2c and 2c + 1, then dmin * min of both.
fn pair_dm_k4(head: vec4<u32>, c: u32) -> vec4<f32> {
    let dm = unpack2x16float(head.x);
    let s0 = scale_min_k4(head.yzw, 2u * c);
    let s1 = scale_min_k4(head.yzw, 2u * c + 1u);
    return vec4<f32>(dm.x * vec2<f32>(s0.x, s1.x), dm.y * vec2<f32>(s0.y, s1.y));
}

// Byte k of the 12.
fn scale_byte(sc: vec3<u32>, k: u32) -> u32 {
    return (sc[k >> 2u] >> (8u * (k & 3u))) & 0xFFu;
}

#ifdef LAZY
// The batched matvec's lazy step over half h of the Q4_K or Q5_K block at word b
// (sub-blocks 4h..4h+3, lib/lazy.wgsl's LAZY_QUAD): d * scale (d) and dmin * min (m)
// of the four, the header read once.
fn lazy_head_k4(b: u32, h: u32) -> Lazy {
    let head = vec4<u32>(word(b), word(b + 1u), word(b + 2u), word(b + 3u));
    let d0 = pair_dm_k4(head, 2u * h);
    let d1 = pair_dm_k4(head, 2u * h + 1u);
    var r: Lazy;
    r.d = vec4<f32>(d0.xy, d1.xy);
    r.m = vec4<f32>(d0.zw, d1.zw);
    return r;
}
#endif
