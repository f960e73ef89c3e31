//! Which models are in memory and who may use them. A model loads on the first request
//! that names it (one engine per store name) and unloads when nobody has used it for its
//! keep-alive. Each model admits at most `parallel` running and `queue` waiting requests;
//! the next one is refused at once. A running request owns one of the model's sessions
//! on a blocking thread and streams events back through a channel; a closed channel (the
//! client left) stops it between tokens and returns the session to the pool.

use super::time::KeepAlive;
use super::{ApiError, Metrics};
use crate::engine::{
    BatchCounters, Engine, EngineError, EngineOptions, Event, GenerateOptions, Session,
};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuOptions};
use crate::store::Store;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, OnceCell, OwnedSemaphorePermit, Semaphore};

/// Scheduling settings.
#[derive(Clone, Debug)]
pub struct SchedConfig {
    /// Sessions per model that generate at the same time, decoded together in batched
    /// steps (KV pages from one pool).
    pub parallel: usize,
    /// Requests per model that may wait for a session.
    pub queue: usize,
    /// Default keep-alive (None: forever).
    pub keep_alive: KeepAlive,
    /// KV-cache capacity of each session in tokens.
    pub context: usize,
    /// Prefill chunk in tokens.
    pub batch: usize,
    /// Positions in the KV page pool that the batched sessions share (None: every
    /// session at full context).
    pub kv_size: Option<usize>,
    /// How the KV cache stores K and V (None: the device's default).
    pub kv_type: Option<crate::kernels::KvType>,
    /// A chat template that replaces every model's own (`--template`).
    pub template: Option<Arc<crate::tokenizer::ChatTemplate>>,
}

/// A model in memory: the engine and its idle sessions.
pub struct Loaded {
    /// The engine.
    pub engine: Arc<Engine>,
    idle: Mutex<Vec<Session>>,
    /// Tokens each session holds.
    pub capacity: usize,
    /// The batch worker's counters, when the sessions are batched.
    pub batch: Option<Arc<BatchCounters>>,
    /// The session that serves embedding requests, made on the first one.
    embedder: Mutex<Option<crate::engine::Embedder>>,
}

/// One store name's entry: loaded or loading, with its admission counters.
pub struct ModelSlot {
    /// The canonical store name.
    pub name: String,
    /// The GGUF blob.
    pub path: PathBuf,
    /// The manifest's digest.
    pub digest: String,
    cell: OnceCell<Arc<Loaded>>,
    permits: Arc<Semaphore>,
    /// Requests admitted and not finished (waiting, loading or running).
    users: AtomicUsize,
    /// Requests holding a session.
    active: AtomicUsize,
    expiry: Mutex<Expiry>,
}

struct Expiry {
    keep_alive: KeepAlive,
    /// When the model may unload (None: never), counted from the last request's end.
    at: Option<Instant>,
    wall: Option<SystemTime>,
}

impl ModelSlot {
    /// The loaded model, if loading finished.
    pub fn loaded(&self) -> Option<&Arc<Loaded>> {
        self.cell.get()
    }

    /// When the model unloads if nothing uses it (None: never or in use).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expiry.lock().map(|e| e.wall).unwrap_or(None)
    }

    fn touch(&self, keep_alive: KeepAlive) {
        if let Ok(mut e) = self.expiry.lock() {
            e.keep_alive = keep_alive;
            e.at = keep_alive.map(|k| Instant::now() + k);
            e.wall = keep_alive.map(|k| SystemTime::now() + k);
        }
    }
}

/// Queue gauges for `/metrics`.
pub struct QueueStats {
    /// Admitted requests without a session.
    pub waiting: usize,
    /// Requests holding a session.
    pub active: usize,
    /// Models in memory.
    pub loaded: usize,
    /// Batched steps run by the loaded models' batch workers.
    pub batch_steps: u64,
    /// Their rows (tokens) in all.
    pub batch_rows: u64,
    /// KV pages of the loaded batched models: in their pools, held by sequences, and
    /// kept only for their cached prefix.
    pub kv_pages_total: u64,
    pub kv_pages_held: u64,
    pub kv_pages_cached: u64,
    /// Prompt positions taken from the prefix cache instead of computed.
    pub prefix_hits: u64,
    /// Rounds in which a prompt waited for KV pages.
    pub page_waits: u64,
}

