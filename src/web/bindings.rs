//! The `Hearth` class JavaScript sees. One instance owns the WebGPU device, at most one
//! loaded model and its chat session. Every method that works returns a `Promise`;
//! nothing blocks the page except the weight upload itself (one synchronous pass of
//! `queue.writeBuffer` calls).
//!
//! ```js
//! const hearth = await Hearth.create();
//! await hearth.load("model.gguf", { context: 2048 }, p => console.log(p.phase, p.done, p.total));
//! const stats = await hearth.generate("Once upon", { raw: true, temperature: 0, num_predict: 32 },
//!                                     (text, id) => out.textContent += text);
//! ```

use super::params::{generate_params, load_options, prompt};
use super::source::{describe, read_all};
use crate::engine::{Engine, Event, Session, Stats};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuOptions};
use futures::StreamExt;
use js_sys::{Function, Promise};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_time::{Duration, Instant};

fn err(msg: impl Into<String>) -> JsValue {
    js_sys::Error::new(&msg.into()).into()
}

/// A JS value as JSON (`undefined` and `null` become `Value::Null`).
fn to_json(v: &JsValue) -> Result<Value, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(Value::Null);
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::String(s));
    }
    let text: String = js_sys::JSON::stringify(v)?.into();
    serde_json::from_str(&text).map_err(|e| err(format!("not JSON-like: {e}")))
}

/// A JSON value as a plain JS object.
fn from_json(v: &Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

/// Lets the browser paint (a macrotask turn) before long synchronous work.
async fn yield_to_page() {
    let promise = Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("hearth panicked: {info}").into());
        }));
    });
}

/// A model on the GPU and the session that chats with it.
struct Loaded {
    engine: Engine,
    session: Session,
}

struct Inner {
    gpu: Arc<Gpu>,
    loaded: RefCell<Option<Loaded>>,
    /// A load or a generation is running (its state is out of `loaded`).
    busy: Cell<bool>,
    /// Stop the running generation after the current token.
    cancel: Cell<bool>,
    /// Drop the model when the running generation ends.
    unload_after: Cell<bool>,
}

impl Inner {
    fn start(&self, what: &str) -> Result<(), JsValue> {
        if self.busy.replace(true) {
            return Err(err(format!(
                "cannot {what}: a load or generation is still running (await it or cancel())"
            )));
        }
        self.cancel.set(false);
        Ok(())
    }
}

/// hearth in the page: one WebGPU device, one model at a time.
#[wasm_bindgen]
pub struct Hearth {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Hearth {
    /// Requests the adapter and a device with the adapter's real limits (and
    /// `shader-f16`/subgroups when offered).
    pub async fn create() -> Result<Hearth, JsValue> {
        install_panic_hook();
        let gpu = Gpu::new(&GpuOptions::default()).await.map_err(|e| {
            err(format!(
                "{e}; this browser may not support WebGPU (Chrome/Edge 113+, or enable it in the browser's flags)"
            ))
        })?;
        Ok(Hearth {
            inner: Rc::new(Inner {
                gpu,
                loaded: RefCell::new(None),
                busy: Cell::new(false),
                cancel: Cell::new(false),
                unload_after: Cell::new(false),
            }),
        })
    }

    /// The adapter and the limits hearth works within.
    pub fn adapter(&self) -> JsValue {
        let g = &self.inner.gpu;
        from_json(&json!({
            "name": g.info.name,
            "description": g.describe(),
            "backend": format!("{:?}", g.info.backend),
            "device_type": format!("{:?}", g.info.device_type),
            "driver": g.info.driver,
            "shader_f16": g.features.shader_f16,
            "subgroups": g.features.subgroups,
            "max_storage_buffer_binding_size": g.limits.max_storage_buffer_binding_size,
            "max_buffer_size": g.limits.max_buffer_size,
            "max_binding": g.max_binding,
        }))
    }

