// Q4_K, 256 elements: [f16 d][f16 dmin][scales 12][qs 128] = 36 words. Four chunks of
// 64: qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high nibble);
// sub-block s = e/32 has a 6-bit scale and min; value d*sc*q - dmin*m.
#include "lib/weights.wgsl"
#include "lib/kquant_scales.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 36u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let s = i >> 3u;
    let q = (w[b + 4u + 8u * (i >> 4u) + (i & 7u)] >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, s);
    return dm.x * sm.x * vec4<f32>(bytes4(q)) - dm.y * sm.y;
}

#ifdef MATVEC
// Matvec: one part per 32-element sub-block s (eight words, one nibble each), its
// 6-bit scale and min unpacked once; the min applies to the sum of x.
const PARTS: u32 = 8u;

fn dot_part(b: u32, s: u32, e: u32) -> f32 {
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, s);
    let q0 = b + 4u + 8u * (s >> 1u);
    let sh = 4u * (s & 1u);
    let x0 = e + 32u * s;
    var acc = 0.0;
    var sx = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let xv = xv4(x0 + 4u * j);
        acc += dot(vec4<f32>(bytes4((w[q0 + j] >> sh) & 0x0F0F0F0Fu)), xv);
        sx += dot(xv, vec4<f32>(1.0));
    }
    return dm.x * sm.x * acc - dm.y * sm.y * sx;
}
#endif
