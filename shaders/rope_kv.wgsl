// Attention's per-head preparation of a step in one pass. For each of the step's tokens t
// and each query and key head: (NORM) RMS-normalize the head with its weights, then
// rotate it (RoPE, exactly as rope.wgsl, at the token's position). Query heads go back in
// place; key heads, and the value heads with them, go straight into the KV cache at the
// token's position in its slot (positions past the capacity are dropped). One workgroup per (token, head)
// over n_heads query heads then n_kv_heads key heads; the head is staged in shared
// memory so a rotated pair may span invocations.
#include "lib/reduce.wgsl"
#include "lib/step.wgsl"
#include "lib/kv.wgsl"
#include "lib/rope_angle.wgsl"

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    half_dims: u32,    // rope_dims / 2
    q_stride: u32,     // elements between tokens in q
    kv_stride: u32,    // elements between tokens in k and v
    q_offset: u32,
    k_offset: u32,
    v_offset: u32,
    capacity: u32,
    max_tokens: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> kc: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> vc: array<kv_t>;
@group(0) @binding(6) var<storage, read> freq: array<vec2<u32>>;
#ifdef FREQ_FACTORS
@group(0) @binding(7) var<storage, read> freq_factors: array<f32>;
#endif
#ifdef NORM
@group(0) @binding(9) var<storage, read> q_norm: array<f32>;
@group(0) @binding(10) var<storage, read> k_norm: array<f32>;
#endif

// The largest head the attention kernels take.
const MAX_HEAD: u32 = 256u;
var<workgroup> head: array<f32, MAX_HEAD>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let wg = wg_index(gs);
    let heads = p.n_heads + p.n_kv_heads;
    let t = wg / heads;
    let h = wg % heads;
    let is_q = h < p.n_heads;
    // Both depend only on the workgroup id and uniforms: the whole workgroup leaves
    // together, so the barriers below stay in uniform control flow.
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let pos = row_pos(t);
    if (!is_q && pos >= p.capacity) {
        return;
    }
    let kh = h - select(p.n_heads, 0u, is_q);
    let q_base = p.q_offset + t * p.q_stride + h * p.head_dim;
    let k_base = p.k_offset + t * p.kv_stride + kh * p.head_dim;
    var ss = 0.0;
    for (var i = ids.lid; i < p.head_dim; i += WG) {
        var x: f32;
        if (is_q) {
            x = q[q_base + i];
        } else {
            x = k[k_base + i];
        }
        head[i] = x;
        ss += x * x;
    }
#ifdef NORM
    let inv = inverseSqrt(wg_sum(ss, ids) / f32(p.head_dim) + p.eps);
    for (var i = ids.lid; i < p.head_dim; i += WG) {
        var wn: f32;
        if (is_q) {
            wn = q_norm[i];
        } else {
            wn = k_norm[i];
        }
        head[i] = head[i] * inv * wn;
    }
#endif
    workgroupBarrier();
    let dst = cache_row(row_slot(t), pos, p.capacity) * p.n_kv_heads * p.head_dim + kh * p.head_dim;
    // Rotated pairs.
    for (var i = ids.lid; i < p.half_dims; i += WG) {
#ifdef NEOX
        let a = i;
        let b = i + p.half_dims;
#else
        let a = 2u * i;
        let b = a + 1u;
#endif
        let cs = rope_cs(i, pos);
        let x0 = head[a];
        let x1 = head[b];
        let ra = x0 * cs.x - x1 * cs.y;
        let rb = x0 * cs.y + x1 * cs.x;
        if (is_q) {
            q[q_base + a] = ra;
            q[q_base + b] = rb;
        } else {
            kc[dst + a] = kv_t(ra);
            kc[dst + b] = kv_t(rb);
        }
    }
    // Dimensions past the rotary ones pass through; value heads ride with key heads.
    for (var i = 2u * p.half_dims + ids.lid; i < p.head_dim; i += WG) {
        if (is_q) {
            q[q_base + i] = head[i];
        } else {
            kc[dst + i] = kv_t(head[i]);
        }
    }
    if (!is_q) {
        let v_base = p.v_offset + t * p.kv_stride + kh * p.head_dim;
        for (var i = ids.lid; i < p.head_dim; i += WG) {
            vc[dst + i] = kv_t(v[v_base + i]);
        }
    }
}
