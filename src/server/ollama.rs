//! ollama's generation endpoints: `POST /api/generate` and `POST /api/chat`. Streaming
//! (the default) answers NDJSON, one object per piece of text and a last one with
//! `done: true`, the reason and nanosecond timings; `"stream": false` answers one object.

use super::error::{body_bytes, model_name, parse_json};
use super::events::{collect, outs, Out};
use super::options::{ollama_format, one_constraint, OllamaOptions, Wanted};
use super::prelude::{self, RunRequest, Started};
use super::time::{parse_keep_alive, rfc3339, KeepAlive};
use super::{ApiError, App};
use crate::engine::{Engine, Prompt, Stats};
use crate::tokenizer::ToolCall;
use crate::tokenizer::{Message, TemplateOrigin};
use crate::tools::{
    new_call_id, parse_choice, parse_tools, Tool, ToolChoice, ToolSetup, ToolStream,
};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant, SystemTime};

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct GenerateRequest {
    model: String,
    prompt: String,
    suffix: String,
    system: Option<String>,
    template: Option<String>,
    context: Option<Vec<u32>>,
    stream: Option<bool>,
    raw: bool,
    format: Option<Value>,
    grammar: Option<String>,
    regex: Option<String>,
    options: OllamaOptions,
    keep_alive: Option<Value>,
    images: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ChatMessage {
    role: String,
    content: String,
    images: Option<Vec<String>>,
    tool_calls: Option<Vec<Value>>,
    tool_name: Option<String>,
    name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    format: Option<Value>,
    grammar: Option<String>,
    regex: Option<String>,
    options: OllamaOptions,
    stream: Option<bool>,
    keep_alive: Option<Value>,
}

/// The fields `/api/generate` and `/api/chat` share, checked in this order: the model
/// name, the options, keep_alive and format.
fn check_common(
    model: &str,
    options: &OllamaOptions,
    keep_alive: &Option<Value>,
    format: &Option<Value>,
    grammar: &Option<String>,
    regex: &Option<String>,
) -> Result<(String, Wanted, Option<KeepAlive>), ApiError> {
    let name = model_name(model)?;
    let mut wanted = options.wanted()?;
    let keep = keep_alive.as_ref().map(parse_keep_alive).transpose()?;
    wanted.format = one_constraint(ollama_format(format)?, grammar.clone(), regex.clone())?;
    Ok((name, wanted, keep))
}

fn no_images(images: &Option<Vec<String>>) -> Result<(), ApiError> {
    match images {
        Some(i) if !i.is_empty() => Err(ApiError::bad_request(
            "images are not supported: hearth serves text-only models",
        )),
        _ => Ok(()),
    }
}

/// A `/api/generate` body after every check that needs no model.
pub(crate) struct GenerateCall {
    pub(crate) req: GenerateRequest,
    /// The canonical model name.
    pub(crate) name: String,
    pub(crate) wanted: Wanted,
    pub(crate) keep: Option<KeepAlive>,
}

/// Parses and checks a `/api/generate` body: the model name, options, keep_alive,
/// format, images and suffix. The handler's only path from bytes to a request.
pub(crate) fn check_generate(body: &[u8]) -> Result<GenerateCall, ApiError> {
    let req: GenerateRequest = parse_json(body)?;
    let (name, wanted, keep) = check_common(
        &req.model,
        &req.options,
        &req.keep_alive,
        &req.format,
        &req.grammar,
        &req.regex,
    )?;
    no_images(&req.images)?;
    if !req.suffix.is_empty() {
        return Err(ApiError::bad_request(
            "suffix (fill-in-the-middle) is not supported",
        ));
    }
    Ok(GenerateCall {
        req,
        name,
        wanted,
        keep,
    })
}

impl GenerateCall {
    /// Whether the request only loads (or unloads) the model: no prompt, no context.
    pub(crate) fn load_only(&self) -> bool {
        self.req.prompt.is_empty() && self.req.context.as_ref().is_none_or(Vec::is_empty)
    }
}

/// `POST /api/generate`.
pub(super) async fn generate(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = body_bytes(body)?;
    let mut call = check_generate(&body)?;
    if let Some(b) = with_model_defaults(&app, &call.name, &body).await {
        call = check_generate(&b)?;
    }
    if call.load_only() {
        return load_only(&app, &call.name, call.keep, "response").await;
    }
    let GenerateCall {
        req,
        name,
        wanted,
        keep,
    } = call;
    let stream = req.stream.unwrap_or(true);
    let build = move |engine: &Engine, _: Option<&ToolSetup>| -> Result<Vec<u32>, ApiError> {
        let own_template = engine
            .template()
            .is_some_and(|t| matches!(t.origin(), TemplateOrigin::Gguf));
        let prompt = generate_prompt(own_template, &req);
        let mut ids = match &req.context {
            Some(ctx) if !ctx.is_empty() => {
                // With a context the prompt is a raw continuation (see `generate_prompt`).
                let text = match &prompt {
                    Prompt::Raw(t) => t.clone(),
                    Prompt::Chat(_) | Prompt::ChatTools(..) => String::new(),
                };
                let mut ids = ctx.clone();
                let more = engine
                    .tokenizer()
                    .encode(&text, false, true)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                ids.extend(more);
                ids
            }
            _ => prelude::tokenize(engine, &prompt)?,
        };
        let vocab = engine.tokenizer().vocab_size();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::bad_request(format!(
                "context holds token {bad}, outside the vocabulary of {vocab}"
            )));
        }
        ids.shrink_to_fit();
        Ok(ids)
    };
    let req = RunRequest {
        model: &name,
        keep,
        wanted,
        tools: None,
    };
    let run = prelude::start(&app, req, build).await?;
    answer(run, name, Kind::Generate, stream, start).await
}

