//! `hearth pull SPEC`: download a model into the store, with a progress bar on a
//! terminal and plain lines otherwise.

use super::models::open_store;
use crate::store::pull::{pull, Progress, PullOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;

/// Arguments of `hearth pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// A built-in name (gemma3:270m, qwen3:0.6b, llama3.2:1b, smollm2:135m),
    /// hf.co/OWNER/REPO[:QUANT], or an https:// URL of a .gguf file
    spec: String,
    /// Store the model under this name instead of the derived one
    #[arg(long)]
    name: Option<String>,
}

/// Pulls the model and prints where it went.
pub fn run(args: &PullArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let mut opts = PullOptions::from_env()?;
    opts.name = args.name.clone();
    // Check the spec and name before touching the store.
    crate::store::pull::parse_spec(&args.spec)?;
    if let Some(n) = &opts.name {
        crate::store::ModelName::parse(n)?;
    }
    let store = open_store(models)?;
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bar(None))
    } else {
        Box::new(Lines::default())
    };
    let out = pull(&store, &args.spec, &opts, progress.as_mut())?;
    let e = &out.entry;
    let how = if out.already_present {
        "already in the store".to_string()
    } else if out.resumed_from > 0 {
        format!(
            "received {} (resumed after {})",
            super::models::human(out.transferred),
            super::models::human(out.resumed_from)
        )
    } else {
        format!("received {}", super::models::human(out.transferred))
    };
    let check = if out.verified {
        "sha256 verified"
    } else {
        "sha256 recorded (no published hash)"
    };
    eprintln!("{how}; {check}");
    println!("{} {} {}", e.name, e.id, e.path.display());
    Ok(())
}

/// A progress bar: bytes, rate, ETA.
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, file: &str, total: Option<u64>, resumed: u64) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(file.to_string());
        bar.set_position(resumed);
        bar.reset_eta();
        self.0 = Some(bar);
    }
    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish();
        }
    }
    fn message(&mut self, msg: &str) {
        match &self.0 {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}

/// Plain progress lines (for logs and pipes): one per tenth of the file, or per 64 MiB
/// when the size is unknown.
#[derive(Default)]
struct Lines {
    total: Option<u64>,
    done: u64,
    next: u64,
}

impl Lines {
    fn step(&self) -> u64 {
        self.total.map(|t| (t / 10).max(1)).unwrap_or(64 << 20)
    }
}

impl Progress for Lines {
    fn start(&mut self, file: &str, total: Option<u64>, resumed: u64) {
        self.total = total;
        self.done = resumed;
        self.next = resumed + self.step();
        let size = total
            .map(super::models::human)
            .unwrap_or_else(|| "unknown size".into());
        eprintln!("downloading {file} ({size})");
    }
    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.done >= self.next {
            self.next = self.done + self.step();
            match self.total {
                Some(t) if t > 0 => eprintln!(
                    "  {} / {} ({:.0}%)",
                    super::models::human(self.done),
                    super::models::human(t),
                    self.done as f64 * 100.0 / t as f64
                ),
                _ => eprintln!("  {}", super::models::human(self.done)),
            }
        }
    }
    fn finish(&mut self) {}
    fn message(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
}
