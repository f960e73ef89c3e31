//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship their turn format as a Jinja template (`tokenizer.chat_template` in the
//! GGUF) written for Hugging Face transformers, which renders it with Python's Jinja2 in
//! an `ImmutableSandboxedEnvironment` (trim_blocks, lstrip_blocks, loop controls) plus a
//! few globals: `raise_exception`, `strftime_now` and a JSON `tojson`. We render with
//! minijinja configured to match that environment, and sandboxed for untrusted input: no
//! loader (no file access), bounded work (fuel), bounded output, bounded recursion.
//! Anything a template does wrong comes back as a [`TemplateError`], never a panic.
//!
//! A GGUF without a template gets a built-in format for its architecture
//! ([`ChatTemplate::builtin`]), written here from the model makers' documentation.

mod date;
mod python;

use crate::gguf::{GgufError, GgufHeader};
use date::DateTime;
use minijinja::{Environment, ErrorKind, Value};
use std::sync::{Arc, Mutex};

/// One turn of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool` (or whatever else the template understands).
    pub role: String,
    /// The turn's text.
    pub content: String,
    /// The functions an assistant turn called.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` turn: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// For a `tool` turn: the function's name.
    pub name: Option<String>,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// One function call of an assistant turn.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The call's id (OpenAI's `call_…`), echoed by the tool turn that answers it.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// Its arguments: a JSON object (templates see a mapping, as in transformers).
    pub arguments: serde_json::Value,
}

/// Where a chat template came from, for messages and `hearth show`.
#[derive(Clone, Debug, PartialEq)]
pub enum TemplateOrigin {
    /// The GGUF's `tokenizer.chat_template`.
    Gguf,
    /// A format built into hearth, named after the architecture it serves.
    Builtin(&'static str),
    /// A template file the user gave.
    File(String),
}

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template source is not valid Jinja.
    #[error("chat template {origin} does not parse: {message}")]
    Syntax {
        /// Where the template came from.
        origin: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// The template called `raise_exception(message)`: it refuses this conversation.
    #[error("chat template refused the conversation: {0}")]
    Raised(String),
    /// The template failed while rendering (undefined attribute, type error, ...).
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// The template did more work than any real chat template needs.
    #[error("chat template ran out of fuel (more than {0} steps); it is looping or far too slow")]
    OutOfFuel(u64),
    /// The rendered prompt grew past the output limit.
    #[error("chat template output exceeds {0} bytes")]
    OutputTooLarge(usize),
    /// `RenderOptions::date` is not a date we can read.
    #[error("invalid date {0:?}: expected e.g. \"25 Nov 2026\" or \"2026-11-25\"")]
    InvalidDate(String),
    /// Reading the template from the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// The per-render inputs besides the messages.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// End with the header of an assistant turn, so the model writes the reply.
    pub add_generation_prompt: bool,
    /// Text of the BOS token; templates that print it expect the tokenizer not to add one.
    pub bos_token: String,
    /// Text of the EOS token.
    pub eos_token: String,
    /// The date `strftime_now` sees, e.g. "25 Nov 2026" or "2026-11-25"; None = today (UTC).
    pub date: Option<String>,
    /// The `tools` the template sees: a list of OpenAI-style function definitions
    /// (`{"type": "function", "function": {name, description, parameters}}`), or None.
    pub tools: Option<serde_json::Value>,
}

impl Default for RenderOptions {
    /// A generation prompt, empty special tokens, today's date.
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            bos_token: String::new(),
            eos_token: String::new(),
            date: None,
            tools: None,
        }
    }
}

/// Fuel allowed per render, plus [`FUEL_PER_MESSAGE`] per message and
/// [`FUEL_PER_INPUT_BYTE`] per byte of the messages. minijinja charges one fuel per
/// instruction and per 64 bytes of data a render creates (strings, lists, filter
/// input), so fuel bounds both the time and the memory a template can take: 10^6 is
/// about 64 MiB of data and well under a second. The 70 templates of llama.cpp's suite
/// need under 2,000 for a six-message conversation; fuzzing found that the former
/// 2 x 10^7 let a template allocate gigabytes and run for tens of seconds.
pub const FUEL: u64 = 1_000_000;
/// Extra fuel per message in the conversation.
pub const FUEL_PER_MESSAGE: u64 = 10_000;
/// Extra fuel per byte of message content: room to copy each message 64 times.
pub const FUEL_PER_INPUT_BYTE: u64 = 1;
/// The rendered prompt may be this long plus [`OUTPUT_PER_INPUT_BYTE`] times the messages'
/// length.
pub const OUTPUT_LIMIT: usize = 1 << 20;
/// Output allowance per byte of message content (templates may repeat a message).
pub const OUTPUT_PER_INPUT_BYTE: usize = 4;
/// Nesting depth (loops, ifs, macro calls) a template may reach.
pub const RECURSION_LIMIT: usize = 200;