    /// Loads a GGUF from a URL, `Response`, `File`/`Blob`, `Uint8Array` or `ArrayBuffer`
    /// (replacing the current model). `options`: `{context, batch}`. `on_progress` gets
    /// `{phase: "download"|"parse"|"upload", done, total}`. Resolves to facts about the
    /// model; rejects with a readable error, e.g. when a tensor cannot fit this adapter's
    /// limits (checked before any upload).
    pub fn load(
        &self,
        source: JsValue,
        options: JsValue,
        on_progress: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let opts = load_options(&to_json(&options)?).map_err(err)?;
            inner.start("load")?;
            // Free the old model's GPU memory before the new one arrives.
            inner.loaded.borrow_mut().take();
            let result = load(&inner, &source, opts, on_progress.as_ref()).await;
            inner.busy.set(false);
            let unloaded = inner.unload_after.replace(false);
            let loaded = result?;
            if unloaded {
                return Err(err("unload() was called while the model was loading"));
            }
            let info = model_facts(&loaded.engine);
            *inner.loaded.borrow_mut() = Some(loaded);
            Ok(info)
        })
    }

    /// Generates from `input` (a string, or a list of `{role, content}` messages) with
    /// `params` named like the CLI's flags (`temperature`, `top_k`, `top_p`, `min_p`,
    /// `repeat_penalty`, `repeat_last_n`, `presence_penalty`, `frequency_penalty`,
    /// `seed`, `num_predict`, `stop`, plus `raw` and `system`). `on_token(text, id, ms)`
    /// runs per token. Resolves to `{text, ids, finish_reason, tokens_per_s, ...}`.
    pub fn generate(&self, input: JsValue, params: JsValue, on_token: Option<Function>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let params = generate_params(&to_json(&params)?).map_err(err)?;
            let prompt = prompt(&to_json(&input)?, &params).map_err(err)?;
            let mut loaded = match inner.loaded.borrow_mut().take() {
                Some(l) => l,
                None if inner.busy.get() => return Err(err(
                    "cannot generate: a load or generation is still running (await it or cancel())",
                )),
                None => return Err(err("no model is loaded; call load() first")),
            };
            inner.busy.set(true);
            inner.cancel.set(false);
            let result = generate(
                &inner,
                &mut loaded.session,
                &prompt,
                params.options,
                on_token.as_ref(),
            )
            .await;
            inner.busy.set(false);
            if !inner.unload_after.replace(false) {
                *inner.loaded.borrow_mut() = Some(loaded);
            }
            result
        })
    }

    /// Stops the running generation after its current token (its promise resolves with
    /// `finish_reason: "cancelled"`) or the running download (its promise rejects).
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Forgets the conversation held in the KV cache.
    pub fn reset(&self) {
        if let Some(l) = self.inner.loaded.borrow_mut().as_mut() {
            l.session.reset();
        }
    }

    /// Frees the model (at once, or when the running load or generation has stopped).
    pub fn unload(&self) {
        if self.inner.loaded.borrow_mut().take().is_none() && self.inner.busy.get() {
            self.inner.unload_after.set(true);
            self.inner.cancel.set(true);
        }
    }

    /// Times every kernel of a prefill of `prompt_tokens` (default 32) tokens and of
    /// `n_gen` (default 8) decode steps with WebGPU timestamp queries and resolves to the
    /// report `hearth profile -o json` prints (per phase, one row per kernel). Rejects
    /// when the device has no `timestamp-query`. Forgets the conversation.
    pub fn profile(&self, params: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let p = to_json(&params)?;
            let count = |key: &str, default: u64| match p.get(key) {
                None | Some(Value::Null) => Ok(default as usize),
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| err(format!("profile option '{key}' must be a count"))),
            };
            let (n_prompt, n_gen) = (count("prompt_tokens", 32)?, count("n_gen", 8)?);
            let mut loaded = match inner.loaded.borrow_mut().take() {
                Some(l) => l,
                None if inner.busy.get() => {
                    return Err(err("cannot profile: a load or generation is still running"))
                }
                None => return Err(err("no model is loaded; call load() first")),
            };
            inner.busy.set(true);
            let result = profile(&mut loaded, n_prompt, n_gen).await;
            inner.busy.set(false);
            if !inner.unload_after.replace(false) {
                *inner.loaded.borrow_mut() = Some(loaded);
            }
            result
        })
    }

    /// Facts about the loaded model, or `null`.
    pub fn model(&self) -> JsValue {
        match self.inner.loaded.borrow().as_ref() {
            Some(l) => model_facts(&l.engine),
            None => JsValue::NULL,
        }
    }
}

async fn profile(loaded: &mut Loaded, n_prompt: usize, n_gen: usize) -> Result<JsValue, JsValue> {
    use crate::profile::{json, profile_model, ProfileOptions};
    let capacity = loaded.session.capacity();
    if n_prompt + n_gen.max(2) > capacity {
        return Err(err(format!(
            "profile: {n_prompt} prompt tokens + {n_gen} steps exceed the context of {capacity}"
        )));
    }
    // Ids spread over the vocabulary, as `hearth profile` uses.
    let vocab = loaded.engine.config().vocab.max(2) as u64;
    let prompt = (0..n_prompt as u64)
        .map(|i| (1 + i * 7919 % (vocab - 1)) as u32)
        .collect();
    let opts = ProfileOptions {
        prompt,
        n_gen,
        peak: true,
        parallel: 1,
    };
    let model = loaded
        .session
        .model_mut()
        .map_err(|e| err(format!("profile: {e}")))?;
    let run = profile_model(model, &opts).await;
    loaded.session.reset();
    let run = run.map_err(|e| err(format!("profile: {e}")))?;
    Ok(from_json(&json(&[run])))
}

