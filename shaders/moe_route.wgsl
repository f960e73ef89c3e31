// A mixture-of-experts router's choice for each token t of the step: from its logits
// l[t, 0..n_expert] (the router projection, bias included), the n_used experts and their
// weights, written to sel[t * n_used + j] and wts[t * n_used + j]:
//   default:       p = softmax(l) over every expert; the n_used largest p, their
//                  weights p (NORM: divided by their sum, at least 6.1e-5) (Qwen3-MoE);
//   TOPK_SOFTMAX:  the n_used largest logits, their weights the softmax over those
//                  alone (gpt-oss).
// Ties go to the lower expert id. One invocation per token (the lists are short).
#include "lib/common.wgsl"
#include "lib/step.wgsl"

struct RouteParams {
    n_expert: u32,
    n_used: u32,
    l_offset: u32,
    l_stride: u32,     // elements between tokens' logits
    max_tokens: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> l: array<f32>;
@group(0) @binding(2) var<storage, read_write> sel: array<u32>;
@group(0) @binding(3) var<uniform> p: RouteParams;
@group(0) @binding(4) var<storage, read_write> wts: array<f32>;

// The most experts a token uses (the host checks n_used).
const MAX_USED: u32 = 32u;
const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(ids: Ids, gs: Groups) {
    let t = wg_index(gs) * WG + ids.lid;
    if (t >= min(p.max_tokens, step.n_tokens)) {
        return;
    }
    let base = p.l_offset + t * p.l_stride;
#ifndef TOPK_SOFTMAX
    // The row's largest logit (for a stable softmax) and its exp-sum: the softmax over
    // every expert (TOPK_SOFTMAX needs only the chosen ones, below).
    var m = NEG;
    for (var e = 0u; e < p.n_expert; e++) {
        m = max(m, l[base + e]);
    }
    var total = 0.0;
    for (var e = 0u; e < p.n_expert; e++) {
        total += exp(l[base + e] - m);
    }
#endif
    // Selection by repeated maximum: the largest logit not yet taken (lowest id on ties).
    var picked: array<u32, MAX_USED>;
    var sum = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        var best = 0xFFFFFFFFu;
        var bv = NEG;
        for (var e = 0u; e < p.n_expert; e++) {
            var taken = false;
            for (var i = 0u; i < j; i++) {
                taken = taken || picked[i] == e;
            }
            let v = l[base + e];
            if (!taken && (best == 0xFFFFFFFFu || v > bv)) {
                best = e;
                bv = v;
            }
        }
        picked[j] = best;
        // Softmax numerators: over all experts by default, over the chosen ones with
        // TOPK_SOFTMAX (the first pick is their maximum).
#ifdef TOPK_SOFTMAX
        let w = exp(bv - l[base + picked[0]]);
#else
        let w = exp(bv - m) / total;
#endif
        wts[t * p.n_used + j] = w;
        sel[t * p.n_used + j] = best;
        sum += w;
    }
#ifdef TOPK_SOFTMAX
    let div = sum;
#else
#ifdef NORM
    let div = max(sum, 6.103515625e-5);
#else
    let div = 1.0;
#endif
#endif
    for (var j = 0u; j < p.n_used; j++) {
        wts[t * p.n_used + j] /= div;
    }
}