/// The name the template is stored under inside its environment.
const NAME: &str = "chat_template";

/// A parsed chat template, ready to render conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: TemplateOrigin,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Parses `source`; a syntax error is reported now, not at the first render.
    pub fn new(source: &str, origin: TemplateOrigin) -> Result<Self, TemplateError> {
        let mut env = environment();
        env.add_template_owned(NAME, rewrite_tags(source))
            .map_err(|e| TemplateError::Syntax {
                origin: describe_origin(&origin),
                message: message(&e),
            })?;
        Ok(Self {
            env,
            source: source.to_owned(),
            origin,
        })
    }

    /// The GGUF's `tokenizer.chat_template` if present, else the built-in format for its
    /// architecture (`general.architecture`), else None.
    pub fn for_model(h: &GgufHeader) -> Result<Option<Self>, TemplateError> {
        if let Some(src) = h.get_str("tokenizer.chat_template")? {
            return Self::new(src, TemplateOrigin::Gguf).map(Some);
        }
        Ok(match h.get_str("general.architecture")? {
            Some(arch) => Self::builtin(arch),
            None => None,
        })
    }

    /// The built-in turn format for an architecture: Gemma's `<start_of_turn>` turns
    /// ("gemma", "gemma2", "gemma3"), ChatML ("qwen2", "qwen3", "qwen3moe"), Llama 3
    /// headers ("llama"), Phi-3's `<|user|>` turns ("phi3"), Mistral 3's `[INST]`
    /// ("mistral3") or gpt-oss's harmony ("gpt-oss"). None for other architectures.
    pub fn builtin(arch: &str) -> Option<Self> {
        let (name, source) = BUILTINS.iter().find(|(name, _)| *name == arch)?;
        let t = Self::new(source, TemplateOrigin::Builtin(name));
        Some(t.expect("built-in chat templates parse"))
    }

    /// Renders a conversation into prompt text.
    pub fn render(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let now = match &opts.date {
            Some(d) => DateTime::parse(d).ok_or_else(|| TemplateError::InvalidDate(d.clone()))?,
            None => DateTime::now(),
        };
        // The message of `raise_exception`, kept aside so it is told apart from other errors.
        let raised = Arc::new(Mutex::new(None::<String>));
        let raised_in = raised.clone();
        let raise = move |msg: String| -> Result<Value, minijinja::Error> {
            if let Ok(mut slot) = raised_in.lock() {
                *slot = Some(msg.clone());
            }
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        };
        let strftime_now = move |fmt: String| now.strftime(&fmt);

        let tools_bytes = opts.tools.as_ref().map_or(0, |t| t.to_string().len());
        let input_bytes: usize = messages
            .iter()
            .map(|m| m.content.len() + m.role.len() + calls_len(m))
            .sum::<usize>()
            + tools_bytes;
        let limit = OUTPUT_LIMIT.saturating_add(input_bytes.saturating_mul(OUTPUT_PER_INPUT_BYTE));
        let fuel = FUEL
            .saturating_add(FUEL_PER_MESSAGE.saturating_mul(messages.len() as u64))
            .saturating_add(FUEL_PER_INPUT_BYTE.saturating_mul(input_bytes as u64));
        let ctx = dict([
            ("messages", messages.iter().map(message_value).collect()),
            (
                "add_generation_prompt",
                Value::from(opts.add_generation_prompt),
            ),
            ("bos_token", Value::from(opts.bos_token.as_str())),
            ("eos_token", Value::from(opts.eos_token.as_str())),
            (
                "tools",
                opts.tools.as_ref().map_or(Value::from(()), json_value),
            ),
            ("documents", Value::from(())),
            ("raise_exception", Value::from_function(raise)),
            ("strftime_now", Value::from_function(strftime_now)),
        ]);

        // Fuel is an environment setting; a cheap clone (everything inside is shared)
        // lets each render size it to its conversation.
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let tmpl = env
            .get_template(NAME)
            .map_err(|e| TemplateError::Render(message(&e)))?;
        let mut out = LimitedWriter {
            buf: Vec::new(),
            limit,
            overflowed: false,
        };
        let result = tmpl.render_captured_to(ctx, &mut out);
        if out.overflowed {
            return Err(TemplateError::OutputTooLarge(limit));
        }
        if let Err(e) = result {
            if let Some(msg) = raised.lock().ok().and_then(|mut s| s.take()) {
                return Err(TemplateError::Raised(msg));
            }
            return Err(match e.kind() {
                ErrorKind::OutOfFuel => TemplateError::OutOfFuel(fuel),
                _ => TemplateError::Render(message(&e)),
            });
        }
        String::from_utf8(out.buf).map_err(|_| TemplateError::Render("output is not UTF-8".into()))
    }

    /// Where this template came from.
    pub fn origin(&self) -> &TemplateOrigin {
        &self.origin
    }

    /// One line for `hearth show` / `--verbose`.
    pub fn describe(&self) -> String {
        describe_origin(&self.origin)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn describe_origin(origin: &TemplateOrigin) -> String {
    match origin {
        TemplateOrigin::Gguf => "from the GGUF (tokenizer.chat_template)".to_owned(),
        TemplateOrigin::Builtin(name) => {
            format!("built-in {name} turn format (the GGUF has no template)")
        }
        TemplateOrigin::File(path) => format!("from file {path}"),
    }
}

/// A message as transformers hands it to templates: `role` and `content`, then for an
/// assistant's calls `tool_calls` (`{id, type: "function", function: {name,
/// arguments}}`, arguments a mapping), for a tool's answer `tool_call_id` and `name`.
fn message_value(m: &Message) -> Value {
    let mut map: indexmap::IndexMap<Value, Value> = indexmap::IndexMap::new();
    map.insert("role".into(), Value::from(m.role.as_str()));
    map.insert("content".into(), Value::from(m.content.as_str()));
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                dict([
                    ("id", Value::from(c.id.as_str())),
                    ("type", Value::from("function")),
                    (
                        "function",
                        dict([
                            ("name", Value::from(c.name.as_str())),
                            ("arguments", json_value(&c.arguments)),
                        ]),
                    ),
                ])
            })
            .collect();
        map.insert("tool_calls".into(), Value::from(calls));
    }
    if let Some(id) = &m.tool_call_id {
        map.insert("tool_call_id".into(), Value::from(id.as_str()));
    }
    if let Some(name) = &m.name {
        map.insert("name".into(), Value::from(name.as_str()));
    }
    Value::from(map)
}

