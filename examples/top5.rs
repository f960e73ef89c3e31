//! Loads a GGUF model on the GPU, runs a prompt given as token ids, and prints the five
//! most likely next tokens with their raw pieces from the GGUF vocabulary.
//!
//! `cargo run --release --example top5 -- MODEL.gguf 2 818 5279 529 7001 563`
//! (Gemma 3: `<bos>The capital of France is`)

use anyhow::{bail, Context};
use hearth::gguf::GgufFile;
use hearth::gpu::{Gpu, GpuOptions};
use hearth::graph::{LoadOptions, Model};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context("usage: top5 MODEL.gguf ID...")?;
    let ids: Vec<u32> = args
        .map(|a| {
            a.parse()
                .with_context(|| format!("'{a}' is not a token id"))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        bail!("give the prompt as token ids");
    }
    let f = GgufFile::open(&path).with_context(|| path.clone())?;
    let gpu = Gpu::new_blocking(&GpuOptions::from_env()?)?;
    let t0 = std::time::Instant::now();
    let mut model = Model::load(
        gpu.clone(),
        &f,
        &LoadOptions {
            context: 1024,
            ..Default::default()
        },
    )?;
    eprintln!(
        "loaded on {} in {:.2}s: {}",
        gpu.describe(),
        t0.elapsed().as_secs_f64(),
        model.memory.describe()
    );
    let t1 = std::time::Instant::now();
    model.forward(&ids)?;
    let logits = pollster::block_on(model.logits())?;
    eprintln!(
        "{} prompt tokens in {:.1} ms",
        ids.len(),
        t1.elapsed().as_secs_f64() * 1e3
    );
    let vocab = f.get_str_array("tokenizer.ggml.tokens")?.unwrap_or(&[]);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    for &id in &order[..5] {
        let piece = vocab.get(id).map(String::as_str).unwrap_or("?");
        println!("{id:>8}  {:>9.4}  {piece:?}", logits[id]);
    }
    Ok(())
}
