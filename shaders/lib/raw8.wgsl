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

// Word j (0..7) of q0 and q1 as one array of eight.
fn raw8_word(a: vec4<u32>, b: vec4<u32>, j: u32) -> u32 {
    return select(a[j & 3u], b[j & 3u], j >= 4u);
}
