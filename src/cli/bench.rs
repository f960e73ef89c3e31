//! `hearth bench MODEL -p 512 -n 128 -r 5`: prompt processing and generation speed in
//! llama-bench's terms. `ppN` evaluates N prompt tokens in one go from an empty cache;
//! `tgN` generates N tokens one at a time from an empty cache (greedy as `run` and
//! `serve` decode at temperature 0: each step feeds the last argmax on the GPU, and the
//! argmax read back each step is also the sync). Tokenization and sampling are excluded.
//! With `-d D` each test starts from D tokens already in the cache instead (`@ dD`).
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
    /// Context depths each test starts from (comma-separated): that many tokens are in
    /// the KV cache first (computed once, then shared through the prefix cache; not
    /// timed), as llama-bench's -d
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    n_depth: Vec<usize>,
    /// Repetitions of each test
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Prompt tokens per prefill pass
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// KV cache element type: f32, f16 or q8_0 (default: f16 where the GPU has
    /// shader-f16, else f32)
    #[arg(long, value_parser = crate::kernels::KvType::parse)]
    kv_type: Option<crate::kernels::KvType>,
    /// Sequences generating at once in the tg tests, batched: each step advances every
    /// sequence by one token (its own KV pages and position) and reads the weights once;
    /// reported as total and per-sequence tokens/s. A list (1,8,16, as llama-batched-bench's
    /// -npl) runs each count in turn within every repetition and reports each later
    /// count's total rate over the first's, paired round by round
    #[arg(long, value_delimiter = ',', default_value = "1")]
    parallel: Vec<usize>,
    /// With --parallel: also run the sequences as requests sharing a system prompt of
    /// this many tokens (each adds 8 tokens of its own and generates the first -n
    /// count): the prefix cache's KV pages against one sequence's, and the prompt rate
    #[arg(long, default_value_t = 0)]
    shared_prefix: usize,
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
    if let Some(n) = args.parallel.iter().find(|n| !(1..=64).contains(*n)) {
        anyhow::bail!("--parallel {n}: expected 1 to 64 sequences");
    }
    if let Some((i, n)) = args
        .parallel
        .iter()
        .enumerate()
        .find(|(i, n)| args.parallel[..*i].contains(n))
    {
        anyhow::bail!("--parallel: {n} is listed twice (at {})", i + 1);
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
        .unwrap_or(0)
        + args.n_depth.iter().copied().max().unwrap_or(0);
    let longest =
        longest.max(args.shared_prefix + SUFFIX + args.n_gen.first().copied().unwrap_or(0));
    if longest > cfg.context {
        anyhow::bail!(
            "a test of {longest} tokens exceeds the model's context of {}",
            cfg.context
        );
    }
    // The sequences loaded: the largest count tested (the list is never empty: clap
    // gives the default when the option is absent, and an empty value fails to parse).
    let max_par = args.parallel.iter().copied().max().unwrap_or(1);
    let opts = LoadOptions {
        context: longest.max(1),
        batch: args.batch.max(1),
        all_logits: false,
        sequences: max_par,
        kv_size: None,
        kv_type: args.kv_type,
    };
    let mut model = Model::load(gpu.clone(), &f, &opts)?;
    let vocab = cfg.vocab as u64;
    let mut rows = Vec::new();
    let mut speedups = Vec::new();
    let pars = &args.parallel;
    for &d in &args.n_depth {
        // The depth's context: other ids than the tests', so no test prompt matches it.
        let ctx: Vec<u32> = (0..d as u64)
            .map(|i| (1 + (i * 104_723 + 17) % (vocab - 1)) as u32)
            .collect();
        let at = |test: String| match d {
            0 => test,
            d => format!("{test} @ d{d}"),
        };
        let mut depth = Depth::new(ctx);
        for &n in args.n_prompt.iter().filter(|&&n| n > 0) {
            // Ids spread over the vocabulary, fixed so runs compare.
            let ids: Vec<u32> = (0..n as u64)
                .map(|i| (1 + i * 7919 % (vocab - 1)) as u32)
                .collect();
            let samples = repeat(args.repetitions, || {
                depth.enter(&mut model, 1)?;
                let t = Instant::now();
                model.forward(&ids)?;
                pollster::block_on(model.argmax())?;
                Ok(n as f64 / t.elapsed().as_secs_f64())
            })?;
            rows.push(Row {
                test: at(format!("pp{n}")),
                tokens: n,
                samples,
            });
        }
        for &n in args.n_gen.iter().filter(|&&n| n > 0) {
            let mut tg = |par: usize| -> anyhow::Result<f64> {
                depth.enter(&mut model, par)?;
                let secs = match par {
                    1 => generate(&mut model, n)?,
                    _ => generate_batched(&mut model, par, n)?,
                };
                Ok((n * par) as f64 / secs)
            };
            let samples = interleaved(pars, args.repetitions, &mut tg)?;
            let label = |par: usize| {
                at(if par > 1 {
                    format!("tg{n} x{par}")
                } else {
                    format!("tg{n}")
                })
            };
            for (&par, samples) in pars.iter().zip(&samples) {
                let test = label(par);
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
                    samples: samples.clone(),
                });
            }
            // Each later count's total rate over the first's, round by round.
            for (&par, s) in pars.iter().zip(&samples).skip(1) {
                speedups.push(Row {
                    test: format!("{} / {}", label(par), label(pars[0])),
                    tokens: n * par,
                    samples: s.iter().zip(&samples[0]).map(|(a, b)| a / b).collect(),
                });
            }
        }
    }
    let shared = match args.shared_prefix {
        0 => None,
        t => {
            let gen = args.n_gen.first().copied().unwrap_or(0);
            let s = shared_prefix(&mut model, max_par, t, gen)?;
            rows.push(Row {
                test: format!("pp{}+{SUFFIX} x{max_par} shared", t),
                tokens: (t + SUFFIX) * max_par,
                samples: vec![s.prompt_rate],
            });
            Some(s)
        }
    };
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
    let kv_type = opts
        .kv_type
        .unwrap_or(crate::kernels::KvType::default_for(gpu.features.shader_f16));
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
        let speedups: Vec<serde_json::Value> = speedups
            .iter()
            .map(|r| {
                let (mean, sd) = r.mean_sd();
                serde_json::json!({
                    "test": r.test, "repetitions": r.samples.len(), "speedup": mean,
                    "stddev": sd, "samples": r.samples,
                })
            })
            .collect();
        let out = serde_json::json!({
            "model": name.trim(), "path": path.display().to_string(),
            "size_bytes": size, "params": params, "backend": backend, "adapter": adapter,
            "batch": opts.batch, "parallel": max_par, "parallel_tests": pars,
            "tests": tests, "speedups": speedups, "kv_type": kv_type.name(),
            "shared_prefix": shared.as_ref().map(SharedPrefix::json),
            "cpu_spin": crate::gpu::spin::describe(),
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
    if !speedups.is_empty() {
        println!("\n| batched speedup (total t/s, paired by repetition) | ratio |");
        println!("| --- | ---: |");
        for r in &speedups {
            let (mean, sd) = r.mean_sd();
            println!("| {} | {mean:.2} ± {sd:.2} |", r.test);
        }
    }
    println!("\nKV cache: {kv_type}, batch {}", opts.batch);
    if let Some(line) = super::cpu_spin_line() {
        println!("{line}");
    }
    if let Some(s) = &shared {
        println!();
        println!("{}", s.describe());
    }
    Ok(())
}

/// Tokens of its own each sequence adds after the shared prompt.
const SUFFIX: usize = 8;

/// KV pages of sequences sharing a prompt prefix.
struct SharedPrefix {
    prefix: usize,
    sequences: usize,
    page_size: usize,
    generated: usize,
    /// Pages one sequence holds after its prompt, and after generating.
    one: [usize; 2],
    /// Pages all sequences hold together, at the same two points.
    all: [usize; 2],
    /// Prompt positions computed in all, and taken from the prefix cache.
    computed: usize,
    adopted: usize,
    prompt_rate: f64,
}

impl SharedPrefix {
    fn ratio(&self, i: usize) -> f64 {
        self.all[i] as f64 / self.one[i].max(1) as f64
    }

    fn describe(&self) -> String {
        format!(
            "shared prefix: {} sequences with a {}-token prompt in common (+{SUFFIX} of their own), \
             pages of {}: one holds {} KV pages after its prompt and {} after {} tokens; all \
             together hold {} ({:.2}x one) and {} ({:.2}x); {} prompt positions computed, {} \
             taken from the prefix cache",
            self.sequences,
            self.prefix,
            self.page_size,
            self.one[0],
            self.one[1],
            self.generated,
            self.all[0],
            self.ratio(0),
            self.all[1],
            self.ratio(1),
            self.computed,
            self.adopted
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "prefix_tokens": self.prefix, "own_tokens": SUFFIX, "sequences": self.sequences,
            "page_size": self.page_size, "generated": self.generated,
            "pages_one": {"after_prompt": self.one[0], "after_generation": self.one[1]},
            "pages_all": {"after_prompt": self.all[0], "after_generation": self.all[1]},
            "ratio_after_prompt": self.ratio(0), "ratio_after_generation": self.ratio(1),
            "prompt_positions_computed": self.computed,
            "prompt_positions_cached": self.adopted,
            "prompt_tokens_per_second": self.prompt_rate,
        })
    }
}