/// Bytes of a message's calls, for the render's budgets.
fn calls_len(m: &Message) -> usize {
    m.tool_calls
        .iter()
        .map(|c| c.name.len() + c.id.len() + c.arguments.to_string().len())
        .sum()
}

/// A JSON value as the template sees it (objects keep their key order).
fn json_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, f) => Value::from(f.unwrap_or(0.0)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(json_value).collect::<Vec<_>>()),
        J::Object(o) => {
            let map: indexmap::IndexMap<Value, Value> = o
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_value(v)))
                .collect();
            Value::from(map)
        }
    }
}

/// A map that keeps insertion order, as Python dicts do (templates may `tojson` it).
fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let map: indexmap::IndexMap<Value, Value> = pairs
        .into_iter()
        .map(|(k, v)| (Value::from(k), v))
        .collect();
    Value::from(map)
}

/// `for TARGETS in ITER [if COND] [recursive]` (after `for `) with ITER wrapped in the
/// None-refusing filter; None when the tag does not read as a loop.
fn strict_loop(rest: &str) -> Option<String> {
    let bytes = rest.as_bytes();
    // Top-level positions of ` in `, ` if ` and ` recursive` (outside strings and
    // brackets).
    let (mut depth, mut quote, mut i) = (0i32, None::<u8>, 0);
    let (mut in_at, mut tail_at) = (None, None);
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ if depth == 0 && c.is_ascii_whitespace() => {
                    let word = rest[i + 1..].split(|c: char| c.is_whitespace()).next()?;
                    let next = rest[i + 1 + word.len()..].chars().next();
                    let whole = next.is_none_or(|c| c.is_whitespace());
                    if in_at.is_none() && word == "in" && whole {
                        in_at = Some(i);
                    } else if in_at.is_some() && (word == "if" || word == "recursive") && whole {
                        tail_at = Some(i);
                        break;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    let in_at = in_at?;
    let end = tail_at.unwrap_or(rest.len());
    // `in` may end the tag (`for m in`): nothing after it to iterate.
    let iter = rest.get(in_at + 4..end)?.trim();
    if iter.is_empty() {
        return None;
    }
    Some(format!(
        "for {} in ({iter})|py_iterable{}",
        rest[..in_at].trim(),
        &rest[end..]
    ))
}

/// An error's text with its cause chain (minijinja puts the line in the chain).
fn message(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The environment every template renders in, shaped like transformers' Jinja2 one.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("the default delimiters are valid");
    env.set_syntax(syntax);
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", python::tojson);
    env.add_filter("py_iterable", python::iterable);
    env.add_function("range", python::range);
    env.add_test("iterable", python::is_iterable);
    env.add_test("sequence", python::is_sequence);
    // Jinja2 prints None as "None" and booleans as "True"/"False".
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        python::py_str(&mut s, value);
        out.write_str(&s).map_err(minijinja::Error::from)
    });
    env
}

