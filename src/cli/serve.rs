//! `hearth serve`: the HTTP server (see `crate::server`) with its settings as flags.

use super::GpuArgs;
use crate::server::{SchedConfig, ServeConfig};
use crate::store::{External, Store};
use std::path::Path;

/// Arguments of `hearth serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0 exposes the server to the network)
    #[arg(long, default_value = "127.0.0.1", env = "HEARTH_HOST")]
    host: String,
    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, default_value_t = 11434, env = "HEARTH_PORT")]
    port: u16,
    /// Requests per model generating at the same time, decoded together in batched steps
    /// (each up to --ctx tokens, in KV pages from one pool)
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Requests per model that may wait for a slot; beyond that the answer is 503
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// How long an idle model stays loaded: 5m, 1h, 30s, 0 (unload at once), -1 (forever)
    #[arg(long, default_value = "5m", allow_hyphen_values = true)]
    keep_alive: String,
    /// Require `Authorization: Bearer KEY` on every route but /health
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Allow browsers on this origin (or *) to call the API; CORS is off without it
    #[arg(long)]
    cors_origin: Option<String>,
    /// Most tokens one request's context may hold
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// KV cache positions all running requests share, in pages (default: --parallel x
    /// --ctx, so every request can reach --ctx); less saves memory, and a request that
    /// finds no free page ends with a "KV cache is full" error
    #[arg(long)]
    kv_size: Option<usize>,
    /// KV cache element type: f32, f16 or q8_0 (default: f16 where the GPU has
    /// shader-f16, else f32); q8_0 takes about half of f16's memory
    #[arg(long, value_parser = crate::kernels::KvType::parse)]
    kv_type: Option<crate::kernels::KvType>,
    /// Prompt tokens per prefill pass
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// A Jinja chat template file that replaces every served model's own
    #[arg(long)]
    template: Option<std::path::PathBuf>,
}

/// `hearth serve`.
pub fn run(args: &ServeArgs, gpu: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let keep_alive = crate::server::parse_duration(&args.keep_alive).ok_or_else(|| {
        anyhow::anyhow!(
            "--keep-alive {:?}: expected a duration such as 5m, 30s or -1",
            args.keep_alive
        )
    })?;
    if args.parallel == 0 {
        anyhow::bail!("--parallel must be at least 1");
    }
    if args.kv_size == Some(0) {
        anyhow::bail!("--kv-size must be at least 1");
    }
    if args.ctx == 0 {
        anyhow::bail!("--ctx must be at least 1");
    }
    let store_root = match models {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Store::default_root()?,
    };
    let config = ServeConfig {
        store_root,
        external: External::from_env(),
        gpu: gpu.options()?,
        sched: SchedConfig {
            parallel: args.parallel,
            queue: args.queue,
            keep_alive,
            context: args.ctx,
            batch: args.batch.max(1),
            kv_size: args.kv_size,
            kv_type: args.kv_type,
            template: args
                .template
                .as_deref()
                .map(super::load::template_file)
                .transpose()?,
        },
        api_key: args.api_key.clone(),
        cors_origin: args.cors_origin.clone(),
        body_limit: args.max_body,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::server::serve(
        config,
        &args.host,
        args.port,
        |addr| {
            // Scripts and tests read this line to find the port.
            println!("hearth listening on http://{addr}");
            if !addr.ip().is_loopback() {
                eprintln!("hearth: warning: listening on {addr}, reachable from the network");
            }
        },
    ))?;
    Ok(())
}
