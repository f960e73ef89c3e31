//! `hearth run MODEL [PROMPT]`: streams a completion to stdout, or opens an interactive
//! chat when no prompt is given (multi-turn on one KV cache; `/clear`, `/bye`, Ctrl-D).

use super::load::{engine, resolve_model, template_file};
use super::GpuArgs;
use crate::constraint::Format;
use crate::engine::{Engine, EngineOptions, Event, GenerateOptions, Prompt, Session, Stats};
use crate::sampling::SamplingParams;
use crate::tokenizer::Message;
use futures::StreamExt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `hearth run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A GGUF file, a store name (gemma3:270m-base) or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// The prompt; without one, an interactive chat starts
    prompt: Option<String>,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Keep only the k most likely tokens (0 = all the GPU returns, 256)
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling threshold (1 = off)
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens below this fraction of the top probability (0 = off)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    min_p: f32,
    /// Penalty on recently seen tokens (1 = off)
    #[arg(long, default_value_t = 1.1, allow_negative_numbers = true)]
    repeat_penalty: f32,
    /// Tokens of history the penalties look at
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Subtracted from the logit of every token seen in the window
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    presence_penalty: f32,
    /// Subtracted per occurrence in the window
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    frequency_penalty: f32,
    /// Seed of the sampler (default: from the clock)
    #[arg(long)]
    seed: Option<u64>,
    /// Most tokens to generate (-1: until the end token or a full context)
    #[arg(short = 'n', long = "num-predict", default_value_t = -1, allow_negative_numbers = true)]
    num_predict: i64,
    /// Stop at this text (repeatable); it is not printed
    #[arg(long)]
    stop: Vec<String>,
    /// Context size in tokens (KV cache)
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// Prompt tokens per prefill pass
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// KV cache element type: f32, f16 or q8_0 (default: f16 where the GPU has
    /// shader-f16, else f32); q8_0 takes about half of f16's memory
    #[arg(long, value_parser = crate::kernels::KvType::parse)]
    kv_type: Option<crate::kernels::KvType>,
    /// System prompt (chat mode)
    #[arg(long)]
    system: Option<String>,
    /// A Jinja chat template file that replaces the model's
    #[arg(long)]
    template: Option<PathBuf>,
    /// Feed the prompt as is, without the chat template; special-token spellings in it
    /// become those tokens
    #[arg(long)]
    raw: bool,
    /// Print load time, token counts and rates
    #[arg(long)]
    verbose: bool,
    /// Constrain the answer: `json` (one JSON object), or a JSON schema (inline, or a
    /// file holding one)
    #[arg(long)]
    format: Option<String>,
    /// Constrain the answer to a grammar: GBNF (llama.cpp's, start rule `root`) or
    /// llguidance's Lark syntax, inline or a file holding it
    #[arg(long, conflicts_with_all = ["format", "regex"])]
    grammar: Option<String>,
    /// Constrain the answer to match a regular expression (Rust regex syntax)
    #[arg(long, conflicts_with = "format")]
    regex: Option<String>,
}

/// `arg` itself, or the contents of the file it names.
fn inline_or_file(flag: &str, arg: &str) -> anyhow::Result<String> {
    let path = Path::new(arg);
    if !arg.contains('\n') && path.is_file() {
        let meta = std::fs::metadata(path)?;
        if meta.len() > crate::constraint::MAX_GRAMMAR_BYTES as u64 {
            anyhow::bail!(
                "{flag} {arg}: the file is {} bytes; at most {} are accepted",
                meta.len(),
                crate::constraint::MAX_GRAMMAR_BYTES
            );
        }
        return std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{flag} {arg}: {e}"));
    }
    Ok(arg.to_string())
}

impl RunArgs {
    fn generate_options(&self) -> anyhow::Result<GenerateOptions> {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        };
        sampling.validate()?;
        let max_tokens = match self.num_predict {
            n if n < -1 => anyhow::bail!("--num-predict {n}: must be -1 (no limit) or >= 0"),
            -1 => None,
            n => Some(n as usize),
        };
        let format = match (&self.format, &self.grammar, &self.regex) {
            (Some(f), _, _) if f.is_empty() => None,
            (Some(f), _, _) if f == "json" => Some(Format::JsonObject),
            (Some(f), _, _) => {
                let text = inline_or_file("--format", f)?;
                let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "--format {f}: not `json`, a JSON schema or a file holding one ({e})"
                    )
                })?;
                Some(Format::schema(schema))
            }
            (None, Some(g), _) => Some(Format::grammar(&inline_or_file("--grammar", g)?)),
            (None, None, Some(r)) => Some(Format::Regex(r.clone())),
            (None, None, None) => None,
        };
        Ok(GenerateOptions {
            sampling,
            max_tokens,
            stop: self.stop.clone(),
            format,
        })
    }
}

/// Loads the model, then completes the prompt or runs the chat loop.
pub fn run(args: &RunArgs, gpu_args: &GpuArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let path = resolve_model(&args.model, models)?;
    let gen = args.generate_options()?;
    let template = args.template.as_deref().map(template_file).transpose()?;
    let engine = engine(
        &path,
        gpu_args,
        EngineOptions {
            context: args.ctx,
            batch: args.batch,
            template,
            kv_type: args.kv_type,
        },
    )?;
    if args.verbose {
        describe(&engine, args.raw);
    }
    let mut session = engine.session()?;
    match &args.prompt {
        Some(p) => {
            let prompt = if args.raw {
                Prompt::Raw(p.clone())
            } else {
                Prompt::Chat(conversation(args, p))
            };
            let stats = stream(&mut session, &prompt, &gen)?;
            if args.verbose {
                report(&engine, &stats);
            }
            Ok(())
        }
        None => chat(&engine, &mut session, args, &gen),
    }
}

/// The system prompt (if any) and one user message.
fn conversation(args: &RunArgs, user: &str) -> Vec<Message> {
    let mut m = Vec::new();
    if let Some(s) = &args.system {
        m.push(Message::new("system", s.clone()));
    }
    m.push(Message::new("user", user));
    m
}

/// Generates and prints as tokens arrive; returns the text and statistics.
fn stream(session: &mut Session, prompt: &Prompt, gen: &GenerateOptions) -> anyhow::Result<Stats> {
    Ok(stream_text(session, prompt, gen)?.1)
}

fn stream_text(
    session: &mut Session,
    prompt: &Prompt,
    gen: &GenerateOptions,
) -> anyhow::Result<(String, Stats)> {
    let mut out = std::io::stdout().lock();
    let mut all = String::new();
    let mut events = Box::pin(session.generate(prompt, gen.clone())?);
    while let Some(ev) = pollster::block_on(events.next()) {
        let (text, stats) = match ev? {
            Event::Token { text, .. } => (text, None),
            Event::Done { text, stats } => (text, Some(stats)),
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
        all.push_str(&text);
        if let Some(stats) = stats {
            if !all.ends_with('\n') {
                writeln!(out)?;
            }
            return Ok((all, stats));
        }
    }
    anyhow::bail!("generation ended without a final event")
}

/// The interactive loop: each line is a user turn; the whole conversation is rendered
/// every turn and the session reuses the cached prefix.
fn chat(
    engine: &Engine,
    session: &mut Session,
    args: &RunArgs,
    gen: &GenerateOptions,
) -> anyhow::Result<()> {
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!("Chat with the model. /clear forgets the conversation, /bye or Ctrl-D leaves.");
        if engine.template().is_none() && !args.raw {
            eprintln!("note: no chat template; each line is completed as raw text");
        }
    }
    let mut messages = conversation(args, "");
    messages.pop();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if tty {
            eprint!(">>> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else {
            break;
        };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/bye" => break,
            "/clear" => {
                messages.truncate(usize::from(args.system.is_some()));
                session.reset();
                if tty {
                    eprintln!("Cleared the conversation.");
                }
                continue;
            }
            _ => {}
        }
        if args.raw || engine.template().is_none() {
            let stats = stream(session, &Prompt::Raw(line), gen)?;
            if args.verbose {
                report(engine, &stats);
            }
            continue;
        }
        messages.push(Message::new("user", line));
        let (reply, stats) = stream_text(session, &Prompt::Chat(messages.clone()), gen)?;
        messages.push(Message::new("assistant", reply.trim_end().to_string()));
        if args.verbose {
            report(engine, &stats);
        }
    }
    Ok(())
}

/// What `--verbose` says before generating: the adapter, the model and the template.
fn describe(engine: &Engine, raw: bool) {
    let info = engine.info();
    eprintln!("adapter:              {}", engine.gpu().info.name);
    eprintln!(
        "model:                {} ({}, {:.0}M params, {})",
        info.name.as_deref().unwrap_or(&info.arch),
        info.arch,
        info.params as f64 / 1e6,
        info.quant
    );
    eprintln!("tokenizer:            {}", engine.tokenizer().describe());
    let template = match (raw, engine.template()) {
        (true, _) => "none (--raw)".to_string(),
        (false, Some(t)) => t.describe(),
        (false, None) => "none".to_string(),
    };
    eprintln!("chat template:        {template}");
}

/// The statistics block of `ollama run --verbose`.
fn report(engine: &Engine, s: &Stats) {
    let load = engine.load_time();
    let total = load + s.prompt_duration + s.generate_duration;
    let evaluated = s.prompt_tokens - s.cached_tokens;
    eprintln!("total duration:       {}", fmt(total));
    eprintln!("load duration:        {}", fmt(load));
    eprintln!(
        "prompt eval count:    {} token(s){}",
        evaluated,
        if s.cached_tokens > 0 {
            format!(" ({} cached)", s.cached_tokens)
        } else {
            String::new()
        }
    );
    eprintln!("prompt eval duration: {}", fmt(s.prompt_duration));
    eprintln!("prompt eval rate:     {:.2} tokens/s", s.prompt_rate());
    eprintln!("eval count:           {} token(s)", s.generated);
    eprintln!("eval duration:        {}", fmt(s.generate_duration));
    eprintln!("eval rate:            {:.2} tokens/s", s.generate_rate());
    if s.masks > 0 {
        eprintln!(
            "constraint masks:     {} in {} ({} per token)",
            s.masks,
            fmt(s.mask_duration),
            fmt(s.mask_duration / s.masks as u32)
        );
    }
    eprintln!("done reason:          {}", s.reason.as_str());
}

fn fmt(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}
