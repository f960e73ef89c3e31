//! Agreement with llama.cpp on the real Gemma 3 270M Q4_K_M. Goldens come from
//! `scripts/gen-llama-goldens.py` (llama-cpp-python 0.3.36, CPU backend): for 8 prompts (the last typed with Gemma's turn markers),
//! the logits at every position of prompt + llama.cpp's greedy 32-token continuation.
//!
//! llama.cpp's CPU backend quantizes activations to 8 bits before every quantized matmul
//! and evaluates GELU through an f16 table, so its logits carry noise of about 0.1 that
//! hearth's f32 path does not (hearth matches the plain f64 reference to NMSE < 1e-6, see
//! tests/real_model.rs). The checks are therefore:
//! (a) teacher-forced: the same top-1 wherever llama.cpp's top-2 gap exceeds 0.25 (and
//!     its batched and one-at-a-time runs agree on the top-1); where
//!     the gap is between 0.1 and 0.25, at most 1% of positions may differ, and only where
//!     hearth itself sees a near-tie (its own gap < 0.05); at least 8 of llama.cpp's top-10
//!     in hearth's top-10 at 99% of positions and never fewer than 7; NMSE of the logits
//!     (over llama.cpp's top-20 and 128 fixed probe ids) below 2e-2 at every position and
//!     below 2e-3 on average;
//! (b) free-running greedy decode: the same tokens up to llama.cpp's first step with a
//!     top-2 gap below 0.1.

mod common;

use common::{gpu, ids, llama_goldens as goldens, Config};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use serde_json::Value;

/// Bound on the NMSE between hearth's and llama.cpp's logits at any one position. Right
/// after Gemma's turn markers (`<start_of_turn>user`) the logits are small and flat, so
/// llama.cpp's 8-bit activation noise weighs more there: 1.3e-2 was seen at such a position.
const NMSE_MAX: f64 = 2e-2;
/// Bound on the mean NMSE over all positions.
const NMSE_MEAN: f64 = 2e-3;
/// llama.cpp top-2 gaps below this are near-ties: no top-1 claim there.
const GAP: f64 = 0.1;
/// Above this gap the top-1 must always agree.
const GAP_STRICT: f64 = 0.25;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

fn load() -> Option<Model> {
    let path = common::real_model()?;
    let f = GgufFile::open(&path).unwrap();
    let opts = LoadOptions {
        context: 256,
        batch: 64,
        all_logits: true,
    };
    Some(Model::load(gpu(Config::Full), &f, &opts).unwrap())
}

