// The k largest of x[x_offset .. x_offset + width] with their indices, sorted descending,
// ties to the lower index, NaN never selected. out = k_max ids, then k_max values as f32
// bits; slots past k, or without a candidate (fewer than k non-NaN values), get id
// 0xFFFFFFFF. Four dispatches, none of which sorts the whole vocabulary:
//   GROUPS:  the largest key of each group of `group` consecutive elements.
//   SELECT:  one workgroup finds T, the k-th largest group maximum (a radix select). At
//            least k groups reach T, so at least k elements do: every element of the
//            top k has a key >= T.
//   COLLECT: the elements with key >= T (whole groups below T are skipped) are appended
//            to a candidate list.
//   FINAL:   one workgroup sorts the candidates (bitonic, in shared memory) and writes
//            the best k. If they overflow the list (massive ties), it finds the exact
//            k-th largest key of all of x instead, takes every element above it and the
//            lowest-index ones equal to it, and sorts those.
// Keys order floats as integers: NaN maps to 0 (below everything), -0 to +0's key.
#include "lib/common.wgsl"

struct Params {
    width: u32,
    x_offset: u32,
    k_max: u32,     // slots in out
    n_groups: u32,
    group: u32,     // elements per group
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct Best {
    v: f32,
    i: u32,  // NONE: no candidate
}

const NONE: u32 = 0xFFFFFFFFu;
const CAP: u32 = 1024u;  // candidates FINAL sorts in shared memory

// The k of a run (<= k_max), rewritten by `TopK::set_k` before each use.
struct Want {
    k: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> want: Want;

fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) {
        return 0u;
    }
    if (b == 0x80000000u) {
        return 0x80000000u;
    }
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

// Whether c ranks before b. NaN is tested on the bits (see argmax.wgsl).
fn beats(c: Best, b: Best) -> bool {
    let nan = (bitcast<u32>(c.v) & 0x7FFFFFFFu) > 0x7F800000u;
    return c.i != NONE && !nan && (b.i == NONE || c.v > b.v || (c.v == b.v && c.i < b.i));
}

#ifdef GROUPS
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gkeys: array<u32>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs) * WG + ids.lid;
    if (g >= p.n_groups) {
        return;
    }
    let start = g * p.group;
    let end = min(start + p.group, p.width);
    var m = 0u;
    for (var e = start; e < end; e++) {
        m = max(m, key(x[p.x_offset + e]));
    }
    gkeys[g] = m;
}
#endif

#ifdef COLLECT
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gkeys: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>, 4>;
@group(0) @binding(3) var<storage, read_write> cand: array<Best>;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let g = wg_index(gs) * WG + ids.lid;
    let t = atomicLoad(&state[0]);
    if (g >= p.n_groups || gkeys[g] < t) {
        return;
    }
    let start = g * p.group;
    let end = min(start + p.group, p.width);
    for (var e = start; e < end; e++) {
        let v = x[p.x_offset + e];
        let kv = key(v);
        if (kv != 0u && kv >= t) {
            let slot = atomicAdd(&state[1], 1u);
            if (slot < CAP) {
                cand[slot] = Best(v, e);
            }
        }
    }
}
#endif

#ifdef SELECT_OR_FINAL
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> found: vec3<u32>;  // prefix, mask, rank still wanted within the prefix