/// Two rewrites that make minijinja render as Jinja2 does:
/// - transformers' `{% generation %}...{% endgeneration %}` marks assistant text for
///   training masks and renders its body unchanged; minijinja has no such tag, so it
///   becomes an `if true` block, which trims whitespace the same way;
/// - Jinja2 refuses to loop over None (`'NoneType' object is not iterable`, e.g. a
///   template that loops over `tools` when none are given) where minijinja loops zero
///   times, so every loop's iterable passes through a filter that refuses None.
fn rewrite_tags(source: &str) -> String {
    if !source.contains("generation") && !source.contains("for") {
        return source.to_owned();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        // The closer is searched after the opener: in `{%}` they share the `%`.
        let Some(end) = tag[2..].find("%}").map(|e| e + 2) else {
            rest = tag;
            break;
        };
        let body = &tag[2..end];
        let marks = |c: char| c == '-' || c == '+' || c.is_whitespace();
        let inner = body.trim_matches(marks);
        let looped = inner.strip_prefix("for ").and_then(strict_loop);
        let replacement = match inner {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => looped.as_deref(),
        };
        match replacement {
            Some(r) => {
                // Keep the whitespace-control marks (`{%-`, `+%}`) around the new word.
                let open = &body[..body.len() - body.trim_start_matches(marks).len()];
                let close = &body[body.trim_end_matches(marks).len()..];
                out.push_str("{%");
                out.push_str(open);
                out.push_str(r);
                out.push_str(close);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Collects output, failing the render once it passes `limit` bytes.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gemma's turn format as Google documents it: `<start_of_turn>{role}\n{text}<end_of_turn>\n`
/// with role `user` or `model`; there is no system role, so a system prompt opens the
/// first user turn, separated by a blank line. Turns must alternate.
const GEMMA: &str = r#"{{ bos_token }}{% set ns = namespace(prefix="", turns=messages) %}
{% if messages and messages[0].role == "system" %}
{% set ns.prefix = messages[0].content | trim ~ "\n\n" %}
{% set ns.turns = messages[1:] %}
{% endif %}
{% for m in ns.turns %}
{% if (m.role == "user") != (loop.index0 is even) %}
{{ raise_exception("Gemma needs turns that alternate user, assistant, user, ... (optionally after one system message)") }}
{% endif %}
<start_of_turn>{{ "model" if m.role == "assistant" else m.role }}
{{ ns.prefix if loop.first }}{{ m.content | trim }}<end_of_turn>
{% endfor %}
{% if add_generation_prompt %}
<start_of_turn>model
{% endif %}"#;

/// ChatML, the format of Qwen 2 and 3: `<|im_start|>{role}\n{text}<|im_end|>\n`.
const CHATML: &str = r#"{% for m in messages %}
<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"#;

/// Llama 3's header format: `<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>`.
const LLAMA3: &str = r#"{{ bos_token }}{% for m in messages %}
<|start_header_id|>{{ m.role }}<|end_header_id|>

{{ m.content | trim }}<|eot_id|>{% endfor %}
{% if add_generation_prompt %}
<|start_header_id|>assistant<|end_header_id|>

{% endif %}"#;

/// Phi-3's turns: `<|{role}|>\n{text}<|end|>\n`.
const PHI3: &str = r#"{% for m in messages %}
{% if m.role != "system" or m.content %}
<|{{ m.role }}|>
{{ m.content }}<|end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|assistant|>
{% endif %}"#;

/// Mistral 3's (Tekken v7) format: a `[SYSTEM_PROMPT]` block, `[INST]` user turns and
/// `</s>` after each assistant turn.
const MISTRAL3: &str = r#"{{ bos_token }}{% for m in messages %}{% if m.role == "system" %}[SYSTEM_PROMPT]{{ m.content }}[/SYSTEM_PROMPT]{% elif m.role == "user" %}[INST]{{ m.content }}[/INST]{% elif m.role == "assistant" %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}"#;

/// gpt-oss's harmony format, without tools or reasoning history: the system header, a
/// system message as developer instructions, and turns as `<|start|>{role}<|message|>`;
/// assistant turns are on the final channel.
const HARMONY: &str = r#"<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: {{ strftime_now("%Y-%m-%d") }}

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>{% for m in messages %}{% if m.role == "system" %}<|start|>developer<|message|># Instructions

{{ m.content }}<|end|>{% elif m.role == "assistant" %}<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>{% else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}{% endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}"#;

/// Built-in formats by `general.architecture`.
const BUILTINS: &[(&str, &str)] = &[
    ("gemma", GEMMA),
    ("gemma2", GEMMA),
    ("gemma3", GEMMA),
    ("qwen2", CHATML),
    ("qwen3", CHATML),
    ("qwen3moe", CHATML),
    ("qwen2moe", CHATML),
    ("llama", LLAMA3),
    ("phi3", PHI3),
    ("mistral3", MISTRAL3),
    ("gpt-oss", HARMONY),
];

#[cfg(test)]
mod tests;
