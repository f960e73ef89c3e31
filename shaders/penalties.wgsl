// Repetition, presence and frequency penalties applied in place to the logits of the
// window's tokens (llama.cpp semantics): one invocation per (id, count) entry, so ids
// must be distinct (the host checks). Entries past n_ids and ids past vocab do nothing.
#include "lib/common.wgsl"

struct Params {
    x_offset: u32,
    vocab: u32,
    max_ids: u32,
    _pad: u32,
}

// Rewritten by `Penalties::set` before each use.
struct Window {
    n_ids: u32,
    repeat: f32,
    presence: f32,
    frequency: f32,
}

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> window: array<vec2<u32>>;  // (id, count)
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> w: Window;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let i = wg_index(gs) * WG + ids.lid;
    if (i >= w.n_ids || i >= p.max_ids) {
        return;
    }
    let e = window[i];
    if (e.x >= p.vocab) {
        return;
    }
    let k = p.x_offset + e.x;
    var l = x[k];
    if (l > 0.0) {
        l = l / w.repeat;
    } else {
        l = l * w.repeat;
    }
    let presence = select(0.0, w.presence, e.y > 0u);
    x[k] = l - (f32(e.y) * w.frequency + presence);
}