/// `par` sequences whose prompts share their first `prefix` tokens: the first computes
/// its prompt and publishes its pages, the others adopt the cached pages (the page where
/// the shared prefix ends copied) and compute the rest; then all generate `gen` tokens
/// in batched steps.
fn shared_prefix(
    m: &mut Model,
    par: usize,
    prefix: usize,
    gen: usize,
) -> anyhow::Result<SharedPrefix> {
    empty_slots(m, par)?;
    let vocab = m.cfg.vocab as u64;
    let prompt = |s: usize| -> Vec<u32> {
        (0..(prefix + SUFFIX) as u64)
            .map(|i| {
                let salt = if i < prefix as u64 {
                    0
                } else {
                    7 * s as u64 + 1
                };
                (1 + (i * 104_729 + salt * 15_485_863) % (vocab - 1)) as u32
            })
            .collect()
    };
    let t = Instant::now();
    let (mut computed, mut adopted) = (0, 0);
    for s in 0..par {
        let p = prompt(s);
        m.set_slot(s)?;
        let n = m.share_prefix(&p);
        m.forward(&p[n..])?;
        m.publish_prefix(&p);
        computed += p.len() - n;
        adopted += n;
    }
    pollster::block_on(m.argmax())?;
    let prompt_rate = (par * (prefix + SUFFIX)) as f64 / t.elapsed().as_secs_f64();
    let after_prompt = (m.pages_held_by(0), m.kv_pages().held);
    let mut next: Vec<u32> = (1..=par as u32).collect();
    for _ in 0..gen {
        let rows: Vec<(usize, u32)> = next.iter().copied().enumerate().collect();
        next = m.greedy_batch(&rows)?;
    }
    let s = SharedPrefix {
        prefix,
        sequences: par,
        page_size: m.kv_pages().page_size,
        generated: gen,
        one: [after_prompt.0, m.pages_held_by(0)],
        all: [after_prompt.1, m.kv_pages().held],
        computed,
        adopted,
        prompt_rate,
    };
    empty_slots(m, par)?;
    Ok(s)
}