/// The prompt of a generate request: raw when asked or when `template` is given (its
/// `{{ .System }}` and `{{ .Prompt }}` filled in) or when a `context` continues an
/// earlier answer; else through the model's own chat template when its GGUF has one; a
/// base model without one continues the text as is.
/// `own_template`: the model's GGUF has a chat template.
pub(crate) fn generate_prompt(own_template: bool, req: &GenerateRequest) -> Prompt {
    let system = req.system.clone().unwrap_or_default();
    if req.raw {
        return Prompt::Raw(req.prompt.clone());
    }
    if let Some(t) = req.template.as_deref().filter(|t| !t.is_empty()) {
        return Prompt::Raw(fill_template(t, &system, &req.prompt));
    }
    let continuing = req.context.as_ref().is_some_and(|c| !c.is_empty());
    if own_template && !continuing {
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", req.prompt.clone()));
        return Prompt::Chat(messages);
    }
    if system.is_empty() || continuing {
        Prompt::Raw(req.prompt.clone())
    } else {
        Prompt::Raw(format!("{system}\n\n{}", req.prompt))
    }
}

/// Fills an ollama-style template: `{{ .System }}`, `{{ .Prompt }}`, `{{ .Response }}`
/// (empty), and `{{ if .System }}…{{ end }}` blocks (kept only when the field is set).
/// Other Go-template syntax is left as text.
pub(super) fn fill_template(t: &str, system: &str, prompt: &str) -> String {
    let fields = [("System", system), ("Prompt", prompt), ("Response", "")];
    let mut s = t.to_string();
    for (field, value) in fields {
        for open in [
            format!("{{{{ if .{field} }}}}"),
            format!("{{{{if .{field}}}}}"),
        ] {
            while let Some(a) = s.find(&open) {
                let Some(rel) = s[a..].find("{{ end }}").or_else(|| s[a..].find("{{end}}")) else {
                    break;
                };
                let end_len = if s[a + rel..].starts_with("{{ end }}") {
                    9
                } else {
                    7
                };
                let inner = s[a + open.len()..a + rel].to_string();
                let keep = if value.is_empty() {
                    String::new()
                } else {
                    inner
                };
                s.replace_range(a..a + rel + end_len, &keep);
            }
        }
    }
    for (field, value) in fields {
        s = s
            .replace(&format!("{{{{ .{field} }}}}"), value)
            .replace(&format!("{{{{.{field}}}}}"), value);
    }
    s
}

