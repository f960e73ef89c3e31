// The non-linear 4-bit codebook shared by IQ4_NL and IQ4_XS: -127, -104, -83, -65, -49,
// -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113, as signed bytes (lut16_i8).
const IQ4_TABLE: vec4<u32> = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);

fn iq4_lookup(q: vec4<u32>) -> vec4<f32> {
    return lut16_i8(IQ4_TABLE, q);
}
