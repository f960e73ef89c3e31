//! `hearth profile MODEL -p 64 -n 16`: every dispatch of a prefill of `-p` tokens and of
//! `-n` decode steps timed on the GPU, summarized per kernel with bandwidth against the
//! adapter's measured peak; `--backend all` profiles every adapter and compares them.
//! The model runs once unprofiled first (pipelines warm, caches touched).

use super::load::{open_gguf, resolve_model};
use super::GpuArgs;
use crate::gguf::GgufFile;
use crate::gpu::{list_adapters, Gpu, GpuOptions};
use crate::graph::{LoadOptions, Model};
use crate::model::ModelConfig;
use crate::profile::{self, ProfileOptions, Run};
use std::path::{Path, PathBuf};

/// Arguments of `hearth profile`.
#[derive(clap::Args)]
pub struct ProfileArgs {
    /// A GGUF file, a store name (gemma3:270m-base) or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// Prompt tokens (the prefill phase; 0 skips it)
    #[arg(short = 'p', long = "n-prompt", default_value_t = 64)]
    n_prompt: usize,
    /// Decode steps (the decode phase; 0 skips it)
    #[arg(short = 'n', long = "n-gen", default_value_t = 16)]
    n_gen: usize,
    /// Prompt tokens per prefill chunk
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// KV cache element type: f32, f16 or q8_0 (default: f16 where the GPU has
    /// shader-f16, else f32)
    #[arg(long, value_parser = crate::kernels::KvType::parse)]
    kv_type: Option<crate::kernels::KvType>,
    /// Output: table or json
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
    /// Write a Chrome trace (Perfetto, chrome://tracing) with one event per dispatch
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write an SVG chart of the time per kernel (per backend)
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Skip the bandwidth probe (no % of peak, no floor)
    #[arg(long)]
    no_peak: bool,
    /// Sequences per decode step: above 1, the decode phase profiles batched steps that
    /// advance this many sequences at once
    #[arg(long, default_value_t = 1)]
    parallel: usize,
}

/// Profiles on the chosen adapter (or on every one) and prints the report.
pub fn run(args: &ProfileArgs, gpu_args: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    if !(1..=crate::kernels::MAX_ROWS).contains(&args.parallel) {
        anyhow::bail!(
            "--parallel {}: expected 1 to {} sequences",
            args.parallel,
            crate::kernels::MAX_ROWS
        );
    }
    if !matches!(args.output.as_str(), "table" | "json") {
        anyhow::bail!("-o {}: expected table or json", args.output);
    }
    if args.n_prompt + args.n_gen == 0 {
        anyhow::bail!("-p 0 -n 0: nothing to profile");
    }
    let path = resolve_model(&args.model, models)?;
    let f = open_gguf(&path)?;
    let cfg = ModelConfig::from_gguf(&f)?;
    if args.n_prompt + args.n_gen.max(2) + 1 > cfg.context {
        anyhow::bail!(
            "-p {} -n {} exceeds the model's context of {}",
            args.n_prompt,
            args.n_gen,
            cfg.context
        );
    }
    let all = gpu_args
        .backend
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("all"));
    let mut runs = Vec::new();
    if all {
        let adapters = pollster::block_on(list_adapters(None));
        if adapters.is_empty() {
            anyhow::bail!("no GPU adapter found");
        }
        for (_, s) in &adapters {
            let mut opts = GpuOptions {
                adapter: Some(s.index),
                ..GpuOptions::default()
            };
            opts.coop_from_env();
            let name = crate::gpu::describe_info(&s.info);
            match profile_on(&opts, &f, &cfg, args) {
                Ok(r) => runs.push(r),
                Err(e) => eprintln!("hearth: skipping adapter [{}] {name}: {e:#}", s.index),
            }
        }
        if runs.is_empty() {
            anyhow::bail!("no adapter could run the model");
        }
    } else {
        runs.push(profile_on(&gpu_args.options()?, &f, &cfg, args)?);
    }
    if args.output == "json" {
        let mut out = profile::json(&runs);
        if let Some(o) = out.as_object_mut() {
            o.insert("cpu_spin".into(), crate::gpu::spin::describe().into());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("model: {}", path.display());
        println!(
            "prompt {} tokens (chunks of {}), {} decode steps",
            args.n_prompt, args.batch, args.n_gen
        );
        for r in &runs {
            println!();
            print!("{}", profile::table(r));
        }
        if runs.len() > 1 {
            print!("{}", profile::side_by_side(&runs));
        }
        if let Some(line) = super::cpu_spin_line() {
            println!("\n{line}");
        }
    }
    if let Some(p) = &args.trace {
        let t = profile::chrome_trace(&runs);
        std::fs::write(p, serde_json::to_vec(&t)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        eprintln!("trace written to {}", p.display());
    }
    if let Some(p) = &args.chart {
        std::fs::write(p, profile::svg(&runs))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        eprintln!("chart written to {}", p.display());
    }
    Ok(())
}

/// Loads the model on the adapter `opts` selects and profiles it.
fn profile_on(
    opts: &GpuOptions,
    f: &GgufFile,
    cfg: &ModelConfig,
    args: &ProfileArgs,
) -> anyhow::Result<Run> {
    let gpu = Gpu::new_blocking(opts)?;
    let load = LoadOptions {
        // The warm-up decodes two tokens after the prompt.
        context: args.n_prompt + args.n_gen.max(2) + 1,
        batch: args.batch.max(1),
        all_logits: false,
        sequences: args.parallel,
        kv_size: None,
        kv_type: args.kv_type,
    };
    let mut model = Model::load(gpu.clone(), f, &load)?;
    let vocab = cfg.vocab as u64;
    // Ids spread over the vocabulary, fixed so runs compare (as in `hearth bench`).
    let prompt: Vec<u32> = (0..args.n_prompt as u64)
        .map(|i| (1 + i * 7919 % (vocab - 1).max(1)) as u32)
        .collect();
    let opts = ProfileOptions {
        prompt,
        n_gen: args.n_gen,
        peak: !args.no_peak,
        parallel: args.parallel,
    };
    Ok(pollster::block_on(profile::profile_model(
        &mut model, &opts,
    ))?)
}
