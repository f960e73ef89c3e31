//! The OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/completions`
//! (server-sent events when `stream`, closed by `data: [DONE]`; `usage` in the reply, or
//! in a last chunk with `stream_options.include_usage`) and `GET /v1/models`.

use super::error::{body_bytes, model_name, parse_json};
use super::events::{collect, outs, Out};
use super::ollama::{call_arguments, check_role, tool_request};
use super::options::{one_constraint, openai_response_format, OneOrMany, OpenAiSampling, Wanted};
use super::prelude::{self, RunRequest};
use super::time::unix;
use super::{ApiError, App};
use crate::engine::{Engine, Prompt, Stats};
use crate::tokenizer::Message;
use crate::tokenizer::ToolCall;
use crate::tools::{new_call_id, Tool, ToolChoice, ToolSetup, ToolStream};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Message content: a string or a list of parts of which only text is supported.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(flatten)]
    sampling: OpenAiSampling,
}

#[derive(Deserialize)]
pub(super) struct CompletionRequest {
    model: String,
    prompt: OneOrMany,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    echo: bool,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(flatten)]
    sampling: OpenAiSampling,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn usage(s: &Stats) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.generated,
        "total_tokens": s.prompt_tokens + s.generated,
    })
}

/// A `/v1/chat/completions` or `/v1/completions` body after every check that needs no
/// model.
pub(crate) struct Call {
    /// The canonical model name.
    pub(crate) name: String,
    pub(crate) wanted: Wanted,
    /// A chat completion's conversation (never empty; `developer` turns become `system`)
    /// or a text completion's one raw prompt.
    pub(crate) prompt: Prompt,
    /// The tools offered and the choice (chat only).
    pub(crate) tools: Option<(Vec<Tool>, ToolChoice)>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

/// Parses and checks a `/v1/chat/completions` body: the model name, response_format,
/// tools, logprobs, messages and sampling fields. The handler's only path from bytes to
/// a request.
pub(crate) fn check_chat(body: &[u8]) -> Result<Call, ApiError> {
    let req: ChatRequest = parse_json(body)?;
    let name = model_name(&req.model)?;
    let format = one_constraint(
        openai_response_format(&req.response_format)?,
        req.grammar,
        req.regex,
    )?;
    let tools = tool_request(req.tools.as_deref(), req.tool_choice.as_ref())?;
    if req.logprobs == Some(true) {
        return Err(ApiError::bad_request(
            "logprobs are not supported yet by hearth",
        ));
    }
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in req.messages {
        check_role(&m.role)?;
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut s = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::bad_request(format!(
                            "content part type {:?} is not supported; only text",
                            p.kind
                        )));
                    }
                    s += &p.text;
                }
                s
            }
        };
        let role = if m.role == "developer" {
            "system".into()
        } else {
            m.role
        };
        let mut msg = Message::new(role, content);
        for (i, c) in m.tool_calls.iter().flatten().enumerate() {
            let f = c
                .get("function")
                .ok_or_else(|| ApiError::bad_request(format!("tool_calls[{i}] has no function")))?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("tool_calls[{i}].function has no name"))
            })?;
            msg.tool_calls.push(ToolCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(new_call_id, str::to_string),
                name: name.to_string(),
                arguments: call_arguments(f.get("arguments"), i)?,
            });
        }
        msg.tool_call_id = m.tool_call_id;
        msg.name = m.name;
        messages.push(msg);
    }
    let mut wanted = req.sampling.wanted()?;
    wanted.format = format;
    Ok(Call {
        name,
        wanted,
        prompt: Prompt::Chat(messages),
        tools,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// Parses and checks a `/v1/completions` body: the model name, suffix, echo, logprobs,
/// prompt and sampling fields. The handler's only path from bytes to a request.
pub(crate) fn check_completion(body: &[u8]) -> Result<Call, ApiError> {
    let req: CompletionRequest = parse_json(body)?;
    let name = model_name(&req.model)?;
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("suffix is not supported"));
    }
    if req.echo {
        return Err(ApiError::bad_request("echo is not supported"));
    }
    if req.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "logprobs are not supported yet by hearth",
        ));
    }
    let prompt = match req.prompt.into_vec() {
        v if v.len() == 1 => v.into_iter().next().unwrap_or_default(),
        _ => return Err(ApiError::bad_request("prompt must be one string")),
    };
    let mut wanted = req.sampling.wanted()?;
    wanted.format = one_constraint(
        openai_response_format(&req.response_format)?,
        req.grammar,
        req.regex,
    )?;
    Ok(Call {
        name,
        wanted,
        prompt: Prompt::Raw(prompt),
        tools: None,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(&app, check_chat(&body_bytes(body)?)?).await
}

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(&app, check_completion(&body_bytes(body)?)?).await
}

