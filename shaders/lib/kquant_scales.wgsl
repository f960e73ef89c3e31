// The 12-byte scale/min packing shared by Q4_K and Q5_K: eight 6-bit scales and eight
// 6-bit mins. Returns (scale, min) of sub-block j; `s` is the first word of the 12 bytes.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(wbyte(s, j) & 63u), f32(wbyte(s, j + 4u) & 63u));
    }
    let hi = wbyte(s, j + 4u);
    let sc = (hi & 0xFu) | ((wbyte(s, j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((wbyte(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}
