//! The `hearth` command line: argument parsing and one module per subcommand. Errors are
//! printed as one line on stderr and give a non-zero exit status.

mod bench;
mod devices;
mod embed;
mod info;
mod load;
mod models;
mod profile;
mod pull;
mod run;
mod serve;
mod tokenize;

use crate::gpu::{BackendChoice, GpuOptions};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run large language models on your own GPU.
#[derive(Parser)]
#[command(name = "hearth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Model store directory (default: <data dir>/hearth/models)
    #[arg(long, global = true, env = "HEARTH_MODELS")]
    models: Option<std::path::PathBuf>,
}

/// Adapter choice shared by every command that touches the GPU.
#[derive(clap::Args, Clone)]
pub struct GpuArgs {
    /// Graphics API: vulkan, metal, dx12, gl or webgpu (default: best available; `profile` also takes all)
    #[arg(long, global = true, env = "HEARTH_BACKEND")]
    backend: Option<String>,
    /// Adapter index as listed by `hearth devices`
    #[arg(long, global = true, env = "HEARTH_ADAPTER")]
    adapter: Option<usize>,
}

impl GpuArgs {
    /// The GPU options these arguments select.
    pub fn options(&self) -> anyhow::Result<GpuOptions> {
        let backend = match self.backend.as_deref() {
            Some(b) if !b.is_empty() => Some(BackendChoice::parse(b)?),
            _ => None,
        };
        let mut o = GpuOptions {
            backend,
            adapter: self.adapter,
            ..GpuOptions::default()
        };
        o.coop_from_env();
        Ok(o)
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu can see, with limits and features
    Devices,
    /// Describe a GGUF model: architecture, hyperparameters, tokenizer, tensors, adapter fit
    Info(info::InfoArgs),
    /// Complete a prompt, or chat when no prompt is given
    Run(run::RunArgs),
    /// Print the token ids (and pieces) of a text
    Tokenize(tokenize::TokenizeArgs),
    /// Embed texts: one vector per text (the model's pooling, L2-normalized)
    Embed(embed::EmbedArgs),
    /// Measure prompt processing and generation speed (llama-bench style)
    Bench(bench::BenchArgs),
    /// Time every kernel of a prefill and of decode steps on the GPU, per backend
    Profile(profile::ProfileArgs),
    /// Download a model into the store: gemma3:270m, hf.co/OWNER/REPO[:QUANT] or a URL
    Pull(pull::PullArgs),
    /// Add a local GGUF file to the store under a name
    Import(models::ImportArgs),
    /// List the models in the store
    List,
    /// Describe a model: architecture, parameters, context, quantization, template, license
    Show(models::ShowArgs),
    /// Remove models from the store
    Rm(models::RmArgs),
    /// Give a stored model another name
    Cp(models::CpArgs),
    /// Serve the ollama and OpenAI HTTP APIs (default http://127.0.0.1:11434)
    Serve(serve::ServeArgs),
}

/// The line `hearth bench` and `hearth profile` end their tables with on a CPU adapter:
/// its spinners (`gpu::spin`) move its figures by 5-10% either way, and a short run may
/// straddle one of their trials. None elsewhere.
fn cpu_spin_line() -> Option<String> {
    crate::gpu::spin::describe().map(|s| format!("CPU adapter's spinners: {s}"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal::gles=off"),
    )
    .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Devices => devices::run(&cli.gpu),
        Command::Info(a) => info::run(a, &cli.gpu, cli.models.as_deref()),
        Command::Run(a) => run::run(a, &cli.gpu, cli.models.as_deref()),
        Command::Tokenize(a) => tokenize::run(a, cli.models.as_deref()),
        Command::Embed(a) => embed::run(a, &cli.gpu, cli.models.as_deref()),
        Command::Bench(a) => bench::run(a, &cli.gpu, cli.models.as_deref()),
        Command::Profile(a) => profile::run(a, &cli.gpu, cli.models.as_deref()),
        Command::Pull(a) => pull::run(a, cli.models.as_deref()),
        Command::Import(a) => models::import(a, cli.models.as_deref()),
        Command::List => models::list(cli.models.as_deref()),
        Command::Show(a) => models::show(a, cli.models.as_deref()),
        Command::Rm(a) => models::rm(a, cli.models.as_deref()),
        Command::Cp(a) => models::cp(a, cli.models.as_deref()),
        Command::Serve(a) => serve::run(a, &cli.gpu, cli.models.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("hearth: error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}
