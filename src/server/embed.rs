//! The embedding endpoints: ollama's `POST /api/embed` (and the legacy
//! `POST /api/embeddings`) and OpenAI's `POST /v1/embeddings`. Each admits the model like
//! a generation request (the same parallel + queue bound), then embeds its inputs one
//! after another through the model's embedding session (`Engine::embedder`): the
//! model's pooling, L2-normalized (except the legacy endpoint, which answers the raw
//! vector as ollama does), optionally cut to `dimensions` and normalized again.

use super::error::{body_bytes, model_name, parse_json};
use super::sched::EmbedInput;
use super::time::parse_keep_alive;
use super::{ApiError, App};
use crate::engine::{EmbedOptions, Embeddings};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Inputs one request may carry.
pub const MAX_INPUTS: usize = 512;

#[derive(Default, Deserialize)]
#[serde(default)]
struct OllamaEmbed {
    model: String,
    input: Option<Value>,
    truncate: Option<bool>,
    dimensions: Option<u64>,
    keep_alive: Option<Value>,
    options: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OllamaEmbeddings {
    model: String,
    prompt: String,
    keep_alive: Option<Value>,
    options: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OpenAiEmbed {
    model: String,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
    user: Option<String>,
}

/// A JSON value that must be an object, when present (ollama's `options`).
fn check_options(v: &Option<Value>) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request("options must be an object")),
    }
}

/// `dimensions` as a width (at least 1; the model's own width is checked later).
fn dims(d: Option<u64>) -> Result<Option<usize>, ApiError> {
    match d {
        None => Ok(None),
        Some(0) => Err(ApiError::bad_request("dimensions must be at least 1")),
        Some(d) => Ok(Some(usize::try_from(d).unwrap_or(usize::MAX))),
    }
}

/// A string or a list of strings (ollama); with `ids`, also a list of token ids or a
/// list of such lists (OpenAI).
fn inputs(v: &Option<Value>, ids: bool) -> Result<Vec<EmbedInput>, ApiError> {
    let bad = || {
        ApiError::bad_request(if ids {
            "input must be a string, an array of strings, an array of token ids or an array of such arrays"
        } else {
            "input must be a string or an array of strings"
        })
    };
    let id_list = |a: &[Value]| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };
    let out = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![EmbedInput::Text(s.clone())],
        Some(Value::Array(a)) if ids && !a.is_empty() && a.iter().all(Value::is_number) => {
            vec![EmbedInput::Ids(id_list(a)?)]
        }
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(EmbedInput::Text(s.clone())),
                Value::Array(t) if ids => Ok(EmbedInput::Ids(id_list(t)?)),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if out.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "{} inputs in one request; at most {MAX_INPUTS}",
            out.len()
        )));
    }
    Ok(out)
}

/// Admits `name` and embeds `inputs` (an empty list only loads the model).
async fn run(
    app: &App,
    name: &str,
    keep: Option<Value>,
    inputs: Vec<EmbedInput>,
    opts: EmbedOptions,
) -> Result<(Embeddings, std::time::Duration), ApiError> {
    let keep = keep.as_ref().map(parse_keep_alive).transpose()?;
    let ticket = app.sched.admit(name, keep).await?;
    let load = ticket.load_duration;
    if inputs.is_empty() {
        return Ok((Embeddings::default(), load));
    }
    Ok((ticket.embed(inputs, opts).await?, load))
}

/// `POST /api/embed`.
pub(super) async fn ollama_embed(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let req: OllamaEmbed = parse_json(&body_bytes(body)?)?;
    let name = model_name(&req.model)?;
    check_options(&req.options)?;
    let inputs = inputs(&req.input, false)?;
    let opts = EmbedOptions {
        truncate: req.truncate.unwrap_or(true),
        dimensions: dims(req.dimensions)?,
        ..EmbedOptions::default()
    };
    let (out, load) = run(&app, &name, req.keep_alive, inputs, opts).await?;
    Ok(Json(json!({
        "model": req.model,
        "embeddings": out.vectors,
        "total_duration": start.elapsed().as_nanos() as u64,
        "load_duration": load.as_nanos() as u64,
        "prompt_eval_count": out.prompt_tokens,
    })))
}

/// `POST /api/embeddings` (ollama's older endpoint: one prompt, the raw vector).
pub(super) async fn ollama_embeddings(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: OllamaEmbeddings = parse_json(&body_bytes(body)?)?;
    let name = model_name(&req.model)?;
    check_options(&req.options)?;
    let inputs = match req.prompt.is_empty() {
        true => vec![],
        false => vec![EmbedInput::Text(req.prompt)],
    };
    let opts = EmbedOptions {
        normalize: false,
        ..EmbedOptions::default()
    };
    let (out, _) = run(&app, &name, req.keep_alive, inputs, opts).await?;
    let v = out.vectors.into_iter().next().unwrap_or_default();
    Ok(Json(json!({ "embedding": v })))
}

/// `POST /v1/embeddings`.
pub(super) async fn openai_embeddings(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: OpenAiEmbed = parse_json(&body_bytes(body)?)?;
    let name = model_name(&req.model)?;
    let _ = &req.user;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format must be \"float\" or \"base64\", not {other:?}"
            )))
        }
    };
    let inputs = inputs(&req.input, true)?;
    if inputs.is_empty() {
        return Err(ApiError::bad_request("input must not be empty"));
    }
    let empty = |i: &EmbedInput| match i {
        EmbedInput::Text(t) => t.is_empty(),
        EmbedInput::Ids(ids) => ids.is_empty(),
    };
    if inputs.iter().any(empty) {
        return Err(ApiError::bad_request(
            "input must not contain an empty string or list",
        ));
    }
    let opts = EmbedOptions {
        dimensions: dims(req.dimensions)?,
        ..EmbedOptions::default()
    };
    let (out, _) = run(&app, &name, None, inputs, opts).await?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(encode_base64(&f32_le_bytes(v)))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
    })))
}

/// The vector as little-endian f32 bytes (what OpenAI's base64 encoding carries).
fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Standard base64 with padding (RFC 4648).
pub fn encode_base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, want) in cases {
            assert_eq!(super::encode_base64(plain.as_bytes()), want);
        }
    }
}