/// Runs a checked request and answers as a chat completion (a chat prompt) or a text
/// completion (a raw one).
async fn run(app: &App, call: Call) -> Result<Response, ApiError> {
    let Call {
        name,
        wanted,
        prompt,
        tools,
        stream,
        include_usage,
    } = call;
    let chat = matches!(prompt, Prompt::Chat(_));
    let req = RunRequest {
        model: &name,
        keep: None,
        wanted,
        tools,
    };
    let started = prelude::start(app, req, move |engine, tools| {
        prelude::tokenize_with(engine, &prompt, tools)
    });
    let started = started.await?;
    let (rx, tools, engine) = (started.events, started.tools, started.engine);
    let id = new_id(if chat { "chatcmpl" } else { "cmpl" });
    let created = unix(SystemTime::now());
    let (object, chunk_object) = if chat {
        ("chat.completion", "chat.completion.chunk")
    } else {
        ("text_completion", "text_completion")
    };
    if let Some(setup) = tools {
        return tool_answer(engine, setup, rx, stream, include_usage, id, created, name).await;
    }
    if !stream {
        let (text, stats, _) = collect(rx).await?;
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": stats.reason.as_str()})
        } else {
            json!({"index": 0, "text": text, "logprobs": null,
                   "finish_reason": stats.reason.as_str()})
        };
        return Ok(Json(json!({
            "id": id, "object": object, "created": created, "model": name,
            "system_fingerprint": "hearth",
            "choices": [choice],
            "usage": usage(&stats),
        }))
        .into_response());
    }
    let chunk = move |choice: Option<Value>, usage: Option<Value>| {
        let mut c = json!({
            "id": id, "object": chunk_object, "created": created, "model": name,
            "system_fingerprint": "hearth",
            "choices": choice.map_or(vec![], |c| vec![c]),
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    let piece = move |text: &str, reason: Option<&str>, first: bool| {
        if chat {
            let delta = match (first, text.is_empty() && reason.is_some()) {
                (_, true) => json!({}),
                (true, _) => json!({"role": "assistant", "content": text}),
                (false, _) => json!({"content": text}),
            };
            json!({"index": 0, "delta": delta, "finish_reason": reason})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason})
        }
    };
    let mut first = true;
    let events = outs(rx).map(move |out| {
        let s = match out {
            Out::Text(t) => {
                let s = chunk(Some(piece(&t, None, first)), None);
                first = false;
                s
            }
            Out::Done(t, stats, _) => {
                let mut s = String::new();
                if !t.is_empty() {
                    s += &chunk(Some(piece(&t, None, first)), None);
                }
                s += &chunk(Some(piece("", Some(stats.reason.as_str()), false)), None);
                if include_usage {
                    s += &chunk(None, Some(usage(&stats)));
                }
                s + "data: [DONE]\n\n"
            }
            Out::Error(e) => sse_error(&e),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(s))
    });
    Ok(sse(events))
}

