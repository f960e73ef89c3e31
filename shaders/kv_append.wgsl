// Appends this step's keys and values to the KV cache: cache[row t, i] = x[t, i] for
// t < n_tokens (at most p.max_tokens, the size it was built for) and i < kv_dim, converted
// to the cache's element type, at token t's position in its slot. Positions past the capacity are dropped (the host sizes the cache).
#include "lib/common.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"

struct Params {
    k_offset: u32,
    v_offset: u32,
    token_stride: u32,  // elements between tokens in k and v
    kv_dim: u32,
    capacity: u32,
    max_tokens: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<kv_t>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> vc: array<kv_t>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let i = gs.wid.x * WG + ids.lid;
    let t = gs.wid.y;
    if (t >= min(p.max_tokens, step.n_tokens) || i >= p.kv_dim) {
        return;
    }
    let pos = row_pos(t);
    if (pos >= p.capacity) {
        return;
    }
    let src = t * p.token_stride + i;
    let dst = cache_row(row_slot(t), pos, p.capacity) * p.kv_dim + i;
    kc[dst] = kv_t(k[p.k_offset + src]);
    vc[dst] = kv_t(v[p.v_offset + src]);
}