/// Models by name, the GPU they share and the admission rules.
pub struct Scheduler {
    /// The model store names resolve in.
    pub store: Store,
    gpu_opts: GpuOptions,
    gpu: Mutex<Option<Arc<Gpu>>>,
    /// The settings.
    pub cfg: SchedConfig,
    models: Mutex<HashMap<String, Arc<ModelSlot>>>,
    loading: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A place among a model's admitted requests, given back when dropped.
struct Place {
    slot: Arc<ModelSlot>,
    keep_alive: KeepAlive,
}

/// An admitted request: keeps its model and its place in the queue until dropped.
pub struct Ticket {
    place: Place,
    /// The model, loaded.
    pub loaded: Arc<Loaded>,
    /// Time this request spent waiting for the model to load.
    pub load_duration: Duration,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.slot.touch(self.keep_alive);
        self.slot.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running generation's events; the error is already a message for the client.
pub type Events = mpsc::Receiver<Result<Event, String>>;

impl Scheduler {
    /// A scheduler over `store` with nothing loaded.
    pub fn new(
        store: Store,
        gpu_opts: GpuOptions,
        cfg: SchedConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            gpu_opts,
            gpu: Mutex::new(None),
            cfg,
            models: Mutex::new(HashMap::new()),
            loading: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Models being loaded now.
    pub fn loading(&self) -> usize {
        self.loading.load(Ordering::SeqCst)
    }

    /// The models in memory (or loading).
    pub fn slots(&self) -> Vec<Arc<ModelSlot>> {
        let map = self.models.lock().expect("models lock");
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Gauges for `/metrics`.
    pub fn queue_stats(&self) -> QueueStats {
        let mut s = QueueStats {
            waiting: 0,
            active: 0,
            loaded: 0,
            batch_steps: 0,
            batch_rows: 0,
            kv_pages_total: 0,
            kv_pages_held: 0,
            kv_pages_cached: 0,
            prefix_hits: 0,
            page_waits: 0,
        };
        for m in self.slots() {
            let (u, a) = (
                m.users.load(Ordering::SeqCst),
                m.active.load(Ordering::SeqCst),
            );
            s.waiting += u.saturating_sub(a);
            s.active += a;
            s.loaded += usize::from(m.loaded().is_some());
            if let Some(c) = m.loaded().and_then(|l| l.batch.as_ref()) {
                s.batch_steps += c.steps.load(Ordering::Relaxed);
                s.batch_rows += c.rows.load(Ordering::Relaxed);
                s.kv_pages_total += c.pages_total.load(Ordering::Relaxed);
                s.kv_pages_held += c.pages_held.load(Ordering::Relaxed);
                s.kv_pages_cached += c.pages_cached.load(Ordering::Relaxed);
                s.prefix_hits += c.prefix_hits.load(Ordering::Relaxed);
                s.page_waits += c.page_waits.load(Ordering::Relaxed);
            }
        }
        s
    }

    /// Why the server cannot serve right now: a model whose GPU device was lost (it
    /// reloads on the next request that names it). None when healthy.
    pub fn unhealthy(&self) -> Option<String> {
        self.slots().iter().find_map(|s| {
            let lost = s.loaded()?.engine.gpu().lost()?;
            Some(format!(
                "{}: GPU device lost ({lost}); it reloads on the next request",
                s.name
            ))
        })
    }

    /// Drops `name` from memory now if nobody uses it (used by delete and keep_alive 0).
    pub fn unload(&self, name: &str) {
        let mut map = self.models.lock().expect("models lock");
        if map
            .get(name)
            .is_some_and(|s| s.users.load(Ordering::SeqCst) == 0)
        {
            map.remove(name);
        }
    }

    /// Unloads every idle model whose keep-alive has passed.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut map = self.models.lock().expect("models lock");
        map.retain(|_, s| {
            let idle = s.users.load(Ordering::SeqCst) == 0;
            let expired = s
                .expiry
                .lock()
                .map(|e| e.at.is_some_and(|t| t <= now))
                .unwrap_or(true);
            let keep = !(idle && (expired || s.loaded().is_none()));
            if !keep {
                log::info!("unloading {}", s.name);
            }
            keep
        });
    }

    /// Admits a request for `name` (a canonical store name): 404 when not installed, 503
    /// when `parallel + queue` requests are in already; then waits for the model to load.
    pub async fn admit(
        &self,
        name: &str,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Ticket, ApiError> {
        let keep_alive = keep_alive.unwrap_or(self.cfg.keep_alive);
        let slot = {
            let mut map = self.models.lock().expect("models lock");
            // A model whose device was lost cannot run again: the next request starts a
            // fresh slot (and a fresh device); requests still on the old one fail.
            let lost = map
                .get(name)
                .and_then(|s| s.loaded())
                .is_some_and(|l| l.engine.gpu().lost().is_some());
            if lost {
                log::warn!("{name}: its GPU device was lost; reloading");
                map.remove(name);
            }
            let slot = match map.get(name) {
                Some(s) => s.clone(),
                None => {
                    let path = self.store.resolve_name(name)?;
                    let digest = crate::store::pull::name_for_spec(name)
                        .ok()
                        .and_then(|n| self.store.get(&n).ok().flatten())
                        .map(|m| m.digest)
                        .or_else(|| {
                            let m = self.store.find_external(name)?;
                            (!m.digest.is_empty()).then(|| format!("sha256:{}", m.digest))
                        })
                        .unwrap_or_default();
                    let s = Arc::new(ModelSlot {
                        name: name.to_string(),
                        path,
                        digest,
                        cell: OnceCell::new(),
                        permits: Arc::new(Semaphore::new(self.cfg.parallel.max(1))),
                        users: AtomicUsize::new(0),
                        active: AtomicUsize::new(0),
                        expiry: Mutex::new(Expiry {
                            keep_alive,
                            at: None,
                            wall: None,
                        }),
                    });
                    map.insert(name.to_string(), s.clone());
                    s
                }
            };
            let limit = self.cfg.parallel.max(1) + self.cfg.queue;
            if slot.users.load(Ordering::SeqCst) >= limit {
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::unavailable(format!(
                    "server busy: {name} already has {limit} requests running or queued; try again later"
                )));
            }
            slot.users.fetch_add(1, Ordering::SeqCst);
            slot
        };
        // From here the place is given back whatever happens, a dropped future included.
        let place = Place {
            slot: slot.clone(),
            keep_alive,
        };
        let start = Instant::now();
        let loaded = slot
            .cell
            .get_or_try_init(|| self.load(&slot))
            .await?
            .clone();
        Ok(Ticket {
            place,
            loaded,
            load_duration: start.elapsed(),
        })
    }

    async fn load(&self, slot: &ModelSlot) -> Result<Arc<Loaded>, ApiError> {
        struct Counting<'a>(&'a AtomicUsize);
        impl Drop for Counting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.loading.fetch_add(1, Ordering::SeqCst);
        let _guard = Counting(&self.loading);
        let gpu = self.gpu().await?;
        let path = slot.path.clone();
        let name = slot.name.clone();
        let opts = EngineOptions {
            context: self.cfg.context,
            batch: self.cfg.batch,
            template: self.cfg.template.clone(),
            kv_type: self.cfg.kv_type,
        };
        log::info!("loading {name} from {}", path.display());
        let (parallel, kv_size) = (self.cfg.parallel, self.cfg.kv_size);
        let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded, String> {
            let f = GgufFile::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let engine = Engine::load(gpu, &f, opts, &mut |_, _| {}).map_err(|e| e.to_string())?;
            // Every session up front: with several, one batched model holds a KV page
            // pool for all and decodes them together; this also checks that the KV fits.
            let sessions = match parallel {
                0 | 1 => engine.session().map(|s| vec![s]),
                n => engine.batched_sessions(n, kv_size),
            }
            .map_err(|e| e.to_string())?;
            Ok(Loaded {
                capacity: sessions.first().map_or(0, |s| s.capacity()),
                batch: sessions.first().and_then(|s| s.batch_counters()),
                engine: Arc::new(engine),
                idle: Mutex::new(sessions),
                embedder: Mutex::new(None),
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("loading {name} failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("loading {name} failed: {e}")))?;
        Ok(Arc::new(loaded))
    }

    async fn gpu(&self) -> Result<Arc<Gpu>, ApiError> {
        if let Some(g) = self.gpu.lock().expect("gpu lock").clone() {
            if g.lost().is_none() {
                return Ok(g);
            }
        }
        let opts = self.gpu_opts.clone();
        let gpu = tokio::task::spawn_blocking(move || Gpu::new_blocking(&opts))
            .await
            .map_err(|e| ApiError::internal(format!("GPU: {e}")))?
            .map_err(|e| ApiError::internal(format!("GPU: {e}")))?;
        let mut cell = self.gpu.lock().expect("gpu lock");
        if cell.as_ref().is_none_or(|g| g.lost().is_some()) {
            *cell = Some(gpu);
        }
        Ok(cell.clone().expect("just set"))
    }
}

impl Ticket {
    /// Waits for a free session, then starts generating `ids` on a blocking thread.
    /// Dropping the returned receiver stops the generation before its next token.
    pub async fn run(
        self,
        ids: Vec<u32>,
        opts: GenerateOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Events, ApiError> {
        let slot = self.place.slot.clone();
        let permit: OwnedSemaphorePermit = slot
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the model is unloading"))?;
        let (tx, rx) = mpsc::channel(64);
        // Raised when the client goes away, so that a long prefill stops between passes.
        let cancel = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (tx, cancel) = (tx.clone(), cancel.clone());
            tokio::spawn(async move {
                tx.closed().await;
                cancel.store(true, Ordering::Relaxed);
            })
        };
        tokio::task::spawn_blocking(move || {
            slot.active.fetch_add(1, Ordering::SeqCst);
            // Whatever happens below, a panic included, the watcher (which holds a
            // sender, so the client's stream could never end) stops and the slot frees.
            let running = Running { slot, watcher };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                generate(&self.loaded, ids, opts, &tx, &cancel, &metrics)
            }))
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!("generation panicked: {why}");
                Err(format!("internal error: generation failed ({why})"))
            });
            // The session and the request's place are given back before the final event
            // goes out: a client that sends its next request the moment this one ends
            // must find the place free (the queue bound counts places).
            drop(permit);
            drop(self);
            drop(running);
            let last = match result {
                Ok(Some(done)) => Ok(done),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(rx)
    }
}

/// One input of an embedding request: text, or token ids (OpenAI).
pub enum EmbedInput {
    /// Tokenized with the model's tokenizer (special tokens added).
    Text(String),
    /// Fed as they are.
    Ids(Vec<u32>),
}

impl Ticket {
    /// Waits for a place among the model's running requests, then embeds `inputs` on a
    /// blocking thread through the model's embedding session. Errors of the input (too
    /// long without truncation, empty, ids out of range, bad dimensions) are 400s.
    pub async fn embed(
        self,
        inputs: Vec<EmbedInput>,
        opts: crate::engine::EmbedOptions,
    ) -> Result<crate::engine::Embeddings, ApiError> {
        let slot = self.place.slot.clone();
        let permit: OwnedSemaphorePermit = slot
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the model is unloading"))?;
        let loaded = self.loaded.clone();
        let result = tokio::task::spawn_blocking(move || {
            slot.active.fetch_add(1, Ordering::SeqCst);
            let out = embed_on(&loaded, inputs, &opts);
            slot.active.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await
        .map_err(|e| ApiError::internal(format!("embedding failed: {e}")));
        drop(permit);
        drop(self);
        result?
    }
}

/// Embeds on the calling (blocking) thread with the model's embedding session.
fn embed_on(
    loaded: &Loaded,
    inputs: Vec<EmbedInput>,
    opts: &crate::engine::EmbedOptions,
) -> Result<crate::engine::Embeddings, ApiError> {
    use crate::model::ModelError;
    let mut cell = loaded
        .embedder
        .lock()
        .map_err(|_| ApiError::internal("embedding session poisoned"))?;
    if cell.is_none() {
        let e = loaded
            .engine
            .embedder()
            .map_err(|e| ApiError::internal(format!("embedding session: {e}")))?;
        *cell = Some(e);
    }
    let e = cell.as_mut().expect("just set");
    let client = |err: EngineError| match err {
        EngineError::ContextOverflow { .. }
        | EngineError::EmptyPrompt
        | EngineError::Tokenizer(_)
        | EngineError::Model(ModelError::Input(_))
        | EngineError::Model(ModelError::TokenOutOfRange { .. })
        | EngineError::Model(ModelError::ContextFull { .. }) => {
            ApiError::bad_request(err.to_string())
        }
        other => ApiError::internal(other.to_string()),
    };
    let ids = inputs
        .into_iter()
        .map(|i| match i {
            EmbedInput::Text(t) => e.tokenize(&t, opts.truncate),
            EmbedInput::Ids(mut ids) => {
                let max = e.max_tokens();
                if ids.len() > max && opts.truncate {
                    ids.truncate(max);
                }
                Ok(ids)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(client)?;
    pollster::block_on(e.embed_all(&ids, opts)).map_err(client)
}

/// A running request's hold on its slot, given back when dropped (unwinding included).
struct Running {
    slot: Arc<ModelSlot>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.watcher.abort();
        self.slot.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one generation on the calling (blocking) thread, sending every event but the
/// last (`Done`), which it returns.
fn generate(
    loaded: &Loaded,
    ids: Vec<u32>,
    opts: GenerateOptions,
    tx: &mpsc::Sender<Result<Event, String>>,
    cancel: &Arc<AtomicBool>,
    metrics: &Metrics,
) -> Result<Option<Event>, String> {
    if tx.is_closed() {
        return Ok(None);
    }
    let mut session = take_session(loaded, &ids)?;
    session.set_cancel(Some(cancel.clone()));
    let outcome = (|| {
        let stream = session
            .generate_tokens(ids, opts)
            .map_err(|e| e.to_string())?;
        let mut stream = std::pin::pin!(stream);
        let mut sent = 0;
        loop {
            if tx.is_closed() {
                return Ok(None);
            }
            match pollster::block_on(stream.next()) {
                None | Some(Err(EngineError::Cancelled)) => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(ev)) => {
                    if let Event::Done { stats, .. } = &ev {
                        let m = metrics;
                        m.prompt_tokens
                            .fetch_add(stats.prompt_tokens as u64, Ordering::Relaxed);
                        m.generated_tokens
                            .fetch_add(stats.generated as u64, Ordering::Relaxed);
                        let us = (stats.generate_duration + stats.prompt_duration).as_micros();
                        m.generate_us.fetch_add(us as u64, Ordering::Relaxed);
                        // The last event; the caller sends it once the session is back.
                        return Ok(Some(ev));
                    }
                    let token = matches!(ev, Event::Token { .. });
                    if tx.blocking_send(Ok(ev)).is_err() {
                        return Ok(None);
                    }
                    if token {
                        sent += 1;
                        inject_fault(loaded, sent);
                    }
                }
            }
        }
    })();
    session.set_cancel(None);
    if let Ok(mut idle) = loaded.idle.lock() {
        idle.push(session);
    }
    outcome
}

/// Faults a test can ask for through `HEARTH_FAULT_INJECT`: `panic:N` panics and
/// `lose-device:N` destroys the GPU device right after a request's N-th token. They let the
/// server tests prove that a failed generation ends its response with an error, frees its
/// slot, and (for a lost device) reports unhealthy and reloads. Unset in normal use.
fn inject_fault(loaded: &Loaded, sent: usize) {
    static FAULT: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    let fault = FAULT.get_or_init(|| {
        let v = std::env::var("HEARTH_FAULT_INJECT").ok()?;
        let (kind, n) = v.split_once(':')?;
        Some((kind.to_string(), n.parse().ok()?))
    });
    match fault {
        Some((kind, n)) if *n == sent && kind == "panic" => panic!("injected fault"),
        Some((kind, n)) if *n == sent && kind == "lose-device" => {
            log::warn!("HEARTH_FAULT_INJECT: destroying the GPU device");
            loaded.engine.gpu().device.destroy();
        }
        _ => {}
    }
}

/// The idle session whose cache shares the longest prefix with `ids`, or a new one.
fn take_session(loaded: &Loaded, ids: &[u32]) -> Result<Session, String> {
    let best = {
        let mut idle = loaded.idle.lock().map_err(|_| "session pool poisoned")?;
        let best = idle
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| {
                s.cached_tokens()
                    .iter()
                    .zip(ids)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .map(|(i, _)| i);
        best.map(|i| idle.swap_remove(i))
    };
    match best {
        Some(s) => Ok(s),
        None => loaded.engine.session().map_err(|e| e.to_string()),
    }
}
