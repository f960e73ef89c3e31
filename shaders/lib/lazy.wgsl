// The batched matvec's x-sharing form (LAZY_FORM) decodes weights from words loaded
// where they are used, with scales loaded once per step: holding a block's words per
// row across the block, as an earlier form did, spilled registers on a CPU rasterizer.
// A decoder that defines LAZY gives `lazy_scale(row, g) -> Lazy` (the split-row types
// get theirs from lib/split.wgsl), the scales (and word addresses) of the LAZY_GROUPS
// 4-element groups from group g (a multiple of it), and one of:
// - LAZY_W4 or LAZY_W2 (Q8_0, a group per word): `lazy_words4(s, j)` or
//   `lazy_words2(s, j)`, the words of groups j.. in one load, and `lazy_dec(s, q)`, a
//   group from its word q;
// - LAZY_PAIR (blocks of 32, LAZY_GROUPS 8): `lazy_pair(s, j)`, groups j and j + 4
//   (j < 4) from the same words, the block's two halves starting at elements
//   `lazy_runs(g)` (Q4_0's byte j holds elements j and j + 16);
// - LAZY_QUAD (the K-quants, LAZY_GROUPS 32): four consecutive runs of 32 that
//   share their words (Q6_K's ql and qh bytes, the 2-bit planes of Q2_K and Q3_K, the
//   nibble bytes of two Q4_K or Q5_K chunks and Q5_K's qh): `lazy_words(s, j) ->
//   vec3<u32>`, the words of slot j (j < 8), and `lazy_run(s, words, j, k) ->
//   vec4<f32>`, group j of run k (elements 32k + 4j.. of the step), decoded from them.
//   Each word is loaded once per 128 elements and the header once: against pairs of
//   runs, lavapipe's batched step ran 1.22x (Q4_K), 1.43x (Q5_K) and 1.47x (Q6_K)
//   faster (8 columns, 32768 x 2048, alternated).
// Each decoder fills the fields it needs.
struct Lazy {
    w: vec2<u32>,  // the first quant word, and the first word of the high bits
    d: vec4<f32>,  // scales
    m: vec4<f32>,  // offsets
    u: u32,        // high bits, or their shift
    s: u32,        // packed signed 8-bit scales
    t: u32,        // more of them
}

#ifdef LAZY_QUAD
const LAZY_GROUPS: u32 = 32u;

// Scale byte of group j of run k, for decoders whose eight scales of a step (the runs'
// two 16-element halves each) are bytes of s (runs 0 and 1) and t (runs 2 and 3).
fn quad_scale_byte(r: Lazy, j: u32, k: u32) -> u32 {
    return extractBits(select(r.s, r.t, k >= 2u), 16u * (k & 1u) + select(0u, 8u, j >= 4u), 8u);
}
#else
const LAZY_GROUPS: u32 = 8u;

fn lazy_runs(g: u32) -> vec2<u32> {
    return vec2<u32>(4u * g, 4u * g + 16u);
}
#endif
