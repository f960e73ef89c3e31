//! Forward-pass timing on a real model: a 64-token prefill and single-token decode steps,
//! each timed with a device sync (the argmax readback), over repeated runs.
//! `cargo bench --bench forward -- [MODEL.gguf]` (default: the cached Gemma 3 270M);
//! HEARTH_BENCH_PROMPT (tokens, default 64), HEARTH_BENCH_DECODE (steps, default 32).

use hearth::gguf::GgufFile;
use hearth::gpu::{Gpu, GpuOptions};
use hearth::graph::{LoadOptions, Model};
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var =
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len().max(2).saturating_sub(1) as f64;
    (mean, var.sqrt())
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| {
            format!(
                "{}/.cache/hearth/gemma-3-270m-q4_k_m.gguf",
                std::env::var("HOME").unwrap_or_default()
            )
        });
    let n_prompt = env_usize("HEARTH_BENCH_PROMPT", 64);
    let n_decode = env_usize("HEARTH_BENCH_DECODE", 32);
    let reps = env_usize("HEARTH_BENCH_REPS", 3);
    let f = GgufFile::open(&path).expect("model file");
    let gpu = Gpu::new_blocking(&GpuOptions::from_env().expect("options")).expect("GPU adapter");
    let t0 = Instant::now();
    let opts = LoadOptions {
        context: n_prompt + n_decode + 8,
        batch: n_prompt.max(1),
        all_logits: false,
        sequences: 1,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(gpu.clone(), &f, &opts).expect("load");
    println!("model: {path}");
    println!("adapter: {}", gpu.describe());
    println!(
        "load: {:.2} s; {}",
        t0.elapsed().as_secs_f64(),
        model.memory.describe()
    );
    let prompt: Vec<u32> = (0..n_prompt as u32)
        .map(|i| 2 + (i * 7919) % 20000)
        .collect();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        model.reset();
        let t = Instant::now();
        let mut next = model.greedy_step(&prompt).expect("prefill");
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..n_decode {
            next = model.greedy_step(&[next]).expect("decode");
        }
        let decode = t.elapsed().as_secs_f64() / n_decode as f64;
        if rep > 0 {
            // Run 0 warms up pipelines and caches.
            pp.push(prefill);
            tg.push(decode);
        }
    }
    let (pm, ps) = stats(&pp);
    let (tm, ts) = stats(&tg);
    println!("| test | time | t/s |");
    println!("|---|---|---|");
    println!(
        "| pp{n_prompt} | {:.1} ± {:.1} ms | {:.1} |",
        pm * 1e3,
        ps * 1e3,
        n_prompt as f64 / pm
    );
    println!(
        "| tg{n_decode} | {:.1} ± {:.1} ms/token | {:.1} |",
        tm * 1e3,
        ts * 1e3,
        1.0 / tm
    );
}
