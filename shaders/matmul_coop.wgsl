// Matrix-matrix product for prefill on cooperative matrices (NVIDIA tensor cores, AMD
// WMMA, Apple simdgroup matrices, Intel XMX, through wgpu's experimental
// `wgpu_cooperative_matrix`): Y[t, row_offset + r] = sum_k W[r, k] * X[t, k] for the
// step's tokens over one shard of W, the same contract as matmul.wgsl.
// A workgroup computes a tile of 4N tokens x 4N rows (N = COOP, the matrices' side, 8 or
// 16 as the adapter offers; COOP16 with 16): per stage of KS elements of k it dequantizes the tile's
// weight rows once into shared memory (the weights stay quantized in memory) and copies
// the tokens' x beside them, both in the matrices' input type (f16 with F16, else f32),
// then each subgroup multiplies a 2 x 2 block of N x N matrices of the tile, its four
// accumulators in f32. WG is four times the adapter's smallest subgroup: with larger
// subgroups there are fewer of them and each takes several blocks in turn (every
// subgroup makes the same number of passes, so the barriers stay uniform). The results
// go through shared memory so that only the step's tokens and the shard's rows are
// written.
#include "lib/token_rows.wgsl"
#include "lib/step.wgsl"

const N: u32 = COOP;
const TM: u32 = 4u * N;  // weight rows per tile
const TN: u32 = 4u * N;  // tokens per tile
const KS: u32 = 2u * N;  // elements of k per stage
const KG: u32 = KS / 4u; // 4-element groups per stage
const BLOCKS: u32 = 4u;  // 2 x 2 blocks of matrices per tile

#ifdef F16
alias E = f16;
#else
alias E = f32;
#endif
#ifdef COOP16
alias MA = coop_mat16x16<E, A>;
alias MB = coop_mat16x16<E, B>;
alias MC = coop_mat16x16<f32, C>;
#else
alias MA = coop_mat8x8<E, A>;
alias MB = coop_mat8x8<E, B>;
alias MC = coop_mat8x8<f32, C>;
#endif

// The stage: the tile's weight rows ([row][k]), then from XS its tokens ([token][k]).
var<workgroup> st: array<E, (TM + TN) * KS>;
const XS: u32 = TM * KS;
#ifdef F16
// With f16 inputs, x and the weights are staged as two halves each, f16(v) and
// f16((v - f16(v)) * LO): the high halves' product goes to the accumulators, the
// products of a high and a low half to a second set, scaled back by 1 / LO at the end
// (the low halves' product, 2^-22 of the whole, is left out), so both keep about 22
// bits (in f16, the weights' rounding alone put the forward tests' logits at an NMSE of
// 1-2e-6 against the f64 reference, over their 1e-6 bound). The scale keeps the low
// halves out of f16's subnormals, which some devices flush.
var<workgroup> st_lo: array<E, (TM + TN) * KS>;
const LO: f32 = 2048.0;

// v rounded to f16's 11-bit significand (to nearest even) on its bits, exact in f16
// in f16's normal range: a compiler that keeps f16 values in f32 registers may drop a
// round trip through f16 conversions (lavapipe did, through conversions and through
// pack2x16float alike), and stores may round another way.
fn round16(v: vec4<f32>) -> vec4<f32> {
    let b = bitcast<vec4<u32>>(v);
    let odd = (b >> vec4<u32>(13u)) & vec4<u32>(1u);
    return bitcast<vec4<f32>>((b + vec4<u32>(0xFFFu) + odd) & vec4<u32>(0xFFFFE000u));
}

// The two halves of v: f16(v) and (v - f16(v)) * LO.
fn halves(v: vec4<f32>) -> array<vec4<E>, 2> {
    let r = round16(v);
    return array<vec4<E>, 2>(vec4<E>(r), vec4<E>((v - r) * LO));
}
#endif
var<workgroup> cs: array<f32, BLOCKS * N * N>; // one N x N result per subgroup

// Stores group v at element o of the stage (with F16, its two halves).
fn put4(o: u32, v: vec4<f32>) {
#ifdef F16
    let hl = halves(v);
    let h = hl[0];
    st_lo[o] = hl[1].x;
    st_lo[o + 1u] = hl[1].y;
    st_lo[o + 2u] = hl[1].z;
    st_lo[o + 3u] = hl[1].w;
#else
    let h = v;
#endif
    st[o] = h.x;
    st[o + 1u] = h.y;
    st[o + 2u] = h.z;
    st[o + 3u] = h.w;
}

// Stages groups g0 .. g0 + KG of the tile's weight rows and tokens (zeros past the
// shard's rows, the step's tokens and the row's end).
fn stage(lid: u32, tile_r: u32, tile_t: u32, g0: u32, groups: u32, n_tokens: u32) {
    for (var e = lid; e < TM * KG; e += WG) {
        let row = tile_r + e / KG;
        let g = g0 + e % KG;
        var v = vec4<f32>(0.0);
        if (row < p.rows && g < groups) {
            v = dq4_row(row * p.row_words, g);
        }
        put4((e / KG) * KS + 4u * (e % KG), v);
    }
    for (var e = lid; e < TN * KG; e += WG) {
        let tok = tile_t + e / KG;
        let g = g0 + e % KG;
        var v = vec4<f32>(0.0);
        if (tok < n_tokens && g < groups) {
            v = load_x4(tok, g);
        }
        put4(XS + (e / KG) * KS + 4u * (e % KG), v);
    }
}