/// A `/api/chat` body after every check that needs no model.
pub(crate) struct ChatCall {
    /// The canonical model name.
    pub(crate) name: String,
    pub(crate) wanted: Wanted,
    pub(crate) keep: Option<KeepAlive>,
    /// The conversation; empty asks only to load the model.
    pub(crate) messages: Vec<Message>,
    /// The tools offered and the choice.
    pub(crate) tools: Option<(Vec<Tool>, ToolChoice)>,
    pub(crate) stream: bool,
}

/// Parses and checks a `/api/chat` body: the model name, options, keep_alive, format,
/// tools, images and roles. The handler's only path from bytes to a request.
pub(crate) fn check_chat(body: &[u8]) -> Result<ChatCall, ApiError> {
    let req: ChatRequest = parse_json(body)?;
    let (name, wanted, keep) = check_common(
        &req.model,
        &req.options,
        &req.keep_alive,
        &req.format,
        &req.grammar,
        &req.regex,
    )?;
    let tools = tool_request(req.tools.as_deref(), req.tool_choice.as_ref())?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in req.messages {
        no_images(&m.images)?;
        check_role(&m.role)?;
        let mut msg = Message::new(m.role, m.content);
        for (i, c) in m.tool_calls.iter().flatten().enumerate() {
            let f = c.get("function").unwrap_or(c);
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("tool_calls[{i}] has no function name"))
            })?;
            let arguments = call_arguments(f.get("arguments"), i)?;
            msg.tool_calls.push(ToolCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(new_call_id, str::to_string),
                name: name.to_string(),
                arguments,
            });
        }
        msg.name = m.tool_name.or(m.name);
        messages.push(msg);
    }
    Ok(ChatCall {
        name,
        wanted,
        keep,
        messages,
        tools,
        stream: req.stream.unwrap_or(true),
    })
}

/// `POST /api/chat`.
pub(super) async fn chat(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let ChatCall {
        name,
        wanted,
        keep,
        messages,
        tools,
        stream,
    } = {
        let body = body_bytes(body)?;
        let call = check_chat(&body)?;
        match with_model_defaults(&app, &call.name, &body).await {
            Some(b) => check_chat(&b)?,
            None => call,
        }
    };
    if messages.is_empty() {
        return load_only(&app, &name, keep, "message").await;
    }
    let req = RunRequest {
        model: &name,
        keep,
        wanted,
        tools,
    };
    let build = move |engine: &Engine, tools: Option<&ToolSetup>| {
        prelude::tokenize_with(engine, &Prompt::Chat(messages), tools)
    };
    let run = prelude::start(&app, req, build).await?;
    answer(run, name, Kind::Chat, stream, start).await
}

/// 400 unless `role` is one a chat template understands.
pub(super) fn check_role(role: &str) -> Result<(), ApiError> {
    match role {
        "system" | "user" | "assistant" | "tool" | "developer" => Ok(()),
        "" => Err(ApiError::bad_request("every message needs a role")),
        r => Err(ApiError::bad_request(format!(
            "unknown message role {r:?}: expected system, user, assistant or tool"
        ))),
    }
}

/// A request without a prompt: load (or, with keep_alive 0, unload) the model.
async fn load_only(
    app: &App,
    name: &str,
    keep: Option<KeepAlive>,
    field: &str,
) -> Result<Response, ApiError> {
    let unload = keep == Some(Some(Duration::ZERO));
    let mut obj = Map::new();
    obj.insert("model".into(), json!(name));
    obj.insert("created_at".into(), json!(rfc3339(SystemTime::now())));
    if unload {
        app.sched.unload(name);
    } else {
        drop(app.sched.admit(name, keep).await?);
    }
    let empty = if field == "message" {
        json!({"role": "assistant", "content": ""})
    } else {
        json!("")
    };
    obj.insert(field.into(), empty);
    obj.insert("done".into(), json!(true));
    obj.insert(
        "done_reason".into(),
        json!(if unload { "unload" } else { "load" }),
    );
    Ok(Json(Value::Object(obj)).into_response())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Generate,
    Chat,
}