/// Generates `n` tokens greedily from an empty cache and returns the seconds taken.
/// Decoding as `run` and `serve` do it at temperature 0: each step feeds the last argmax
/// on the GPU; where that pays (`feeds_ahead`) it is submitted before the argmax is read
/// back, which is then read while it runs.
fn generate(m: &mut Model, n: usize) -> anyhow::Result<f64> {
    let ahead = m.feeds_ahead();
    m.set_slot(0)?;
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
    let t = Instant::now();
    let mut next: Vec<u32> = (1..=par as u32).collect();
    for _ in 0..n {
        let rows: Vec<(usize, u32)> = next.iter().copied().enumerate().collect();
        next = m.greedy_batch(&rows)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Empties the first `n` sequences of `m`.
fn empty_slots(m: &mut Model, n: usize) -> anyhow::Result<()> {
    for slot in 0..n {
        m.set_slot(slot)?;
        m.reset();
    }
    Ok(())
}

/// The context a test starts from: computed once, then taken from the prefix cache.
struct Depth {
    ctx: Vec<u32>,
    published: bool,
}

impl Depth {
    fn new(ctx: Vec<u32>) -> Self {
        Self {
            ctx,
            published: false,
        }
    }

    /// Empties the first `slots` sequences and puts the context in each; slot 0 is
    /// current afterwards.
    fn enter(&mut self, m: &mut Model, slots: usize) -> anyhow::Result<()> {
        for slot in (0..slots).rev() {
            m.set_slot(slot)?;
            m.reset();
            if self.ctx.is_empty() {
                continue;
            }
            let n = m.share_prefix(&self.ctx);
            m.forward(&self.ctx[n..])?;
            if !self.published {
                m.publish_prefix(&self.ctx);
                self.published = true;
            }
        }
        m.gpu.wait()?;
        Ok(())
    }
}

/// Each of `pars` once to warm up, then `reps` rounds that run each of them once, in
/// order on even rounds and in reverse on odd ones (so a machine whose speed drifts
/// favours none): the samples of each, in `pars`' order.
fn interleaved(
    pars: &[usize],
    reps: usize,
    f: &mut impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    for &par in pars {
        f(par)?;
    }
    let mut samples = vec![Vec::with_capacity(reps); pars.len()];
    for round in 0..reps {
        for k in 0..pars.len() {
            let i = if round % 2 == 0 {
                k
            } else {
                pars.len() - 1 - k
            };
            samples[i].push(f(pars[i])?);
        }
    }
    Ok(samples)
}

/// One warm-up run, then `reps` measured ones.
fn repeat(reps: usize, mut f: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<Vec<f64>> {
    f()?;
    (0..reps).map(|_| f()).collect()
}
