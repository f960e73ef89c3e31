//! Request options (ollama's `options` object, OpenAI's top-level fields) checked and
//! turned into the engine's `GenerateOptions`. Out-of-range values are 400s; a token
//! limit larger than what the context leaves is clamped to it (documented in the README).

use super::ApiError;
use crate::constraint::Format;
use crate::engine::GenerateOptions;
use crate::sampling::{SamplingParams, MAX_REPEAT_LAST_N};
use serde::Deserialize;
use serde_json::Value;

/// ollama's `options`. Unknown keys (num_gpu, num_thread, …) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OllamaOptions {
    seed: Option<i64>,
    num_predict: Option<i64>,
    top_k: Option<i64>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    typical_p: Option<f32>,
    repeat_last_n: Option<i64>,
    temperature: Option<f32>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    stop: Option<Vec<String>>,
    num_ctx: Option<i64>,
    num_batch: Option<i64>,
}

/// A string or a list of strings (OpenAI's `stop`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// What a request asks for, before the prompt length is known.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Sampling settings (validated).
    pub sampling: SamplingParams,
    /// Token limit asked for (None: until the end token or the context is full).
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// A context window smaller than the server's, when asked.
    pub num_ctx: Option<usize>,
    /// What the output must match (JSON, a schema, a grammar, a regular expression).
    pub format: Option<Format>,
}

/// ollama's `format`: none or `""` is free text, `"json"` one JSON object, an object a
/// JSON schema.
pub fn ollama_format(format: &Option<Value>) -> Result<Option<Format>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Format::JsonObject)),
        Some(v @ Value::Object(_)) => Ok(Some(Format::schema(v.clone()))),
        Some(_) => Err(ApiError::bad_request(
            "format must be \"json\" or a JSON schema",
        )),
    }
}

/// OpenAI's `response_format`: `text`, `json_object` (with llama.cpp's optional
/// `schema`), or `json_schema` with `json_schema.schema`.
pub fn openai_response_format(format: &Option<Value>) -> Result<Option<Format>, ApiError> {
    let Some(f) = format.as_ref().filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(match f.get("schema") {
            Some(s @ Value::Object(_)) => Format::schema(s.clone()),
            _ => Format::JsonObject,
        })),
        Some("json_schema") => {
            let spec = f.get("json_schema").ok_or_else(|| {
                ApiError::bad_request("response_format json_schema needs a json_schema object")
            })?;
            match spec.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(_))) => {
                    Ok(Some(Format::schema(s.clone())))
                }
                None => Ok(Some(Format::JsonObject)),
                Some(_) => Err(ApiError::bad_request(
                    "response_format.json_schema.schema must be a JSON schema object",
                )),
            }
        }
        _ => Err(ApiError::bad_request(
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

/// The one constraint of a request: its format (`format` / `response_format`), a
/// llama.cpp-style `grammar` (GBNF or Lark) or a `regex`; more than one is a 400.
pub fn one_constraint(
    format: Option<Format>,
    grammar: Option<String>,
    regex: Option<String>,
) -> Result<Option<Format>, ApiError> {
    let grammar = grammar
        .filter(|g| !g.trim().is_empty())
        .map(|g| Format::grammar(&g));
    let regex = regex.filter(|r| !r.is_empty()).map(Format::Regex);
    let mut all = [format, grammar, regex].into_iter().flatten();
    let first = all.next();
    if all.next().is_some() {
        return Err(ApiError::bad_request(
            "give at most one of format / response_format, grammar and regex",
        ));
    }
    Ok(first)
}

fn seed_or_clock(seed: Option<i64>) -> u64 {
    match seed {
        Some(s) if s >= 0 => s as u64,
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

fn bad(name: &str, value: impl std::fmt::Display, expected: &str) -> ApiError {
    ApiError::bad_request(format!("option {name} = {value}: {expected}"))
}

fn check_stops(stop: &[String]) -> Result<(), ApiError> {
    if stop.len() > 16 {
        return Err(ApiError::bad_request("at most 16 stop strings"));
    }
    if stop.iter().any(|s| s.len() > 1024) {
        return Err(ApiError::bad_request(
            "a stop string is longer than 1024 bytes",
        ));
    }
    Ok(())
}

impl OllamaOptions {
    /// Checks the ranges and fills ollama's defaults for what is missing.
    pub fn wanted(&self) -> Result<Wanted, ApiError> {
        let d = SamplingParams::default();
        let top_k = match self.top_k {
            Some(k) if k < 0 => return Err(bad("top_k", k, "must be >= 0")),
            Some(k) => k as usize,
            None => d.top_k,
        };
        let repeat_last_n = match self.repeat_last_n {
            Some(-1) => MAX_REPEAT_LAST_N,
            Some(n) if n < -1 => return Err(bad("repeat_last_n", n, "must be >= -1")),
            Some(n) => n as usize,
            None => d.repeat_last_n,
        };
        let max_tokens = match self.num_predict {
            None | Some(-1) | Some(-2) => None,
            Some(n) if n < -2 => {
                return Err(bad("num_predict", n, "must be >= 0, or -1 for no limit"))
            }
            Some(n) => Some(n as usize),
        };
        let num_ctx = match self.num_ctx {
            Some(n) if n < 1 => return Err(bad("num_ctx", n, "must be >= 1")),
            n => n.map(|n| n as usize),
        };
        if let Some(p) = self.typical_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(bad("typical_p", p, "must be in (0, 1]"));
            }
        }
        if let Some(b) = self.num_batch {
            if b < 1 {
                return Err(bad("num_batch", b, "must be >= 1"));
            }
        }
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k,
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            repeat_last_n,
            seed: seed_or_clock(self.seed),
        };
        sampling
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let stop = self.stop.clone().unwrap_or_default();
        check_stops(&stop)?;
        Ok(Wanted {
            sampling,
            max_tokens,
            stop,
            num_ctx,
            format: None,
        })
    }
}

/// The sampling fields OpenAI requests share.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OpenAiSampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    stop: Option<OneOrMany>,
    seed: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    n: Option<i64>,
}

