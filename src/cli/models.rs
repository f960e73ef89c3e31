//! `hearth import | list | show | rm | cp`: the local model store from the command line.

use crate::gguf::{GgufFile, Value};
use crate::store::{quantization, External, ModelName, Store};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Opens the store at `--models DIR` / `HEARTH_MODELS`, else the platform default, also
/// finding the models of ollama and the Hugging Face cache unless
/// `HEARTH_NO_EXTERNAL_MODELS` is set.
pub fn open_store(models: Option<&Path>) -> anyhow::Result<Store> {
    let root = match models {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Store::default_root()?,
    };
    Ok(Store::open(root)?.with_external(External::from_env()))
}

/// Arguments of `hearth import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The GGUF file to add
    file: PathBuf,
    /// Name to store it under: family[:tag]
    name: String,
    /// Hard-link the file instead of copying it (falls back to a copy across file systems;
    /// the original must then never be modified in place)
    #[arg(long)]
    link: bool,
}

/// Arguments of `hearth show`.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// A store name, hf.co/OWNER/REPO[:QUANT] that was pulled, or a .gguf path
    model: String,
}

/// Arguments of `hearth rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    /// Names to remove
    #[arg(required = true)]
    names: Vec<String>,
}

/// Arguments of `hearth cp`.
#[derive(clap::Args)]
pub struct CpArgs {
    /// Existing name
    src: String,
    /// New name (replaced if it exists)
    dst: String,
}

/// `hearth import FILE NAME`.
pub fn import(args: &ImportArgs, models: Option<&Path>) -> anyhow::Result<()> {
    ModelName::parse(&args.name)?;
    let store = open_store(models)?;
    let e = store.import(&args.file, &args.name, args.link)?;
    println!("{} {} {}", e.name, e.id, e.path.display());
    Ok(())
}

/// `hearth list`: a table like `ollama list`.
pub fn list(models: Option<&Path>) -> anyhow::Result<()> {
    let store = open_store(models)?;
    let entries = store.list_all()?;
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.id(),
                human(e.size),
                e.quantization.clone(),
                e.origin.label().to_string(),
                ago(e.modified),
            ]
        })
        .collect();
    let header = ["NAME", "ID", "SIZE", "QUANT", "SOURCE", "MODIFIED"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}

/// `hearth show MODEL`.
pub fn show(args: &ShowArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let store = open_store(models)?;
    let path = store.resolve(&args.model)?;
    let f = GgufFile::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let arch = f.architecture().unwrap_or("(none)").to_string();
    let entry = if crate::store::looks_like_path(&args.model) {
        None
    } else {
        crate::store::pull::name_for_spec(&args.model)
            .ok()
            .and_then(|n| store.get(&n).ok().flatten())
    };
    let params: u64 = f.tensors.iter().map(|t| t.n_elements()).sum();
    let get_u = |k: &str| f.get(k).and_then(Value::as_integer);
    println!("  {:<18}{}", "architecture", arch);
    println!("  {:<18}{}", "parameters", human_count(params));
    if let Some(c) = get_u(&format!("{arch}.context_length")) {
        println!("  {:<18}{c}", "context length");
    }
    if let Some(c) = get_u(&format!("{arch}.embedding_length")) {
        println!("  {:<18}{c}", "embedding length");
    }
    println!("  {:<18}{}", "quantization", quantization(&f));
    let template = match crate::tokenizer::ChatTemplate::for_model(&f) {
        Ok(Some(t)) => t.describe(),
        Ok(None) => "none (neither in the file nor built in for this architecture)".into(),
        Err(e) => format!("unusable: {e}"),
    };
    println!("  {:<18}{template}", "chat template");
    if let Ok(Some(l)) = f.get_str("general.license") {
        println!("  {:<18}{l}", "license");
    }
    println!("  {:<18}{}", "size", human(f.file_size()));
    if let Some(m) = entry {
        println!("  {:<18}{}", "digest", m.digest);
        println!("  {:<18}{}", "source", m.source);
    }
    let external = if Path::new(&args.model).is_file() {
        None
    } else {
        store.find_external(&args.model)
    };
    if let Some(m) = external {
        if !m.digest.is_empty() {
            println!("  {:<18}sha256:{}", "digest", m.digest);
        }
        println!(
            "  {:<18}{} ({}, read-only)",
            "source",
            m.origin.label(),
            m.location.display()
        );
        if m.has_template {
            println!(
                "  {:<18}present, not used (hearth uses the GGUF's chat template)",
                "ollama template"
            );
        }
        if let Some(p) = &m.params {
            println!(
                "  {:<18}{}",
                "ollama params",
                serde_json::Value::Object(p.clone())
            );
        }
    }
    println!("  {:<18}{}", "file", path.display());
    Ok(())
}

/// `hearth rm NAME…`.
pub fn rm(args: &RmArgs, models: Option<&Path>) -> anyhow::Result<()> {
    // Every name is checked before the store is opened or anything removed.
    let external = External::from_env();
    for n in &args.names {
        if let Err(e) = ModelName::parse(n) {
            // `user/model:tag` is no hearth name, but may be ollama's, which is refused
            // as such.
            return Err(match external.find(n) {
                Some(m) => crate::store::StoreError::ReadOnly(m.read_only_why()).into(),
                None => e.into(),
            });
        }
    }
    let store = open_store(models)?;
    for n in &args.names {
        if let Some(m) = store.find_external(n) {
            return Err(crate::store::StoreError::ReadOnly(m.read_only_why()).into());
        }
    }
    for n in &args.names {
        store.rm(n)?;
        println!("deleted '{}'", ModelName::parse(n)?);
    }
    Ok(())
}

/// `hearth cp SRC DST`.
pub fn cp(args: &CpArgs, models: Option<&Path>) -> anyhow::Result<()> {
    ModelName::parse(&args.src)?;
    ModelName::parse(&args.dst)?;
    let store = open_store(models)?;
    let e = store.cp(&args.src, &args.dst)?;
    println!("copied '{}' to '{}'", ModelName::parse(&args.src)?, e.name);
    Ok(())
}

/// Bytes as `123 MB` / `1.2 GB` (decimal units, like `ollama list`).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} KB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn human_count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}K", x / 1e3)
    } else {
        n.to_string()
    }
}

fn ago(t: SystemTime) -> String {
    let s = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (n, unit) = match s {
        0..60 => return "just now".into(),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        86400..2_592_000 => (s / 86400, "day"),
        2_592_000..31_536_000 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}
