// Gated activation of the FFN: gate[t, i] = act(gate[t, i]) * up[t, i] in place, with
// act = SiLU (SILU) or tanh-approximated GELU (GELU_TANH). One invocation per element.
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct Params {
    width: u32,
    token_stride: u32,      // elements between tokens, in gate and up alike
    gate_offset: u32,
    up_offset: u32,
    max_tokens: u32,
    groups_per_token: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn act(x: f32) -> f32 {
#ifdef SILU
    // exp(-x) overflows f32 below x = -88; past -80 the result is ~0 either way.
    return x / (1.0 + exp(-clamp(x, -80.0, 80.0)));
#endif
#ifdef GELU_TANH
    // Past |x| = 10 the tanh is +-1 to f32 precision; clamping keeps x^3 and the
    // exponentials inside tanh finite on every implementation.
    let c = clamp(x, -10.0, 10.0);
    let u = 0.7978845608 * (c + 0.044715 * c * c * c);
    return 0.5 * x * (1.0 + tanh(clamp(u, -10.0, 10.0)));
#endif
}

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs);
    let t = g / p.groups_per_token;
    let i = (g % p.groups_per_token) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens) || i >= p.width) {
        return;
    }
    let o = t * p.token_stride + i;
    gate[p.gate_offset + o] = act(gate[p.gate_offset + o]) * up[p.up_offset + o];
}
