//! `hearth embed MODEL TEXT...`: one embedding per text, as `llama-embedding` computes it
//! (the model's pooling, L2-normalized), printed one vector per line or as JSON.

use super::load::{engine, resolve_model};
use super::GpuArgs;
use crate::engine::{EmbedOptions, EngineOptions};
use crate::model::Pooling;
use std::path::Path;

/// Arguments of `hearth embed`.
#[derive(clap::Args)]
pub struct EmbedArgs {
    /// A GGUF file, a store name or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// Texts to embed (one vector each)
    #[arg(required = true)]
    texts: Vec<String>,
    /// Print the raw pooled vectors, not L2-normalized
    #[arg(long)]
    no_normalize: bool,
    /// Refuse texts longer than the model takes instead of cutting them
    #[arg(long)]
    no_truncate: bool,
    /// Keep only the first N dimensions (normalized again)
    #[arg(long)]
    dimensions: Option<usize>,
    /// Pooling: mean, cls or last (default: the model's, else mean)
    #[arg(long)]
    pooling: Option<String>,
    /// Context (tokens) of the embedding session
    #[arg(long, default_value_t = 2048)]
    ctx_size: usize,
    /// Tokens per pass; a non-causal model (BERT-like) takes each text in one pass
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Print {"embeddings": [[...]], "prompt_tokens": N} instead of one line per text
    #[arg(long)]
    json: bool,
}

/// Embeds every text and prints the vectors.
pub fn run(args: &EmbedArgs, gpu: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let pooling = match args.pooling.as_deref() {
        None => None,
        Some(p) => Some(
            Pooling::from_name(p)
                .ok_or_else(|| anyhow::anyhow!("--pooling {p}: expected mean, cls or last"))?,
        ),
    };
    let path = resolve_model(&args.model, models)?;
    let opts = EngineOptions {
        context: args.ctx_size,
        batch: args.batch_size,
        ..EngineOptions::default()
    };
    let engine = engine(&path, gpu, opts)?;
    let opts = EmbedOptions {
        truncate: !args.no_truncate,
        normalize: !args.no_normalize,
        dimensions: args.dimensions,
        pooling,
    };
    let out = pollster::block_on(engine.embed(&args.texts, &opts))?;
    if args.json {
        let v = serde_json::json!({"embeddings": out.vectors, "prompt_tokens": out.prompt_tokens});
        println!("{v}");
    } else {
        for v in &out.vectors {
            let line: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            println!("{}", line.join(" "));
        }
    }
    Ok(())
}
