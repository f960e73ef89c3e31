// The batched matvec's x-sharing form (LAZY_FORM) decodes weights from words loaded
// where they are used, with scales loaded once per block: holding a block's words per
// row across the block, as an earlier form did, spilled registers on a CPU rasterizer.
// A decoder that defines LAZY gives `lazy_scale(row, g) -> Lazy` (the split-row types
// get theirs from lib/split.wgsl), the scales (and word addresses) of the LAZY_GROUPS
// 4-element groups from group g (a multiple of it), and either `lazy_group(s, j)`,
// group j of them, or (LAZY_PAIR) `lazy_pair(s, j)`, groups j and j + LAZY_GROUPS / 2
// (j < LAZY_GROUPS / 2) from the same words, the two runs of LAZY_GROUPS / 2 starting
// at elements `lazy_runs(g)`. Blocks of 32 (LAZY_GROUPS 8): the runs are the block's
// halves (Q4_0's byte j holds elements j and j + 16). K-quants (LAZY_K, LAZY_GROUPS 16):
// two consecutive runs of 32 that share their words (Q4_K's sub-blocks 2c and 2c + 1,
// the low and high nibbles of the same bytes). Each decoder fills the fields it needs.
// LAZY_QUAD (K-quants whose four consecutive runs of 32 share words: Q6_K's ql and qh
// bytes, the 2-bit planes of Q2_K and Q3_K): a step is 32 groups, four runs; the
// decoder gives `lazy_words(s, j) -> vec3<u32>`, the words of slot j (j < 8) of every
// run, and `lazy_run(s, words, j, k) -> vec4<f32>`, group j of run k (elements
// 32k + 4j.. of the step) from them: each word is loaded once per step, where the
// pair form loaded the shared ones once per pair.
struct Lazy {
    w: vec2<u32>,  // the first quant word, and the first word of the high bits
    d: vec4<f32>,  // scales
    m: vec2<f32>,  // offsets
    u: u32,        // high bits, or their shift
    s: u32,        // packed signed 8-bit scales
    t: u32,        // more of them
}

#ifdef LAZY_QUAD
const LAZY_GROUPS: u32 = 32u;
#else
#ifdef LAZY_K
const LAZY_GROUPS: u32 = 16u;

// Two consecutive runs.
fn lazy_runs(g: u32) -> vec2<u32> {
    return vec2<u32>(4u * g, 4u * g + 32u);
}
#else
const LAZY_GROUPS: u32 = 8u;

fn lazy_runs(g: u32) -> vec2<u32> {
    return vec2<u32>(4u * g, 4u * g + 16u);
}
#endif
#endif
