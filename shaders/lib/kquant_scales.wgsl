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

// Byte k of the 12.
fn scale_byte(sc: vec3<u32>, k: u32) -> u32 {
    return (sc[k >> 2u] >> (8u * (k & 3u))) & 0xFFu;
}