/// A chat completion with tools offered. Whole: the text and the calls (`tool_calls`,
/// arguments as a JSON string; finish reason `tool_calls`). Streamed: the text as it
/// comes where the format allows (`ToolStream`), then the rest of the text, one delta
/// per call and the finish.
#[allow(clippy::too_many_arguments)]
async fn tool_answer(
    engine: Arc<Engine>,
    setup: ToolSetup,
    rx: crate::server::sched::Events,
    stream: bool,
    include_usage: bool,
    id: String,
    created: u64,
    name: String,
) -> Result<Response, ApiError> {
    let calls_json = |calls: &[ToolCall]| -> Vec<Value> {
        calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments.to_string()}})
            })
            .collect()
    };
    let reason_of = |calls: &[ToolCall], stats: &Stats| {
        if calls.is_empty() {
            stats.reason.as_str()
        } else {
            "tool_calls"
        }
    };
    if !stream {
        let (text, stats, ids) = collect(rx).await?;
        let (content, calls) = prelude::read_calls(&engine, &setup, &text, &ids);
        let content_value = if content.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(content)
        };
        let mut message = json!({"role": "assistant", "content": content_value});
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls_json(&calls));
        }
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": name,
            "system_fingerprint": "hearth",
            "choices": [{"index": 0, "message": message, "finish_reason": reason_of(&calls, &stats)}],
            "usage": usage(&stats),
        }))
        .into_response());
    }
    let chunk = move |delta: Value, reason: Option<&str>, usage: Option<Value>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": name,
            "system_fingerprint": "hearth",
            "choices": match usage { Some(_) => json!([]), None => json!([{"index": 0, "delta": delta, "finish_reason": reason}]) },
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    let mut held = ToolStream::new(&setup);
    let mut text = String::new();
    let mut first = true;
    let events = outs(rx).map(move |out| {
        let mut s = String::new();
        let content = |s: &mut String, piece: String, first: &mut bool| {
            let delta = if *first {
                json!({"role": "assistant", "content": piece})
            } else {
                json!({"content": piece})
            };
            *first = false;
            *s += &chunk(delta, None, None);
        };
        match out {
            Out::Text(t) => {
                text += &t;
                let now = held.push(&t);
                if !now.is_empty() {
                    content(&mut s, now, &mut first);
                }
            }
            Out::Done(t, stats, ids) => {
                text += &t;
                let now = held.push(&t);
                let (all, calls) = prelude::read_calls(&engine, &setup, &text, &ids);
                let rest = now + &held.rest_of(&all);
                if !rest.is_empty() || first {
                    content(&mut s, rest, &mut first);
                }
                for (i, mut c) in calls_json(&calls).into_iter().enumerate() {
                    c["index"] = json!(i);
                    s += &chunk(json!({"tool_calls": [c]}), None, None);
                }
                s += &chunk(json!({}), Some(reason_of(&calls, &stats)), None);
                if include_usage {
                    s += &chunk(Value::Null, None, Some(usage(&stats)));
                }
                s += "data: [DONE]\n\n";
            }
            Out::Error(e) => s = sse_error(&e),
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(s))
    });
    Ok(sse(events))
}

/// The event that ends a stream whose generation failed after it started.
fn sse_error(e: &str) -> String {
    format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"error": {"message": e, "type": "server_error"}})
    )
}

/// A server-sent event stream of `events`.
fn sse(
    events: impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

fn model_object(name: &str, created: u64) -> Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": "library"})
}

/// `GET /v1/models`.
pub(super) async fn models(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.sched.store.clone();
    let list = tokio::task::spawn_blocking(move || store.list_all())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let data: Vec<Value> = list
        .iter()
        .map(|e| model_object(&e.name, unix(e.modified)))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{model}`.
pub(super) async fn model(
    State(app): State<App>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = model_name(&model)?;
    let store = app.sched.store.clone();
    let list = tokio::task::spawn_blocking(move || store.list_all())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    list.iter()
        .find(|e| e.name == name)
        .map(|e| Json(model_object(&name, unix(e.modified))))
        .ok_or_else(|| ApiError::not_found(format!("model '{name}' not found")))
}
