// Rotary position embedding in place on x[t][head][head_dim]: the pair (a, b) of rotary
// index i (NEOX: a = i, b = i + rope_dims / 2; otherwise a = 2i, b = 2i + 1) turns by
// theta = (pos * pos_scale) * base^(-2i / rope_dims) / freq_factors[i] (FREQ_FACTORS)
// with pos the token's position (row_pos). Dimensions past rope_dims are untouched.
//
// Why the angle is computed in fixed point: at pos 32768 theta reaches 32768 rad, where
// one f32 ulp is 0.004 rad, and sin/cos are only accurate near zero. Since pos is an
// integer, only the fraction of g_i = pos_scale * base^(-2i/rope_dims) / (2 pi) matters
// (whole turns times pos are whole turns). The host supplies that fraction in 64-bit
// fixed point; pos * g mod 1 is then exact integer arithmetic (wrapping u32 products),
// and sin/cos see an angle in [-pi, pi) good to about 1e-7 rad at any position. Integer
// arithmetic also holds where a compiler contracts or reorders float operations.
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/rope_angle.wgsl"

struct Params {
    n_heads: u32,
    head_dim: u32,
    half_dims: u32,         // rope_dims / 2: rotary pairs per head
    token_stride: u32,
    x_offset: u32,
    max_tokens: u32,
    groups_per_token: u32,
    mscale: f32,            // multiplier of cos and sin (YaRN, LongRoPE); 1 for none
}

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
// frac(g_i) * 2^64 as (low word, high word).
@group(0) @binding(2) var<storage, read> freq: array<vec2<u32>>;
#ifdef FREQ_FACTORS
@group(0) @binding(3) var<storage, read> freq_factors: array<f32>;
#endif
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let wg = wg_index(gs);
    let t = wg / p.groups_per_token;
    let j = (wg % p.groups_per_token) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens) || j >= p.n_heads * p.half_dims) {
        return;
    }
    let i = j % p.half_dims;
    let base = p.x_offset + t * p.token_stride + (j / p.half_dims) * p.head_dim;
#ifdef NEOX
    let a = base + i;
    let b = a + p.half_dims;
#else
    let a = base + 2u * i;
    let b = a + 1u;
#endif
    let cs = rope_cs(i, row_pos(t));
    let c = cs.x * p.mscale;
    let s = cs.y * p.mscale;
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
