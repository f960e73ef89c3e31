// The batched matvec's whole-block form (BATCH8): a decoder that defines RAW8 loads the
// words of eight 4-element groups (32 elements, one block or sub-block) of a row once
// with `raw8(row, g0)` (g0 a multiple of 8, `row` the row's first word), and `dq8(r, j)`
// decodes group j (0..7) of them from registers. Each decoder fills the fields it needs.
struct Raw8 {
    q0: vec4<u32>,
    q1: vec4<u32>,
    q2: vec4<u32>,
    q3: vec4<u32>,
    d: f32,   // scale (of the first 16 elements where there are two)
    m: f32,   // offset, or the second 16 elements' scale
    u: u32,   // high bits or shifts
}

// RAW16 (K-quants): a decoder whose 32-element runs come in pairs that share their words
// (Q4_K's sub-blocks 2c and 2c + 1, the low and high nibbles of the same bytes) loads
// both runs at once with `raw16(row, g)` (g a multiple of 16), whose groups start at
// `pair_groups(g)` (x and y: 8 groups each), and `dq16(r, j)` decodes group j (0..15;
// 8.. the second run). Each run's words are read once where RAW8 read them twice.
struct Raw16 {
    q0: vec4<u32>,
    q1: vec4<u32>,
    q2: vec4<u32>,
    q3: vec4<u32>,
    d: vec4<f32>,  // scales
    m: vec2<f32>,  // offsets
    u: u32,        // shifts
}

#ifdef RAW16
#ifndef PAIR_GROUPS
// The usual pair: two consecutive runs (a decoder whose runs pair otherwise defines
// PAIR_GROUPS and its own).
fn pair_groups(g: u32) -> vec2<u32> {
    return vec2<u32>(g, g + 8u);
}
#endif
#endif

// Word j (0..7) of q0 and q1 as one array of eight.
fn raw8_word(a: vec4<u32>, b: vec4<u32>, j: u32) -> u32 {
    return select(a[j & 3u], b[j & 3u], j >= 4u);
}
