// Argmax candidates: (value, index) pairs, reduced with `beats` (argmax.wgsl, and the
// output head's matvec with ARGMAX). Ties go to the lowest index; NaN never wins.

struct Best {
    v: f32,
    i: u32,  // NONE: no candidate yet
}

const NONE: u32 = 0xFFFFFFFFu;

// Whether c beats b. NaN is tested on the bits: implementations may assume floats are
// never NaN and fold comparisons with it.
fn beats(c: Best, b: Best) -> bool {
    let nan = (bitcast<u32>(c.v) & 0x7FFFFFFFu) > 0x7F800000u;
    return c.i != NONE && !nan && (b.i == NONE || c.v > b.v || (c.v == b.v && c.i < b.i));
}
