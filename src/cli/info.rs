//! `hearth info MODEL.gguf`: what a model file holds and how it fits the chosen adapter.

use super::GpuArgs;
use crate::gguf::GgufFile;
use crate::gpu::{gpu_layout, shard_rows, Gpu};
use crate::quant::GgmlType;
use std::collections::BTreeMap;
use std::path::Path;

/// Arguments of `hearth info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// A GGUF file, a store name (gemma3:270m-base) or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// Print every metadata key, not only the architecture's hyperparameters
    #[arg(long)]
    all: bool,
    /// Context length (KV-cache tokens) to plan GPU memory for
    #[arg(long, default_value_t = 4096)]
    context: usize,
    /// Prefill batch size to plan GPU memory for
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// KV cache element type: f32, f16 or q8_0 (default: f16 where the GPU has
    /// shader-f16, else f32); q8_0 takes about half of f16's memory
    #[arg(long, value_parser = crate::kernels::KvType::parse)]
    kv_type: Option<crate::kernels::KvType>,
}

/// Parses the file, prints its description, then the adapter and its fit.
pub fn run(args: &InfoArgs, gpu_args: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let path = &super::load::resolve_model(&args.model, models)?;
    let f = GgufFile::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let arch = f.architecture().unwrap_or("(none)").to_string();
    println!(
        "file:          {} ({}, GGUF v{}, alignment {})",
        path.display(),
        human(f.file_size()),
        f.version,
        f.alignment
    );
    println!("architecture:  {arch}");
    for key in [
        "general.name",
        "general.type",
        "general.size_label",
        "general.license",
    ] {
        if let Some(v) = f.get(key) {
            println!(
                "{:<14} {v}",
                format!("{}:", key.trim_start_matches("general."))
            );
        }
    }
    if let Ok(Some(ft)) = f.get_u32("general.file_type") {
        println!("file type:     {ft} ({})", crate::model::file_type_name(ft));
    }
    let params: u64 = f.tensors.iter().map(|t| t.n_elements()).sum();
    match crate::model::ModelConfig::from_gguf(&f)
        .ok()
        .filter(|c| c.is_moe())
    {
        Some(c) => {
            // A token reads n_used of n_expert experts' weights (and biases).
            let experts: u64 = f
                .tensors
                .iter()
                .filter(|t| t.name.contains("_exps."))
                .map(|t| t.n_elements())
                .sum();
            let idle = experts / c.n_expert as u64 * (c.n_expert - c.n_expert_used) as u64;
            println!(
                "parameters:    {:.1} M, {:.1} M active per token ({} of {} experts)",
                params as f64 / 1e6,
                (params - idle) as f64 / 1e6,
                c.n_expert_used,
                c.n_expert
            );
        }
        None => println!("parameters:    {:.1} M", params as f64 / 1e6),
    }

    println!("\nhyperparameters:");
    let prefix = format!("{arch}.");
    for (k, v) in f.metadata() {
        let show = k.starts_with(&prefix) || (args.all && !k.starts_with("tokenizer."));
        if show {
            println!("  {k:<44} {v}");
        }
    }

    println!("\ntokenizer:");
    let model = f
        .get_str("tokenizer.ggml.model")
        .ok()
        .flatten()
        .unwrap_or("(none)");
    let kind = match model {
        "llama" => "SentencePiece-style (scores, byte fallback)",
        "gpt2" => "GPT-2-style BPE (merges)",
        "bert" => "WordPiece",
        "t5" => "Unigram (SentencePiece scores, precompiled normalizer)",
        _ => "unknown",
    };
    println!("  model          {model}: {kind}");
    if let Ok(Some(pre)) = f.get_str("tokenizer.ggml.pre") {
        println!("  pre-tokenizer  {pre}");
    }
    if let Ok(Some(tokens)) = f.get_str_array("tokenizer.ggml.tokens") {
        println!("  vocabulary     {} tokens", tokens.len());
    }
    for (label, key) in [
        ("bos id", "tokenizer.ggml.bos_token_id"),
        ("eos id", "tokenizer.ggml.eos_token_id"),
    ] {
        if let Ok(Some(id)) = f.get_u32(key) {
            println!("  {label:<14} {id}");
        }
    }
    for (label, key) in [
        ("add bos", "tokenizer.ggml.add_bos_token"),
        ("add eos", "tokenizer.ggml.add_eos_token"),
    ] {
        if let Ok(Some(b)) = f.get_bool(key) {
            println!("  {label:<14} {b}");
        }
    }
    let template = match crate::tokenizer::ChatTemplate::for_model(&f) {
        Ok(Some(t)) => t.describe(),
        Ok(None) => "none (neither in the file nor built in for this architecture)".into(),
        Err(e) => format!("unusable: {e}"),
    };
    println!("  chat template  {template}");
    if args.all {
        for (k, v) in f
            .metadata()
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
        {
            println!("  {k:<44} {v}");
        }
    }

    println!("\ntensors: {}", f.tensors.len());
    println!(
        "  {:<40} {:<7} {:<20} {:>12}",
        "name", "type", "shape", "bytes"
    );
    let mut totals: BTreeMap<GgmlType, (usize, u64, u64)> = BTreeMap::new();
    for t in &f.tensors {
        let shape = format!("{:?}", t.dims);
        println!(
            "  {:<40} {:<7} {:<20} {:>12}",
            t.name,
            t.ty.name(),
            shape,
            t.n_bytes
        );
        let e = totals.entry(t.ty).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.n_bytes;
    }
    let all_bytes: u64 = totals.values().map(|v| v.2).sum();
    println!("\ntotals by type:");
    println!(
        "  {:<7} {:>7} {:>14} {:>12} {:>7}",
        "type", "tensors", "elements", "bytes", "share"
    );
    for (ty, (n, elems, bytes)) in &totals {
        let share = 100.0 * *bytes as f64 / all_bytes.max(1) as f64;
        println!(
            "  {:<7} {n:>7} {elems:>14} {bytes:>12} {share:>6.1}%",
            ty.name()
        );
    }
    println!(
        "  {:<7} {:>7} {:>14} {all_bytes:>12} ({})",
        "all",
        f.tensors.len(),
        params,
        human(all_bytes)
    );

    println!("\nadapter:");
    match Gpu::new_blocking(&gpu_args.options()?) {
        Ok(gpu) => {
            println!("  {}", gpu.describe());
            super::devices::print_limits(&gpu.limits, gpu.device.features());
            let mut sharded = 0;
            for t in &f.tensors {
                if gpu_layout(t.ty).is_none() {
                    println!("  {}: type {} has no GPU kernel", t.name, t.ty);
                    continue;
                }
                match shard_rows(t.ty, t.row_len(), t.n_rows(), gpu.max_binding) {
                    Ok(s) if s.len() > 1 => {
                        sharded += 1;
                        println!(
                            "  {} is split into {} row shards (largest binding {})",
                            t.name,
                            s.len(),
                            human(gpu.max_binding)
                        );
                    }
                    Ok(_) => {}
                    Err(e) => println!("  {}: does not fit: {e}", t.name),
                }
            }
            if sharded == 0 {
                println!("  every tensor fits in one binding");
            }
            match crate::model::ModelConfig::from_gguf(&f) {
                Ok(cfg) => {
                    let ctx = args.context.clamp(1, cfg.context);
                    let plan = crate::graph::MemoryPlan::new(
                        &cfg,
                        &f,
                        ctx,
                        args.batch.clamp(1, ctx),
                        false,
                        args.kv_type.unwrap_or(crate::kernels::KvType::default_for(
                            gpu.features.shader_f16,
                        )),
                    );
                    println!("\nGPU memory at context {ctx}:\n  {}", plan.describe());
                    match plan.check(&gpu, &f) {
                        Ok(()) => println!("  fits this adapter's limits"),
                        Err(e) => println!("  does not fit: {e}"),
                    }
                }
                Err(e) => println!("\nmodel: hearth cannot run this file: {e}"),
            }
        }
        Err(e) => println!("  unavailable: {e}"),
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}