impl Kind {
    fn piece(self, model: &str, text: &str, done: bool) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("model".into(), json!(model));
        o.insert("created_at".into(), json!(rfc3339(SystemTime::now())));
        match self {
            Kind::Generate => o.insert("response".into(), json!(text)),
            Kind::Chat => o.insert(
                "message".into(),
                json!({"role": "assistant", "content": text}),
            ),
        };
        o.insert("done".into(), json!(done));
        o
    }
}

/// The end-of-generation fields ollama clients read.
fn finish(o: &mut Map<String, Value>, stats: &Stats, start: Instant, load: Duration) {
    let ns = |d: Duration| json!(d.as_nanos() as u64);
    o.insert("done_reason".into(), json!(stats.reason.as_str()));
    o.insert("total_duration".into(), ns(start.elapsed()));
    o.insert("load_duration".into(), ns(load));
    o.insert("prompt_eval_count".into(), json!(stats.prompt_tokens));
    o.insert("prompt_eval_duration".into(), ns(stats.prompt_duration));
    o.insert("eval_count".into(), json!(stats.generated));
    o.insert("eval_duration".into(), ns(stats.generate_duration));
}

/// Answers a started run of model `name` in `kind`'s shape, whole or streamed; `start`
/// is when the request came in.
async fn answer(
    run: Started,
    name: String,
    kind: Kind,
    stream: bool,
    start: Instant,
) -> Result<Response, ApiError> {
    let Started {
        events: rx,
        prompt: prompt_ids,
        load_duration: load,
        tools,
        engine,
    } = run;
    if let Some(setup) = tools {
        let message_of = |content: &str, calls: &[ToolCall]| {
            let mut m = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                m["tool_calls"] = calls
                    .iter()
                    .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            m
        };
        if !stream {
            // Whole: the text, then the calls.
            let (text, stats, ids) = collect(rx).await?;
            let (content, calls) = prelude::read_calls(&engine, &setup, &text, &ids);
            let mut o = kind.piece(&name, "", true);
            o.insert("message".into(), message_of(&content, &calls));
            finish(&mut o, &stats, start, load);
            return Ok(Json(Value::Object(o)).into_response());
        }
        // Streamed: the text as it comes where the format allows (`ToolStream`), then a
        // line with the rest of the text and the calls, then the last line.
        let mut held = ToolStream::new(&setup);
        let mut text = String::new();
        let lines = outs(rx).map(move |out| {
            let mut objs = Vec::new();
            match out {
                Out::Text(t) => {
                    text += &t;
                    let now = held.push(&t);
                    if !now.is_empty() {
                        objs.push(kind.piece(&name, &now, false));
                    }
                }
                Out::Done(t, stats, ids) => {
                    text += &t;
                    let now = held.push(&t);
                    let (all, calls) = prelude::read_calls(&engine, &setup, &text, &ids);
                    let rest = now + &held.rest_of(&all);
                    if !rest.is_empty() || !calls.is_empty() {
                        let mut o = kind.piece(&name, "", false);
                        o.insert("message".into(), message_of(&rest, &calls));
                        objs.push(o);
                    }
                    let mut last = kind.piece(&name, "", true);
                    finish(&mut last, &stats, start, load);
                    objs.push(last);
                }
                Out::Error(e) => {
                    let mut o = Map::new();
                    o.insert("error".into(), json!(e));
                    objs.push(o);
                }
            }
            let mut body = Vec::new();
            for o in objs {
                body.extend(serde_json::to_vec(&Value::Object(o)).unwrap_or_default());
                body.push(b'\n');
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(body))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response());
    }
    if !stream {
        let (text, stats, gen_ids) = collect(rx).await?;
        let mut o = kind.piece(&name, &text, true);
        finish(&mut o, &stats, start, load);
        if kind == Kind::Generate {
            o.insert("context".into(), json!(context(&prompt_ids, &gen_ids)));
        }
        return Ok(Json(Value::Object(o)).into_response());
    }
    let lines = outs(rx).map(move |out| {
        let o = match out {
            Out::Text(t) => kind.piece(&name, &t, false),
            Out::Done(t, stats, gen_ids) => {
                let mut o = kind.piece(&name, &t, true);
                finish(&mut o, &stats, start, load);
                if kind == Kind::Generate {
                    o.insert("context".into(), json!(context(&prompt_ids, &gen_ids)));
                }
                o
            }
            Out::Error(e) => {
                let mut o = Map::new();
                o.insert("error".into(), json!(e));
                o
            }
        };
        let mut line = serde_json::to_vec(&Value::Object(o)).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// For a model found in ollama's store whose params layer sets default options
/// (`temperature`, `stop`, `num_ctx`, …): the request body with those defaults under
/// `options` wherever the request leaves them unset. None when there is nothing to add.
async fn with_model_defaults(app: &App, name: &str, body: &[u8]) -> Option<Vec<u8>> {
    let store = app.sched.store.clone();
    let key = name.to_string();
    let params = tokio::task::spawn_blocking(move || store.find_external(&key)?.params)
        .await
        .ok()??;
    merge_options(body, &params)
}

/// `body` with `defaults` added to its `options` object where absent.
fn merge_options(body: &[u8], defaults: &Map<String, Value>) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let opts = obj
        .entry("options")
        .or_insert_with(|| Value::Object(Map::new()));
    if opts.is_null() {
        *opts = Value::Object(Map::new());
    }
    let opts = opts.as_object_mut()?;
    let mut added = false;
    for (k, d) in defaults {
        if !opts.contains_key(k) {
            opts.insert(k.clone(), d.clone());
            added = true;
        }
    }
    added.then(|| serde_json::to_vec(&v).ok()).flatten()
}

/// The tools a chat request offers (`tools`, `tool_choice`), checked; None when it
/// offers none.
pub(super) fn tool_request(
    tools: Option<&[Value]>,
    choice: Option<&Value>,
) -> Result<Option<(Vec<Tool>, ToolChoice)>, ApiError> {
    let tools = parse_tools(tools.unwrap_or_default()).map_err(|e| ApiError::bad_request(e.0))?;
    let choice = parse_choice(choice, &tools).map_err(|e| ApiError::bad_request(e.0))?;
    Ok((!tools.is_empty()).then_some((tools, choice)))
}

/// A call's arguments: a JSON object, or (OpenAI) a string holding one.
pub(super) fn call_arguments(v: Option<&Value>, i: usize) -> Result<Value, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "tool_calls[{i}].function.arguments must be a JSON object"
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(json!({})),
        Some(o @ Value::Object(_)) => Ok(o.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(o @ Value::Object(_)) => Ok(o),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// The ids ollama returns as `context`: the prompt and the answer.
fn context(prompt: &[u32], generated: &[u32]) -> Vec<u32> {
    prompt.iter().chain(generated).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::{fill_template, merge_options};
    use serde_json::json;

    #[test]
    fn model_defaults_fill_only_unset_options() {
        let d = json!({"temperature": 0.2, "stop": ["<|end|>"], "num_ctx": 2048});
        let d = d.as_object().unwrap();
        let body = br#"{"model": "m", "prompt": "x", "options": {"temperature": 1}}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&merge_options(body, d).unwrap()).unwrap();
        assert_eq!(
            out["options"],
            json!({"temperature": 1, "stop": ["<|end|>"], "num_ctx": 2048})
        );
        let bare = br#"{"model": "m", "prompt": "x"}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&merge_options(bare, d).unwrap()).unwrap();
        assert_eq!(out["options"]["temperature"], 0.2);
        let full = br#"{"options": {"temperature": 1, "stop": [], "num_ctx": 1}}"#;
        assert!(merge_options(full, d).is_none());
        assert!(merge_options(b"[1]", d).is_none());
    }

    #[test]
    fn templates_fill() {
        let t = "{{ if .System }}<s>{{ .System }}</s>{{ end }}Q: {{ .Prompt }}\nA:";
        assert_eq!(fill_template(t, "", "hi"), "Q: hi\nA:");
        assert_eq!(
            fill_template(t, "be brief", "hi"),
            "<s>be brief</s>Q: hi\nA:"
        );
        assert_eq!(fill_template("{{.Prompt}}!", "", "x"), "x!");
    }
}
