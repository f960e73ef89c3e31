//! ollama's model-management endpoints over the store: `GET /api/tags`, `POST /api/show`,
//! `GET /api/ps`, `DELETE /api/delete`, `POST /api/copy` and `POST /api/pull` (progress as
//! NDJSON). Names go through the store's rules; file paths and URLs are refused.

use super::error::{body_bytes, model_name, parse_json};
use super::time::rfc3339;
use super::{ApiError, App};
use crate::gguf::{GgufFile, Value as GgufValue};
use crate::store::pull::{Progress, PullOptions};
use crate::store::{quantization, Listing};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use tokio::sync::mpsc;

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

/// `details` as ollama lists them, read from the GGUF header.
fn details(path: &Path, quant: &str) -> Value {
    let (family, params) = match GgufFile::open(path) {
        Ok(f) => (
            f.architecture().unwrap_or("unknown").to_string(),
            f.tensors.iter().map(|t| t.n_elements()).sum::<u64>(),
        ),
        Err(_) => ("unknown".into(), 0),
    };
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(params),
        "quantization_level": quant,
    })
}

fn parameter_size(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.1}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else {
        format!("{:.2}K", x / 1e3)
    }
}

fn tag(e: &Listing) -> Value {
    json!({
        "name": e.name,
        "model": e.name,
        "modified_at": rfc3339(e.modified),
        "size": e.size,
        "digest": e.digest,
        "details": details(&e.path, &e.quantization),
        "source": e.origin.label(),
    })
}

/// `GET /api/tags`.
pub(super) async fn tags(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.sched.store.clone();
    let models =
        blocking(move || Ok(store.list_all()?.iter().map(tag).collect::<Vec<_>>())).await?;
    Ok(Json(json!({ "models": models })))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct NameRequest {
    model: String,
    name: String,
    verbose: bool,
}

impl NameRequest {
    fn model(&self) -> Result<String, ApiError> {
        model_name(if self.model.is_empty() {
            &self.name
        } else {
            &self.model
        })
    }
}

/// Parses and checks a `/api/show` or `/api/delete` body: the canonical model name and
/// whether `verbose` is set.
pub(crate) fn check_name(body: &[u8]) -> Result<(String, bool), ApiError> {
    let req: NameRequest = parse_json(body)?;
    Ok((req.model()?, req.verbose))
}

/// `POST /api/show`.
pub(super) async fn show(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let (name, verbose) = check_name(&body_bytes(body)?)?;
    let store = app.sched.store.clone();
    blocking(move || {
        let path = store.resolve_name(&name)?;
        let f = GgufFile::open(&path)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        let mut info = Map::new();
        for (k, v) in f.metadata() {
            let value = match v {
                GgufValue::String(s) => json!(s),
                GgufValue::Bool(b) => json!(b),
                GgufValue::F32(x) => json!(x),
                GgufValue::F64(x) => json!(x),
                GgufValue::Array(a) if !verbose => {
                    // Vocabularies are large; ollama leaves them out unless verbose.
                    let _ = a;
                    Value::Null
                }
                other => match other.as_integer() {
                    Some(i) => json!(i as i64),
                    None => json!(format!("{other:?}")),
                },
            };
            if !value.is_null() {
                info.insert(k.clone(), value);
            }
        }
        info.insert(
            "general.parameter_count".into(),
            json!(f.tensors.iter().map(|t| t.n_elements()).sum::<u64>()),
        );
        let template = f
            .get_str("tokenizer.chat_template")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string();
        let license = f
            .get_str("general.license")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string();
        let quant = quantization(&f);
        let external = store.find_external(&name);
        let modified = match &external {
            Some(m) => Some(rfc3339(m.modified)),
            None => store
                .list()?
                .into_iter()
                .find(|e| e.name.to_string() == name)
                .map(|e| rfc3339(e.modified)),
        };
        // ollama's params layer, in the `key value` lines ollama shows.
        let parameters = external
            .and_then(|m| m.params)
            .map(|p| {
                let mut lines = Vec::new();
                for (k, v) in p {
                    match v {
                        Value::Array(a) => lines.extend(a.iter().map(|x| format!("{k} {x}"))),
                        v => lines.push(format!("{k} {v}")),
                    }
                }
                lines.join("\n")
            })
            .unwrap_or_default();
        Ok(Json(json!({
            "license": license,
            "modelfile": "",
            "parameters": parameters,
            "template": template,
            "details": details(&path, &quant),
            "model_info": info,
            "capabilities": ["completion"],
            "modified_at": modified,
        })))
    })
    .await
}

/// `GET /api/ps`.
pub(super) async fn ps(State(app): State<App>) -> Json<Value> {
    let models: Vec<Value> = app
        .sched
        .slots()
        .iter()
        .filter_map(|s| {
            let loaded = s.loaded()?;
            let m = loaded.engine.memory();
            let size = m.weights + m.kv_cache + m.activations;
            let quant = loaded.engine.info().quant.trim_start_matches("mostly ").to_string();
            Some(json!({
                "name": s.name,
                "model": s.name,
                "size": size,
                "digest": s.digest.strip_prefix("sha256:").unwrap_or(&s.digest),
                "details": details(&s.path, &quant),
                "expires_at": s.expires_at().map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "size_vram": size,
                "context_length": loaded.capacity,
            }))
        })
        .collect();
    Json(json!({ "models": models }))
}

/// `DELETE /api/delete`.
pub(super) async fn delete(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (name, _) = check_name(&body_bytes(body)?)?;
    app.sched.unload(&name);
    let store = app.sched.store.clone();
    blocking(move || Ok(store.rm(&name)?)).await?;
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize)]
struct CopyRequest {
    source: String,
    destination: String,
}

