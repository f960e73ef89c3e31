//! `hearth serve`: an HTTP server that speaks the ollama API (`/api/*`, NDJSON
//! streaming) and the OpenAI API (`/v1/*`, server-sent events) over the model store.
//!
//! Models load on first use and unload after their keep-alive (`sched`). Each loaded
//! model has a fixed number of sessions (slots, each its own KV cache) and a bounded
//! queue: a request beyond `parallel + queue` is answered 503 at once. Generation runs on
//! a blocking thread per request and talks to the handler through a channel; when the
//! client goes away the channel closes and the thread stops between two tokens, giving
//! its session back. Requests are untrusted: bodies are size-limited, model names go
//! through the store's name rules only, options are range-checked, and every error is
//! `{"error": "..."}` with a 4xx/5xx status.

mod embed;
mod error;
mod events;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod options;
mod prelude;
mod sched;
pub(crate) mod store_api;
mod time;

pub use error::ApiError;
pub use sched::SchedConfig;
pub use time::parse_duration;

use crate::gpu::GpuOptions;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sched::Scheduler;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything `hearth serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Root of the model store requests resolve names in.
    pub store_root: PathBuf,
    /// Other tools' stores whose models are served too (read-only).
    pub external: crate::store::External,
    /// Adapter choice.
    pub gpu: GpuOptions,
    /// Slots, queue, keep-alive and context.
    pub sched: SchedConfig,
    /// Bearer token every route but `/health` requires, when set.
    pub api_key: Option<String>,
    /// The one origin (or `*`) browsers may call from; no CORS headers when None.
    pub cors_origin: Option<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
}

/// Request and token counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    /// Microseconds spent generating, summed over requests.
    generate_us: AtomicU64,
}

/// Shared by every handler.
pub(crate) struct AppState {
    sched: Scheduler,
    metrics: Arc<Metrics>,
    api_key: Option<String>,
    cors_origin: Option<HeaderValue>,
    started: Instant,
}

type App = Arc<AppState>;

/// The router with every route and the safety layers (auth, CORS, body limit, JSON
/// errors for unknown routes and methods). Spawns the keep-alive reaper, so call it
/// inside a tokio runtime.
pub fn router(config: ServeConfig) -> Result<Router, ApiError> {
    let store = crate::store::Store::open(&config.store_root)
        .map_err(|e| ApiError::internal(format!("model store: {e}")))?
        .with_external(config.external.clone());
    let cors_origin = match &config.cors_origin {
        Some(o) => Some(
            HeaderValue::from_str(o)
                .map_err(|_| ApiError::bad_request(format!("bad CORS origin {o:?}")))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let sched = Scheduler::new(
        store,
        config.gpu.clone(),
        config.sched.clone(),
        metrics.clone(),
    );
    let state: App = Arc::new(AppState {
        sched,
        metrics,
        api_key: config.api_key.clone().filter(|k| !k.is_empty()),
        cors_origin,
        started: Instant::now(),
    });
    let weak = Arc::downgrade(&state);
    tokio::spawn(async move {
        while let Some(app) = weak.upgrade() {
            app.sched.reap();
            drop(app);
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    let routes = Router::new()
        .route("/", get(|| async { "hearth is running" }))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/version", get(version))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/tags", get(store_api::tags))
        .route("/api/show", post(store_api::show))
        .route("/api/ps", get(store_api::ps))
        .route("/api/delete", delete(store_api::delete))
        .route("/api/copy", post(store_api::copy))
        .route("/api/pull", post(store_api::pull))
        .route("/api/embed", post(embed::ollama_embed))
        .route("/api/embeddings", post(embed::ollama_embeddings))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    Ok(routes)
}

/// Binds `host:port` and serves until Ctrl-C. `ready` is called with the bound address.
pub async fn serve(
    config: ServeConfig,
    host: &str,
    port: u16,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ApiError> {
    let app = router(config)?;
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| ApiError::internal(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    ready(addr);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Counts requests, answers CORS preflights, checks the API key and adds CORS headers.
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let origin_ok = match (&app.cors_origin, req.headers().get(header::ORIGIN)) {
        (Some(allowed), Some(origin)) => allowed == "*" || allowed == origin,
        _ => false,
    };
    if req.method() == Method::OPTIONS && app.cors_origin.is_some() {
        let mut res = StatusCode::NO_CONTENT.into_response();
        if origin_ok {
            add_cors(&app, &mut res);
        }
        return res;
    }
    let exempt = req.uri().path() == "/health";
    let mut res = if !exempt && !authorized(&app, &req) {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response()
    } else {
        next.run(req).await
    };
    if origin_ok {
        add_cors(&app, &mut res);
    }
    if res.status().is_client_error() || res.status().is_server_error() {
        app.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

fn add_cors(app: &AppState, res: &mut Response) {
    let h = res.headers_mut();
    if let Some(o) = &app.cors_origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
}

fn authorized(app: &AppState, req: &Request) -> bool {
    let Some(key) = &app.api_key else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare in time independent of where the strings differ.
    let (a, b) = (given.as_bytes(), key.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= (x ^ a.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

async fn health(State(app): State<App>) -> Response {
    if let Some(why) = app.sched.unhealthy() {
        let body = Json(serde_json::json!({"status": "unhealthy", "error": why}));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else if app.sched.loading() > 0 {
        let body = Json(serde_json::json!({"status": "loading"}));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({"version": env!("CARGO_PKG_VERSION")}))
}

async fn metrics_text(State(app): State<App>) -> Response {
    let m = &app.metrics;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gen = get(&m.generated_tokens);
    let secs = get(&m.generate_us) as f64 / 1e6;
    let rate = if secs > 0.0 { gen as f64 / secs } else { 0.0 };
    let q = app.sched.queue_stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    metric(
        "hearth_requests_total",
        "counter",
        "HTTP requests received.",
        get(&m.requests).to_string(),
    );
    metric(
        "hearth_request_errors_total",
        "counter",
        "Requests answered with a 4xx or 5xx status.",
        get(&m.errors).to_string(),
    );
    metric(
        "hearth_rejected_total",
        "counter",
        "Requests refused with 503 because the queue was full.",
        get(&m.rejected).to_string(),
    );
    metric(
        "hearth_prompt_tokens_total",
        "counter",
        "Prompt tokens of finished generations.",
        get(&m.prompt_tokens).to_string(),
    );
    metric(
        "hearth_generated_tokens_total",
        "counter",
        "Tokens generated.",
        gen.to_string(),
    );
    metric(
        "hearth_tokens_per_second",
        "gauge",
        "Tokens generated per second of request time (prompt and generation), summed over requests.",
        format!("{rate:.3}"),
    );
    metric(
        "hearth_queue_depth",
        "gauge",
        "Requests waiting for a slot.",
        q.waiting.to_string(),
    );
    metric(
        "hearth_active_requests",
        "gauge",
        "Requests holding a slot.",
        q.active.to_string(),
    );
    metric(
        "hearth_batch_steps_total",
        "counter",
        "Batched decode steps of loaded models (requests decoded together).",
        q.batch_steps.to_string(),
    );
    metric(
        "hearth_batch_rows_total",
        "counter",
        "Tokens over all batched steps; over hearth_batch_steps_total, the mean batch size.",
        q.batch_rows.to_string(),
    );
    for (name, kind, help, v) in [
        (
            "hearth_kv_pages_total",
            "gauge",
            "KV cache pages in the pools of loaded batched models.",
            q.kv_pages_total,
        ),
        (
            "hearth_kv_pages_held",
            "gauge",
            "KV pages held by running requests (a page shared by several counts once).",
            q.kv_pages_held,
        ),
        (
            "hearth_kv_pages_cached",
            "gauge",
            "KV pages no request holds, kept for their cached prompt prefix.",
            q.kv_pages_cached,
        ),
        (
            "hearth_prefix_cache_hits_total",
            "counter",
            "Prompt tokens taken from the prefix cache instead of computed.",
            q.prefix_hits,
        ),
        (
            "hearth_kv_page_waits_total",
            "counter",
            "Scheduler rounds in which a prompt waited for KV pages other requests held.",
            q.page_waits,
        ),
    ] {
        metric(name, kind, help, v.to_string());
    }
    metric(
        "hearth_models_loaded",
        "gauge",
        "Models in memory.",
        q.loaded.to_string(),
    );
    metric(
        "hearth_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        format!("{:.0}", app.started.elapsed().as_secs_f64()),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Body::from(out),
    )
        .into_response()
}