fn progress(cb: Option<&Function>, phase: &str, done: f64, total: f64) {
    if let Some(cb) = cb {
        let p = from_json(&json!({ "phase": phase, "done": done, "total": total }));
        let _ = cb.call1(&JsValue::NULL, &p);
    }
}

async fn load(
    inner: &Inner,
    source: &JsValue,
    opts: crate::engine::EngineOptions,
    on_progress: Option<&Function>,
) -> Result<Loaded, JsValue> {
    let bytes = read_all(source, &mut |done, total| {
        progress(on_progress, "download", done as f64, total as f64);
        !inner.cancel.get()
    })
    .await?;
    progress(on_progress, "parse", 0.0, 1.0);
    yield_to_page().await;
    let file =
        GgufFile::from_bytes(bytes).map_err(|e| err(format!("not a usable GGUF file: {e}")))?;
    let engine = Engine::load(inner.gpu.clone(), &file, opts, &mut |done, total| {
        progress(on_progress, "upload", done as f64, total as f64)
    })
    .map_err(|e| err(e.to_string()))?;
    // The file's bytes are on the GPU now; free the wasm copy.
    drop(file);
    let session = engine.session().map_err(|e| err(e.to_string()))?;
    Ok(Loaded { engine, session })
}

fn model_facts(engine: &Engine) -> JsValue {
    let i = engine.info();
    from_json(&json!({
        "arch": i.arch,
        "name": i.name,
        "params": i.params,
        "bytes": i.bytes,
        "quant": i.quant,
        "train_context": i.train_context,
        "has_template": engine.template().is_some(),
        "memory": engine.memory().describe(),
        "load_ms": engine.load_time().as_secs_f64() * 1e3,
    }))
}

fn stats_json(stats: &Stats, reason: &str, text: String, ids: Vec<u32>) -> JsValue {
    from_json(&json!({
        "text": text,
        "ids": ids,
        "finish_reason": reason,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "prompt_ms": stats.prompt_duration.as_secs_f64() * 1e3,
        "prompt_tokens_per_s": stats.prompt_rate(),
        "generated": stats.generated,
        "generate_ms": stats.generate_duration.as_secs_f64() * 1e3,
        "tokens_per_s": stats.generate_rate(),
    }))
}

async fn generate(
    inner: &Inner,
    session: &mut Session,
    prompt: &crate::engine::Prompt,
    opts: crate::engine::GenerateOptions,
    on_token: Option<&Function>,
) -> Result<JsValue, JsValue> {
    let start = Instant::now();
    let prompt_tokens = session
        .tokenize_prompt(prompt)
        .map_err(|e| err(e.to_string()))?
        .len();
    let stream = session
        .generate(prompt, opts)
        .map_err(|e| err(e.to_string()))?;
    futures::pin_mut!(stream);
    let mut text = String::new();
    let mut ids = Vec::new();
    let mut first: Option<Instant> = None;
    while let Some(event) = stream.next().await {
        match event.map_err(|e| err(e.to_string()))? {
            Event::Token {
                id,
                text: piece,
                at,
            } => {
                first.get_or_insert_with(Instant::now);
                ids.push(id);
                text.push_str(&piece);
                if let Some(cb) = on_token {
                    let ms = JsValue::from(at.as_secs_f64() * 1e3);
                    cb.call3(&JsValue::NULL, &piece.into(), &id.into(), &ms)
                        .map_err(|e| err(format!("onToken threw: {}", describe(&e))))?;
                }
                if inner.cancel.get() {
                    let now = Instant::now();
                    let first = first.unwrap_or(now);
                    let stats = Stats {
                        prompt_tokens,
                        cached_tokens: 0,
                        prompt_duration: first - start,
                        generated: ids.len(),
                        generate_duration: now - first,
                        reason: crate::engine::FinishReason::Stop,
                        masks: 0,
                        mask_duration: Duration::ZERO,
                    };
                    return Ok(stats_json(&stats, "cancelled", text, ids));
                }
            }
            Event::Done { text: rest, stats } => {
                if let Some(cb) = on_token.filter(|_| !rest.is_empty()) {
                    let _ = cb.call3(
                        &JsValue::NULL,
                        &rest.clone().into(),
                        &JsValue::NULL,
                        &JsValue::NULL,
                    );
                }
                text.push_str(&rest);
                return Ok(stats_json(&stats, stats.reason.as_str(), text, ids));
            }
        }
    }
    Err(err("generation ended without a result"))
}
