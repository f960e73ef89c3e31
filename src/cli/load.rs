//! Opening a model for the commands that run it: the GGUF file, the adapter, and the
//! engine, with a progress bar on a terminal while the weights upload.

use super::GpuArgs;
use crate::engine::{Engine, EngineOptions};
use crate::gguf::GgufFile;
use crate::gpu::Gpu;
use crate::tokenizer::{ChatTemplate, TemplateOrigin};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file a MODEL argument names: a path to a `.gguf` file, a store name
/// (`gemma3:270m-base`), a pulled `hf.co/OWNER/REPO[:QUANT]`, or a model of ollama's
/// store or the Hugging Face cache.
pub fn resolve_model(spec: &str, models: Option<&Path>) -> anyhow::Result<PathBuf> {
    if crate::store::looks_like_path(spec) {
        let p = PathBuf::from(spec);
        if p.is_file() {
            return Ok(p);
        }
        // `user/model:tag` may be an ollama name; a path otherwise.
        let found = crate::store::External::from_env().find(spec);
        return found
            .map(|m| m.path)
            .ok_or_else(|| anyhow::anyhow!("{spec}: no such model file"));
    }
    Ok(super::models::open_store(models)?.resolve(spec)?)
}

/// Opens and parses `path`, naming the file in any error.
pub fn open_gguf(path: &Path) -> anyhow::Result<GgufFile> {
    GgufFile::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads a chat template file given with `--template`.
pub fn template_file(path: &Path) -> anyhow::Result<Arc<ChatTemplate>> {
    let src = std::fs::read_to_string(path)
        .with_context(|| format!("reading template {}", path.display()))?;
    let t = ChatTemplate::new(&src, TemplateOrigin::File(path.display().to_string()))
        .with_context(|| format!("template {}", path.display()))?;
    Ok(Arc::new(t))
}

/// Opens the adapter and loads `path` into an engine. The bar draws only on a terminal.
pub fn engine(path: &Path, gpu_args: &GpuArgs, opts: EngineOptions) -> anyhow::Result<Engine> {
    let f = open_gguf(path)?;
    let gpu = Gpu::new_blocking(&gpu_args.options()?)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} layers")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let engine = Engine::load(gpu, &f, opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    engine.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
