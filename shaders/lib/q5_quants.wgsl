// The 5-bit quants of Q5_0 and Q5_1: nibbles as in Q4_0 plus a qh word whose bit j is
// the fifth bit of element j.

// Elements 4g..4g+3 (g in 0..7) of a block: `q` its quant word g & 3, `qh` its high bits.
fn q5_group(q: u32, qh: u32, g: u32) -> vec4<f32> {
    let lo = (q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu;
    let hb = (vec4<u32>(qh >> (4u * g)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return vec4<f32>(bytes4(lo) | (hb << vec4<u32>(4u)));
}
