// Attention's per-head preparation of a step in one pass. For each of the step's tokens t
// and each query and key head: (NORM) RMS-normalize the head with its weights, then
// rotate it (RoPE, exactly as rope.wgsl, at the token's position). Query heads go back in
// place (QOUT: to qo, packed for attention, where q is a projection's strided rows); key
// heads, and the value heads with them, go straight into the KV cache at the
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
    mscale: f32,       // multiplier of cos and sin (YaRN, LongRoPE); 1 for none
    temp_scale: f32,   // attention temperature: q *= 1 + temp_scale * ln(floor(pos / temp_floor) + 1)
    temp_floor: u32,
    qo_offset: u32,    // QOUT: where token 0's rotated q goes in qo
    qo_stride: u32,    // QOUT: elements between tokens in qo
    _pad0: u32,
    _pad1: u32,
}

#ifdef QOUT
// q is read only here: k and v may be rows of the same buffer (one projection's output).
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(11) var<storage, read_write> qo: array<f32>;
#else
@group(0) @binding(0) var<storage, read_write> q: array<f32>;
#endif
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef Q8
@group(0) @binding(4) var<storage, read_write> kc: array<u32>;
@group(0) @binding(5) var<storage, read_write> vc: array<u32>;
#else
@group(0) @binding(4) var<storage, read_write> kc: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> vc: array<kv_t>;
#endif
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

#ifdef Q8
// The scales of the head's 32-value blocks.
var<workgroup> scales: array<f32, 8>;

// Stores the head staged in `head` as Q8_0 at word `dst` of K (or V): per block the
// scale amax / 127, each value times its inverse rounded half away from zero (as
// llama.cpp quantizes), the scale kept as f16. Called in uniform control flow.
fn store_q8(dst: u32, to_v: bool, lid: u32) {
    let nb = p.head_dim / 32u;
    for (var b = lid; b < nb; b += WG) {
        var amax = 0.0;
        for (var j = 0u; j < 32u; j++) {
            amax = max(amax, abs(head[b * 32u + j]));
        }
        scales[b] = amax / 127.0;
    }
    workgroupBarrier();
    for (var w = lid; w < p.head_dim / 4u; w += WG) {
        let d = scales[w / 8u];
        var id = 0.0;
        if (d > 0.0) {
            id = 1.0 / d;
        }
        let x = vec4<f32>(head[4u * w], head[4u * w + 1u], head[4u * w + 2u], head[4u * w + 3u]) * id;
        let q = vec4<i32>(sign(x) * floor(abs(x) + 0.5)) & vec4<i32>(255);
        let word = u32(q.x) | (u32(q.y) << 8u) | (u32(q.z) << 16u) | (u32(q.w) << 24u);
        if (to_v) {
            vc[dst + w] = word;
        } else {
            kc[dst + w] = word;
        }
    }
    for (var w = lid; w < (nb + 1u) / 2u; w += WG) {
        var hi = 0.0;
        if (2u * w + 1u < nb) {
            hi = scales[2u * w + 1u];
        }
        let word = pack2x16float(vec2<f32>(scales[2u * w], hi));
        let at = dst + p.head_dim / 4u + w;
        if (to_v) {
            vc[at] = word;
        } else {
            kc[at] = word;
        }
    }
}
#endif

// Stores element i of query head h of token t, rotated.
fn put_q(t: u32, h: u32, i: u32, x: f32) {
#ifdef QOUT
    qo[p.qo_offset + t * p.qo_stride + h * p.head_dim + i] = x;
#else
    q[p.q_offset + t * p.q_stride + h * p.head_dim + i] = x;
#endif
}

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
    // The attention temperature's multiplier of this token's q (1 when off).
    let qt = 1.0 + p.temp_scale * log(f32(pos / p.temp_floor) + 1.0);
    let hs = kv_head_stride(p.head_dim);
    let dst = cache_row(row_slot(t), pos, p.capacity) * p.n_kv_heads * hs + kh * hs;
    // Rotated pairs.
    for (var i = ids.lid; i < p.half_dims; i += WG) {
#ifdef NEOX
        let a = i;
        let b = i + p.half_dims;
#else
        let a = 2u * i;
        let b = a + 1u;
#endif
        let cs = rope_cs(i, pos) * p.mscale;
        let x0 = head[a];
        let x1 = head[b];
        let ra = x0 * cs.x - x1 * cs.y;
        let rb = x0 * cs.y + x1 * cs.x;
        if (is_q) {
            put_q(t, h, a, ra * qt);
            put_q(t, h, b, rb * qt);
        } else {
#ifdef Q8
            // Each pair is read and written by one invocation: no race.
            head[a] = ra;
            head[b] = rb;
#else
            kc[dst + a] = kv_t(ra);
            kc[dst + b] = kv_t(rb);
#endif
        }
    }
    // Dimensions past the rotary ones pass through; value heads ride with key heads.
    for (var i = 2u * p.half_dims + ids.lid; i < p.head_dim; i += WG) {
        if (is_q) {
            put_q(t, h, i, head[i] * qt);
        } else {
#ifndef Q8
            kc[dst + i] = kv_t(head[i]);
#endif
        }
    }
#ifdef Q8
    if (!is_q) {
        workgroupBarrier();
        store_q8(dst, false, ids.lid);
        workgroupBarrier();
        let v_base = p.v_offset + t * p.kv_stride + kh * p.head_dim;
        for (var i = ids.lid; i < p.head_dim; i += WG) {
            head[i] = v[v_base + i];
        }
        workgroupBarrier();
        store_q8(dst, true, ids.lid);
    }
#else
    if (!is_q) {
        let v_base = p.v_offset + t * p.kv_stride + kh * p.head_dim;
        for (var i = ids.lid; i < p.head_dim; i += WG) {
            vc[dst + i] = kv_t(v[v_base + i]);
        }
    }
#endif
}