/// Parses and checks a `/api/copy` body: the canonical source and destination names.
pub(crate) fn check_copy(body: &[u8]) -> Result<(String, String), ApiError> {
    let req: CopyRequest = parse_json(body)?;
    Ok((model_name(&req.source)?, model_name(&req.destination)?))
}

/// `POST /api/copy`.
pub(super) async fn copy(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (src, dst) = check_copy(&body_bytes(body)?)?;
    let store = app.sched.store.clone();
    blocking(move || Ok(store.cp(&src, &dst)?)).await?;
    Ok(Json(json!({})).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PullRequest {
    model: String,
    name: String,
    stream: Option<bool>,
    insecure: bool,
}

/// Sends pull progress as ollama status objects.
struct Lines {
    tx: mpsc::UnboundedSender<Value>,
    digest: String,
    total: u64,
    completed: u64,
}

impl Progress for Lines {
    fn start(&mut self, file: &str, total: Option<u64>, resumed: u64) {
        self.digest = file.to_string();
        self.total = total.unwrap_or(0);
        self.completed = resumed;
        self.send_progress();
    }
    fn advance(&mut self, n: u64) {
        let before = self.completed >> 20;
        self.completed += n;
        // One line per MiB is plenty.
        if self.completed >> 20 != before {
            self.send_progress();
        }
    }
    fn finish(&mut self) {
        self.send_progress();
    }
    fn message(&mut self, msg: &str) {
        let _ = self.tx.send(json!({ "status": msg }));
    }
}

impl Lines {
    fn send_progress(&self) {
        let _ = self.tx.send(json!({
            "status": format!("pulling {}", self.digest),
            "digest": self.digest,
            "total": self.total,
            "completed": self.completed,
        }));
    }
}

/// Parses and checks a `/api/pull` body: the spec to pull (checked as a model name) and
/// `stream`.
pub(crate) fn check_pull(body: &[u8]) -> Result<(String, Option<bool>), ApiError> {
    let req: PullRequest = parse_json(body)?;
    let spec = if req.model.is_empty() {
        req.name
    } else {
        req.model
    };
    model_name(&spec)?;
    if req.insecure {
        return Err(ApiError::bad_request("insecure pulls are not supported"));
    }
    Ok((spec, req.stream))
}

/// `POST /api/pull`: a store name alias (`gemma3:270m`) or `hf.co/OWNER/REPO[:QUANT]`.
pub(super) async fn pull(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (spec, stream) = check_pull(&body_bytes(body)?)?;
    let opts = PullOptions::from_env()?;
    let store = app.sched.store.clone();
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let task = tokio::task::spawn_blocking(move || {
        let _ = tx.send(json!({"status": "pulling manifest"}));
        let mut lines = Lines {
            tx: tx.clone(),
            digest: String::new(),
            total: 0,
            completed: 0,
        };
        match crate::store::pull::pull(&store, &spec, &opts, &mut lines) {
            Ok(_) => {
                let _ = tx.send(json!({"status": "verifying sha256 digest"}));
                let _ = tx.send(json!({"status": "writing manifest"}));
                let _ = tx.send(json!({"status": "success"}));
                Ok(())
            }
            Err(e) => {
                let e = ApiError::from(e);
                let _ = tx.send(json!({"error": e.message}));
                Err(e)
            }
        }
    });
    if stream == Some(false) {
        task.await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        return Ok(Json(json!({"status": "success"})).into_response());
    }
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