#[test]
fn teacher_forced_logits_match_llama_cpp() {
    let Some(mut model) = load() else { return };
    let g = goldens();
    let probes = ids(&g["probe_ids"]);
    let (mut worst, mut sum, mut count) = (0f64, 0f64, 0usize);
    let (mut checked_top1, mut top1_differs, mut top10_short) = (0usize, 0usize, 0usize);
    for p in g["prompts"].as_array().unwrap() {
        let seq: Vec<u32> = ids(&p["ids"])
            .into_iter()
            .chain(ids(&p["continuation"]))
            .collect();
        let (n_prompt, cont) = (ids(&p["ids"]).len(), ids(&p["continuation"]));
        model.reset();
        model.forward(&seq).unwrap();
        let all = pollster::block_on(model.all_logits()).unwrap();
        assert_eq!(all.len(), seq.len());
        for (i, pos) in p["positions"].as_array().unwrap().iter().enumerate() {
            let ours = &all[i];
            let (top_ids, top_logits) = (ids(&pos["top_ids"]), floats(&pos["top_logits"]));
            let case = format!("{:?} position {i}", p["text"].as_str().unwrap());
            let our_top = top_k(ours, 10);
            let gap = top_logits[0] - top_logits[1];
            // Where llama.cpp's own one-token-at-a-time run picked another token than its
            // batched run, its noise exceeds this gap: no top-1 or top-10 claim there (hearth
            // matches its f64 reference at such a position, see tests/real_model.rs).
            let free = i.checked_sub(n_prompt - 1).and_then(|j| cont.get(j));
            let self_consistent = free.is_none_or(|&t| t == top_ids[0]);
            if gap > GAP && self_consistent {
                checked_top1 += 1;
                if our_top[0] != top_ids[0] {
                    let our_gap = (ours[our_top[0] as usize] - ours[our_top[1] as usize]) as f64;
                    eprintln!(
                        "{case}: top-1 {} vs llama.cpp's {} (its gap {gap:.3}, ours {our_gap:.3})",
                        our_top[0], top_ids[0]
                    );
                    assert!(
                        gap <= GAP_STRICT,
                        "{case}: top-1 differs where llama.cpp's gap is {gap:.3}"
                    );
                    assert!(
                        our_gap < 0.05,
                        "{case}: top-1 differs and hearth's own gap is {our_gap:.3}"
                    );
                    top1_differs += 1;
                }
            }
            let shared = top_ids[..10].iter().filter(|t| our_top.contains(t)).count();
            assert!(
                shared >= 7 || !self_consistent,
                "{case}: only {shared} of llama.cpp's top-10 in ours"
            );
            if shared < 8 {
                eprintln!("{case}: {shared} of llama.cpp's top-10 in ours");
                top10_short += 1;
            }
            let mut pairs: Vec<(f64, f64)> = top_ids
                .iter()
                .zip(&top_logits)
                .map(|(&t, &l)| (ours[t as usize] as f64, l))
                .collect();
            pairs.extend(
                probes
                    .iter()
                    .zip(floats(&pos["probe_logits"]))
                    .map(|(&t, l)| (ours[t as usize] as f64, l)),
            );
            let err: f64 = pairs.iter().map(|(a, b)| (a - b).powi(2)).sum();
            let norm: f64 = pairs.iter().map(|(_, b)| b * b).sum();
            let nmse = err / norm;
            assert!(nmse < NMSE_MAX, "{case}: NMSE {nmse:.2e} >= {NMSE_MAX:.0e}");
            worst = worst.max(nmse);
            sum += nmse;
            count += 1;
        }
    }
    let mean = sum / count as f64;
    eprintln!(
        "{count} positions: NMSE mean {mean:.2e}, worst {worst:.2e}; top-1 compared at {checked_top1}, \
         differs at {top1_differs}; top-10 overlap below 8 at {top10_short}"
    );
    assert!(
        count > 250 && checked_top1 > 150,
        "too few positions compared"
    );
    assert!(mean < NMSE_MEAN, "mean NMSE {mean:.2e} >= {NMSE_MEAN:.0e}");
    assert!(
        top1_differs * 100 <= checked_top1,
        "top-1 differs at {top1_differs} of {checked_top1}"
    );
    assert!(
        top10_short * 100 <= count,
        "top-10 overlap below 8 at {top10_short} of {count}"
    );
}

#[test]
fn free_running_greedy_matches_until_the_first_near_tie() {
    let Some(mut model) = load() else { return };
    let g = goldens();
    let mut compared = 0;
    for p in g["prompts"].as_array().unwrap() {
        let (prompt, cont, gaps) = (
            ids(&p["ids"]),
            ids(&p["continuation"]),
            floats(&p["free_gaps"]),
        );
        model.reset();
        let mut next = model.greedy_step(&prompt).unwrap();
        for (step, (&want, &gap)) in cont.iter().zip(&gaps).enumerate() {
            if gap < GAP {
                break;
            }
            assert_eq!(
                next,
                want,
                "{:?}: greedy token {step} differs",
                p["text"].as_str().unwrap()
            );
            compared += 1;
            next = model.greedy_step(&[next]).unwrap();
        }
    }
    eprintln!("{compared} greedy tokens equal to llama.cpp's");
    assert!(compared >= 20);
}
