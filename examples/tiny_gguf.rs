//! Writes a tiny random-weight GGUF (the test models of `model::tiny`) to a file, for
//! the browser test and for trying the demo page without a download.
//!
//! `cargo run --example tiny_gguf -- OUT.gguf [gemma3|llama|qwen2|qwen3] [SEED]`

use anyhow::{bail, Context};
use hearth::model::{Arch, TinySpec};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .context("usage: tiny_gguf OUT.gguf [gemma3|llama|qwen2|qwen3] [SEED]")?;
    let arch = match args.next().as_deref().unwrap_or("gemma3") {
        "gemma3" => Arch::Gemma3,
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        other => bail!("unknown architecture '{other}' (gemma3, llama, qwen2 or qwen3)"),
    };
    let mut spec = TinySpec::new(arch);
    if let Some(seed) = args.next() {
        spec.seed = seed
            .parse()
            .with_context(|| format!("seed '{seed}' is not a number"))?;
    }
    let bytes = spec.build();
    std::fs::write(&out, &bytes).with_context(|| format!("writing {out}"))?;
    eprintln!("wrote {out}: {} bytes, {arch:?}", bytes.len());
    Ok(())
}