impl OpenAiSampling {
    /// Checks OpenAI's ranges; what OpenAI has no field for keeps ollama's default.
    pub fn wanted(self) -> Result<Wanted, ApiError> {
        let d = SamplingParams::default();
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(bad("temperature", t, "must be in [0, 2]"));
            }
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(v) = v {
                if !(-2.0..=2.0).contains(&v) {
                    return Err(bad(name, v, "must be in [-2, 2]"));
                }
            }
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(bad("n", n, "only 1 choice per request is supported"));
            }
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(n) if n < 1 => return Err(bad("max_tokens", n, "must be >= 1")),
            n => n.map(|n| n as usize),
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: seed_or_clock(self.seed),
            ..d
        };
        sampling
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let stop = self.stop.map(OneOrMany::into_vec).unwrap_or_default();
        check_stops(&stop)?;
        Ok(Wanted {
            sampling,
            max_tokens,
            stop,
            num_ctx: None,
            format: None,
        })
    }
}

impl Wanted {
    /// Fits the request to a prompt of `prompt` tokens in sessions of `capacity`: 400
    /// when the prompt alone does not fit the window, else the token limit clamped to
    /// what the window leaves.
    pub fn fit(self, prompt: usize, capacity: usize) -> Result<GenerateOptions, ApiError> {
        let window = self.num_ctx.map_or(capacity, |n| n.min(capacity));
        if prompt >= window {
            return Err(ApiError::bad_request(format!(
                "the prompt is {prompt} tokens but the context window is {window} (server --ctx {capacity}); shorten the prompt"
            )));
        }
        let room = window - prompt;
        let mut sampling = self.sampling;
        sampling.repeat_last_n = sampling.repeat_last_n.min(window);
        Ok(GenerateOptions {
            sampling,
            max_tokens: Some(self.max_tokens.map_or(room, |m| m.min(room))),
            stop: self.stop,
            format: self.format,
        })
    }
}
