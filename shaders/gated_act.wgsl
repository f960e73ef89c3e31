// Gated activation of the FFN: gate[t, i] = act(gate[t, i]) * up[t, i] in place, with
// act = SiLU (SILU) or tanh-approximated GELU (GELU_TANH), or gpt-oss's clamped SwiGLU
// (SWIGLU_OAI, lib/act.wgsl). One invocation per element. PLAIN: no up projection,
// gate = act(gate) (BERT's sequential FFN, up -> GELU -> down).
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/act.wgsl"

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
#ifndef PLAIN
@group(0) @binding(2) var<storage, read> up: array<f32>;
#endif
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs);
    let t = g / p.groups_per_token;
    let i = (g % p.groups_per_token) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens) || i >= p.width) {
        return;
    }
    let o = t * p.token_stride + i;
#ifdef PLAIN
    gate[p.gate_offset + o] = act(gate[p.gate_offset + o]);
#else
    gate[p.gate_offset + o] = gated(gate[p.gate_offset + o], up[p.up_offset + o]);
#endif
}
