//! Greedy generation through the engine, printed as one JSON line with the token ids:
//! the native side of the browser test (`scripts/test-browser.sh`), which asserts that
//! the page produces the same ids for the same model and prompt.
//!
//! `cargo run --example greedy_ids -- MODEL.gguf N "raw prompt" [CONTEXT]`

use anyhow::Context;
use futures::StreamExt;
use hearth::engine::{Engine, EngineOptions, Event, GenerateOptions, Prompt};
use hearth::gguf::GgufFile;
use hearth::gpu::{Gpu, GpuOptions};
use hearth::sampling::SamplingParams;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: greedy_ids MODEL.gguf N PROMPT [CONTEXT]";
    let path = args.next().context(usage)?;
    let n: usize = args.next().context(usage)?.parse().context("N")?;
    let prompt = args.next().context(usage)?;
    let context: usize = match args.next() {
        Some(c) => c.parse().context("CONTEXT")?,
        None => 2048,
    };
    let file = GgufFile::open(&path).with_context(|| path.clone())?;
    let gpu = Gpu::new_blocking(&GpuOptions::from_env()?)?;
    let engine = Engine::load(
        gpu.clone(),
        &file,
        EngineOptions {
            context,
            ..Default::default()
        },
        &mut |_, _| {},
    )?;
    let mut session = engine.session()?;
    let opts = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(n),
        stop: Vec::new(),
        format: None,
    };
    let (ids, text, stats) = pollster::block_on(async {
        let stream = session.generate(&Prompt::Raw(prompt), opts)?;
        futures::pin_mut!(stream);
        let (mut ids, mut text) = (Vec::new(), String::new());
        while let Some(event) = stream.next().await {
            match event? {
                Event::Token { id, text: t, .. } => {
                    ids.push(id);
                    text.push_str(&t);
                }
                Event::Done { text: t, stats } => {
                    text.push_str(&t);
                    return Ok::<_, anyhow::Error>((ids, text, stats));
                }
            }
        }
        anyhow::bail!("the stream ended without Done")
    })?;
    let out = serde_json::json!({
        "adapter": gpu.describe(),
        "ids": ids,
        "text": text,
        "prompt_tokens": stats.prompt_tokens,
        "tokens_per_s": stats.generate_rate(),
        "prompt_tokens_per_s": stats.prompt_rate(),
    });
    println!("{out}");
    Ok(())
}
