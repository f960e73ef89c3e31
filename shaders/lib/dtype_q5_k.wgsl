// Q5_K, 256 elements: [f16 d][f16 dmin][scales 12][qh 32][qs 128] = 44 words. As Q4_K,
// plus a fifth bit: bit s (the sub-block) of qh[e%32].
#include "lib/weights.wgsl"
#include "lib/kquant_scales.wgsl"

const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 44u;

fn dq4(b: u32, i: u32) -> vec4<f32> {
    let s = i >> 3u;
    let lo = (w[b + 12u + 8u * (i >> 4u) + (i & 7u)] >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
    let hb = (w[b + 4u + (i & 7u)] >> s) & 0x01010101u;
    let q = vec4<f32>(bytes4(lo | (hb << 4u)));
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(vec3<u32>(w[b + 1u], w[b + 2u], w[b + 3u]), s);
    return dm.x * sm.x * q - dm.y * sm.y;
}

#ifdef MATVEC
#include "lib/dot_generic.wgsl"
#endif