// The k-th largest of the n keys src_key(0..n) (NaN keys, 0, never count); 0 when fewer
// than k are non-zero. Four rounds of an 8-bit radix select over a workgroup histogram.
fn kth_key(n: u32, k: u32, lid: u32) -> u32 {
    if (lid == 0u) {
        found = vec3<u32>(0u, 0u, k);
    }
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        atomicStore(&hist[lid % 256u], 0u);
        workgroupBarrier();
        let f = found;
        for (var i = lid; i < n; i += WG) {
            let kk = src_key(i);
            if (kk != 0u && (kk & f.y) == f.x) {
                atomicAdd(&hist[(kk >> shift) & 0xFFu], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var need = f.z;
            var digit = 256u;
            for (var d = 255; d >= 0; d--) {
                let c = atomicLoad(&hist[u32(d)]);
                if (need <= c) {
                    digit = u32(d);
                    break;
                }
                need -= c;
            }
            if (digit == 256u) {
                // Fewer than k non-NaN keys: every one is in.
                found = vec3<u32>(0u, 0xFFFFFFFFu, 0u);
            } else if (f.y != 0xFFFFFFFFu) {
                found = vec3<u32>(f.x | (digit << shift), f.y | (0xFFu << shift), need);
            }
        }
        workgroupBarrier();
    }
    // A uniform load: callers branch on the key around barriers, and browsers (Tint)
    // accept that only for a value they can prove workgroup-uniform.
    return workgroupUniformLoad(&found).x;
}
#endif

#ifdef SELECT
@group(0) @binding(1) var<storage, read> gkeys: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>, 4>;

fn src_key(i: u32) -> u32 {
    return gkeys[i];
}

@compute @workgroup_size(WG)
fn main(ids: Ids) {
    let t = kth_key(p.n_groups, want.k, ids.lid);
    if (ids.lid == 0u) {
        atomicStore(&state[0], t);
        atomicStore(&state[1], 0u);
    }
}
#endif

#ifdef FINAL
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> count: array<u32, 4>;
@group(0) @binding(3) var<storage, read> cand: array<Best>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;

var<workgroup> s: array<Best, CAP>;
var<workgroup> n_cand: atomic<u32>;
var<workgroup> n_uniform: u32;

fn src_key(i: u32) -> u32 {
    return key(x[p.x_offset + i]);
}

// Sorts s[0..size) best first (size a power of two <= CAP). Uniform control flow.
fn sort(size: u32, lid: u32) {
    for (var span = 2u; span <= size; span <<= 1u) {
        for (var j = span / 2u; j > 0u; j >>= 1u) {
            for (var q = lid; q < size / 2u; q += WG) {
                let i = (q / j) * 2u * j + (q % j);
                let l = i + j;
                let a = s[i];
                let b = s[l];
                let first = (i & span) == 0u;
                if ((first && beats(b, a)) || (!first && beats(a, b))) {
                    s[i] = b;
                    s[l] = a;
                }
            }
            workgroupBarrier();
        }
    }
}

// Appends x element e to s when `take`, while there is room.
fn append(e: u32, take: bool) {
    if (take) {
        let slot = atomicAdd(&n_cand, 1u);
        if (slot < CAP) {
            s[slot] = Best(x[p.x_offset + e], e);
        }
    }
}

@compute @workgroup_size(WG)
fn main(ids: Ids) {
    let lid = ids.lid;
    let k = min(want.k, p.k_max);
    if (lid == 0u) {
        n_uniform = count[1];
        atomicStore(&n_cand, 0u);
    }
    let n = workgroupUniformLoad(&n_uniform);
    var filled = n;
    if (n <= CAP) {
        for (var t = lid; t < CAP; t += WG) {
            if (t < n) {
                s[t] = cand[t];
            } else {
                s[t] = Best(0.0, NONE);
            }
        }
    } else {
        // Too many candidates: the exact k-th largest key of x, every element above
        // it (fewer than k), then the ties in index order until k are held (at most
        // one block of WG past them: well within CAP).
        let t = kth_key(p.width, k, lid);
        for (var t2 = lid; t2 < CAP; t2 += WG) {
            s[t2] = Best(0.0, NONE);
        }
        workgroupBarrier();
        for (var e = lid; e < p.width; e += WG) {
            let kk = src_key(e);
            append(e, kk != 0u && kk > t);
        }
        if (t != 0u) {
            for (var base = 0u; base < p.width; base += WG) {
                let e = base + lid;
                append(e, e < p.width && src_key(e) == t);
                workgroupBarrier();
                if (lid == 0u) {
                    n_uniform = atomicLoad(&n_cand);
                }
                if (workgroupUniformLoad(&n_uniform) >= k) {
                    break;
                }
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            n_uniform = atomicLoad(&n_cand);
        }
        filled = min(workgroupUniformLoad(&n_uniform), CAP);
    }
    workgroupBarrier();
    var size = 2u;
    while (size < max(filled, k)) {
        size <<= 1u;
    }
    sort(min(size, CAP), lid);
    for (var r = lid; r < p.k_max; r += WG) {
        var b = Best(0.0, NONE);
        if (r < k && r < CAP) {
            b = s[r];
        }
        out[r] = b.i;
        out[p.k_max + r] = bitcast<u32>(b.v);
    }
}
#endif
