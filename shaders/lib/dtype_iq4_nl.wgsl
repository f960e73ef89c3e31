// IQ4_NL: nibbles as in Q4_0, each an index into the IQ4 codebook, and an f16 d per
// block; value d * codebook[q]. Split rows (lib/split.wgsl).
const QK: u32 = 32u;
const QW: u32 = 4u;
#ifdef LAZY_FORM
// The batched matvec's x-sharing form decodes both groups of each word where the word is
// loaded (lib/codebook4.wgsl's lazy_pair).
#define LAZY
#define LAZY_PAIR
#define CODEBOOK
#endif
#include "lib/split.wgsl"
#include "lib/iq4_values.wgsl"

fn cb_lookup(q: vec4<u32>) -> vec4<f32> {
    return iq4_lookup(q);
}

fn cb_d(row: u32, nb: u32, blk: u32) -> f32 {
    return block_d(row, nb, blk);
}

#include "lib/codebook4.wgsl"
