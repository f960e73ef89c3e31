// IQ4_NL: nibbles as in Q4_0, each an index into the IQ4 codebook, and an f16 d per
// block; value d * codebook[q]. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#include "lib/split.wgsl"
#include "lib/iq4_values.wgsl"

fn iq4_group(q: u32, g: u32) -> vec4<f32> {
    return iq4_lookup(bytes4((q >> (4u * (g >> 2u))) & 0x0F0F0F0Fu));
}

fn dq4_row(row: u32, g: u32) -> vec4<f32> {
    let blk = g / GPB;
    let i = g % GPB;
    return block_d(row, row_blocks(), blk) * iq4_group(quant_word(row, blk, i & 3u), i);
}

#ifdef MATVEC
const PARTS: u32 = 1u;

fn dot_block_part(row: u32, nb: u32, blk: u32, part: u32, e: u32) -> f32 {
    let q = quant_vec4(row, blk, 0u);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot(iq4_group(q[j], 0u), xv4(e + 4u * j)) + dot(iq4_group(q[j], 4u), xv4(e + 16u + 4u * j));
    }
    return block_d(row, nb, blk) * s;
}
#endif
