// The rotation angle of RoPE pair i at an integer position, shared by rope.wgsl and
// rope_kv.wgsl (see rope.wgsl for why it is computed in fixed point). The including
// shader declares `freq` (frac(g_i) * 2^64 as (low, high) words) and, under
// FREQ_FACTORS, `freq_factors`.

// High word of the 64-bit product a * b.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

#ifdef FREQ_FACTORS
fn word(q: vec3<u32>, i: u32) -> u32 {
    if (i >= 3u) {
        return 0u;
    }
    return q[i];
}

// frac(g / f) in 64-bit fixed point, g given the same way, for f a positive normal f32
// in [2^-32, 2^94]. Long division of g by the 24-bit mantissa m of f = m * 2^(e - 23),
// one byte at a time so the remainder (< m < 2^24) shifted by 8 fits a u32.
fn div_frac(g: vec2<u32>, f: f32) -> vec2<u32> {
    let bits = bitcast<u32>(f);
    let e = i32((bits >> 23u) & 0xFFu) - 127;
    let m = (bits & 0x7FFFFFu) | 0x800000u;
    // q = floor(g * 2^64 * 2^24 / m), 88 bits in three words, lowest first.
    var q = vec3<u32>(0u);
    var r = 0u;
    for (var k = 0u; k < 11u; k++) {
        var byte = 0u;
        if (k < 8u) {
            byte = (select(g.x, g.y, k < 4u) >> (24u - 8u * (k % 4u))) & 0xFFu;
        }
        let n = (r << 8u) | byte;
        let d = n / m;
        r = n - d * m;
        q = vec3<u32>((q.x << 8u) | d, (q.y << 8u) | (q.x >> 24u), (q.z << 8u) | (q.y >> 24u));
    }
    // g / f = q * 2^-(e + 1) in units of 2^-64: keep the 64 bits below the binary point.
    let s = e + 1;
    if (s < 0) {
        let t = u32(min(-s, 31));
        return vec2<u32>(q.x << t, (q.y << t) | (q.x >> (32u - t)));
    }
    let ws = u32(s) / 32u;
    let bs = u32(s) % 32u;
    if (bs == 0u) {
        return vec2<u32>(word(q, ws), word(q, ws + 1u));
    }
    return vec2<u32>(
        (word(q, ws) >> bs) | (word(q, ws + 1u) << (32u - bs)),
        (word(q, ws + 1u) >> bs) | (word(q, ws + 2u) << (32u - bs)),
    );
}
#endif

// (cos, sin) of pair i's angle at position pos.
fn rope_cs(i: u32, pos: u32) -> vec2<f32> {
    var g = freq[i];
#ifdef FREQ_FACTORS
    g = div_frac(g, freq_factors[i]);
#endif
    // The top 32 bits of frac(pos * g): wrapping products drop the whole turns.
    let turns = g.y * pos + mul_hi(g.x, pos);
    // As a signed fraction of a turn in [-1/2, 1/2): 2 pi / 2^32 per unit.
    let angle = f32(bitcast<i32>(turns)) * 1.4629180792671596e-9;
    return vec2<f32>(cos(angle), sin(angle));
}