// Writes one accumulator (tokens t0.., rows r0.. of the whole tensor's shard) through
// this subgroup's slice of `cs`: every invocation of the workgroup calls it the same
// number of times (it holds barriers).
fn store(c: MC, sg: u32, lane: u32, sg_size: u32, t0: u32, r0: u32,
        n_tokens: u32) {
    coopStoreT(c, &cs[sg * N * N], N);
    workgroupBarrier();
    for (var e = lane; e < N * N; e += sg_size) {
        let t = t0 + e / N;
        let r = r0 + e % N;
        if (t < n_tokens && r < p.rows) {
            y[p.y_offset + t * p.y_stride + p.row_offset + r] = cs[sg * N * N + e];
        }
    }
    workgroupBarrier();
}

// The number of subgroups, made uniform for the compiler (it is per workgroup).
var<workgroup> subgroups: u32;

@compute @workgroup_size(WG)
fn main(ids: Ids, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32,
        @builtin(num_subgroups) nsg: u32) {
    // The workgroup id as its own argument: the compiler's uniformity analysis knows it
    // is uniform (not as a member of a struct argument).
    let tile_r = wid.x * TM;
    let tile_t = wid.y * TN;
    let n_tokens = min(p.n_tokens, step.n_tokens);
    let groups = (p.k + 3u) / 4u;
    if (ids.lid == 0u) {
        subgroups = nsg;
    }
    let turns = BLOCKS / workgroupUniformLoad(&subgroups);
    // Tiles past the step's tokens do nothing (no early return: the matrix operations
    // must stay in uniform control flow).
    if (tile_t < n_tokens) {
        for (var turn = 0u; turn < turns; turn++) {
            // Block b: row matrices 2 (b % 2) and + 1, token matrices 2 (b / 2) and + 1.
            let b = sg + turn * nsg;
            let ar = 2u * N * (b % 2u);
            let at = 2u * N * (b / 2u);
            var c00 = MC();
            var c01 = MC();
            var c10 = MC();
            var c11 = MC();
#ifdef F16
            var l00 = MC();
            var l01 = MC();
            var l10 = MC();
            var l11 = MC();
#endif
            for (var g0 = 0u; g0 < groups; g0 += KG) {
                stage(ids.lid, tile_r, tile_t, g0, groups, n_tokens);
                workgroupBarrier();
                for (var kk = 0u; kk < KS; kk += N) {
                    // A: N tokens x N of k, row-major in st from XS; B: N of k x N rows,
                    // column-major in st (row r's run of k is contiguous).
                    let a0 = coopLoadT<MA>(&st[XS + at * KS + kk], KS);
                    let a1 = coopLoadT<MA>(&st[XS + (at + N) * KS + kk], KS);
                    let b0 = coopLoad<MB>(&st[ar * KS + kk], KS);
                    let b1 = coopLoad<MB>(&st[(ar + N) * KS + kk], KS);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
#ifdef F16
                    let l0 = coopLoadT<MA>(&st_lo[XS + at * KS + kk], KS);
                    let l1 = coopLoadT<MA>(&st_lo[XS + (at + N) * KS + kk], KS);
                    let m0 = coopLoad<MB>(&st_lo[ar * KS + kk], KS);
                    let m1 = coopLoad<MB>(&st_lo[(ar + N) * KS + kk], KS);
                    l00 = coopMultiplyAdd(l0, b0, coopMultiplyAdd(a0, m0, l00));
                    l01 = coopMultiplyAdd(l0, b1, coopMultiplyAdd(a0, m1, l01));
                    l10 = coopMultiplyAdd(l1, b0, coopMultiplyAdd(a1, m0, l10));
                    l11 = coopMultiplyAdd(l1, b1, coopMultiplyAdd(a1, m1, l11));
#endif
                }
                workgroupBarrier();
            }
#ifdef F16
            c00 += l00 * (1.0 / LO);
            c01 += l01 * (1.0 / LO);
            c10 += l10 * (1.0 / LO);
            c11 += l11 * (1.0 / LO);
#endif
            let t0 = tile_t + at;
            let r0 = tile_r + ar;
            store(c00, sg, ids.lane, ids.sg_size, t0, r0, n_tokens);
            store(c01, sg, ids.lane, ids.sg_size, t0, r0 + N, n_tokens);
            store(c10, sg, ids.lane, ids.sg_size, t0 + N, r0, n_tokens);
            store(c11, sg, ids.lane, ids.sg_size, t0 + N, r0 + N, n_tokens);
        }
    }
}
