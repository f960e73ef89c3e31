//! `hearth bench MODEL -p 512 -n 128 -r 5`: prompt processing and generation speed in
//! llama-bench's terms. `ppN` evaluates N prompt tokens in one go from an empty cache;
//! `tgN` generates N tokens one at a time from an empty cache (greedy as `run` and
//! `serve` decode at temperature 0: each step feeds the last argmax on the GPU, and the
//! argmax read back each step is also the sync). Tokenization and sampling are excluded.
//! Each test runs once to warm up, then `-r` times; t/s is reported as mean ± sd.

use super::load::{open_gguf, resolve_model};
use super::GpuArgs;
use crate::gpu::Gpu;
use crate::graph::{LoadOptions, Model};
use crate::model::{file_type_name, ModelConfig};
use std::path::Path;
use std::time::Instant;

/// Arguments of `hearth bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A GGUF file, a store name (gemma3:270m-base) or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// Prompt lengths to test (comma-separated; 0 skips)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 skips)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Repetitions of each test
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Prompt tokens per prefill pass
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// Sequences generating at once in the tg tests, batched: each step advances every
    /// sequence by one token (its own KV slot and position) and reads the weights once;
    /// reported as total and per-sequence tokens/s
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Output: md (a table) or json
    #[arg(short = 'o', long, default_value = "md")]
    output: String,
}

/// One test's result.
struct Row {
    test: String,
    tokens: usize,
    samples: Vec<f64>,
}

impl Row {
    fn mean_sd(&self) -> (f64, f64) {
        let n = self.samples.len() as f64;
        let mean = self.samples.iter().sum::<f64>() / n;
        let var = if self.samples.len() > 1 {
            self.samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        (mean, var.sqrt())
    }
}

/// Runs the tests and prints the table or JSON.
pub fn run(args: &BenchArgs, gpu_args: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let path = resolve_model(&args.model, models)?;
    if !matches!(args.output.as_str(), "md" | "json") {
        anyhow::bail!("-o {}: expected md or json", args.output);
    }
    if args.repetitions == 0 {
        anyhow::bail!("-r 0: at least one repetition is needed");
    }
    if !(1..=64).contains(&args.parallel) {
        anyhow::bail!("--parallel {}: expected 1 to 64 sequences", args.parallel);
    }
    let f = open_gguf(&path)?;
    let cfg = ModelConfig::from_gguf(&f)?;
    let gpu = Gpu::new_blocking(&gpu_args.options()?)?;
    let longest = args
        .n_prompt
        .iter()
        .chain(&args.n_gen)
        .copied()
        .max()
        .unwrap_or(0);
    if longest > cfg.context {
        anyhow::bail!(
            "a test of {longest} tokens exceeds the model's context of {}",
            cfg.context
        );
    }
    let opts = LoadOptions {
        context: longest.max(1),
        batch: args.batch.max(1),
        all_logits: false,
        sequences: args.parallel,
        kv_size: None,
    };
    let mut model = Model::load(gpu.clone(), &f, &opts)?;
    let vocab = cfg.vocab as u64;
    let mut rows = Vec::new();
    for &n in args.n_prompt.iter().filter(|&&n| n > 0) {
        // Ids spread over the vocabulary, fixed so runs compare.
        let ids: Vec<u32> = (0..n as u64)
            .map(|i| (1 + i * 7919 % (vocab - 1)) as u32)
            .collect();
        let samples = repeat(args.repetitions, || {
            model.reset();
            let t = Instant::now();
            model.forward(&ids)?;
            pollster::block_on(model.argmax())?;
            Ok(n as f64 / t.elapsed().as_secs_f64())
        })?;
        rows.push(Row {
            test: format!("pp{n}"),
            tokens: n,
            samples,
        });
    }
    let par = args.parallel;
    for &n in args.n_gen.iter().filter(|&&n| n > 0) {
        let samples = repeat(args.repetitions, || {
            let secs = match par {
                1 => generate(&mut model, n)?,
                _ => generate_batched(&mut model, par, n)?,
            };
            Ok((n * par) as f64 / secs)
        })?;
        let test = if par > 1 {
            format!("tg{n} x{par}")
        } else {
            format!("tg{n}")
        };
        if par > 1 {
            rows.push(Row {
                test: format!("{test} per sequence"),
                tokens: n,
                samples: samples.iter().map(|t| t / par as f64).collect(),
            });
        }
        rows.push(Row {
            test,
            tokens: n * par,
            samples,
        });
    }
    let name = format!(
        "{} {} {}",
        cfg.arch.name(),
        f.get_str("general.size_label").ok().flatten().unwrap_or(""),
        f.get_u32("general.file_type")
            .ok()
            .flatten()
            .map(file_type_name)
            .unwrap_or("")
            .trim_start_matches("mostly ")
    );
    let size: u64 = f.tensors.iter().map(|t| t.n_bytes).sum();
    let params: u64 = f.tensors.iter().map(|t| t.n_elements()).sum();
    let backend = format!("{:?}", gpu.info.backend);
    let adapter = gpu.info.name.clone();
    if args.output == "json" {
        let tests: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let (mean, sd) = r.mean_sd();
                serde_json::json!({
                    "test": r.test, "n_tokens": r.tokens, "repetitions": r.samples.len(),
                    "tokens_per_second": mean, "stddev": sd, "samples": r.samples,
                })
            })
            .collect();
        let out = serde_json::json!({
            "model": name.trim(), "path": path.display().to_string(),
            "size_bytes": size, "params": params, "backend": backend, "adapter": adapter,
            "batch": opts.batch, "parallel": par, "tests": tests,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("| model | size | params | backend | adapter | test | t/s |");
    println!("| --- | ---: | ---: | --- | --- | ---: | ---: |");
    for r in &rows {
        let (mean, sd) = r.mean_sd();
        println!(
            "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} |",
            name.trim(),
            size as f64 / (1u64 << 20) as f64,
            params as f64 / 1e6,
            backend,
            adapter,
            r.test,
            mean,
            sd
        );
    }
    Ok(())
}

/// Generates `n` tokens greedily from an empty cache and returns the seconds taken.
/// Decoding as `run` and `serve` do it at temperature 0: each step feeds the last argmax
/// on the GPU; where that pays (`feeds_ahead`) it is submitted before the argmax is read
/// back, which is then read while it runs.
fn generate(m: &mut Model, n: usize) -> anyhow::Result<f64> {
    let ahead = m.feeds_ahead();
    m.set_slot(0)?;
    m.reset();
    let t = Instant::now();
    m.forward(&[1])?;
    for _ in 1..n {
        if !ahead {
            pollster::block_on(m.argmax())?;
        }
        m.forward_argmax()?;
        if ahead {
            pollster::block_on(m.argmax_before())?;
        }
    }
    pollster::block_on(m.argmax())?;
    Ok(t.elapsed().as_secs_f64())
}

/// Generates `n` tokens greedily in each of `par` sequences from empty caches, all in
/// one batched step per token (each sequence starts from a different token), and returns
/// the seconds taken.
fn generate_batched(m: &mut Model, par: usize, n: usize) -> anyhow::Result<f64> {
    for slot in 0..par {
        m.set_slot(slot)?;
        m.reset();
    }
    let t = Instant::now();
    let mut next: Vec<u32> = (1..=par as u32).collect();
    for _ in 0..n {
        let rows: Vec<(usize, u32)> = next.iter().copied().enumerate().collect();
        next = m.greedy_batch(&rows)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One warm-up run, then `reps` measured ones.
fn repeat(reps: usize, mut f: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<Vec<f64>> {
    f()?;
    (0..reps).map(|_| f()).collect()
}
