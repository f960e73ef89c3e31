//! The engine: a model loaded once (weights on the GPU, tokenizer, chat template) and
//! sessions that each own a KV cache. `Session::generate` turns a prompt or a conversation
//! into a `futures::Stream` of token events with timings. Nothing here blocks: GPU
//! readbacks are awaited, so the same code drives the CLI (through `pollster`), the
//! server and the browser build.
//!
//! A session remembers which tokens its KV cache holds. A new prompt that starts with
//! them (the next turn of a chat, rendered whole by the template) only feeds the rest.
//! Context policy: a prompt longer than the context is an error before any GPU work;
//! generation that fills the context stops with `FinishReason::Length`.

// wgpu handles are not Send/Sync on wasm, where there is a single thread anyway.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

use crate::constraint::{Constraint, ConstraintError, Format, Grammars, Pending};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuError};
use crate::graph::{LoadOptions, MemoryPlan, Model, MAX_PENALTY_IDS, SAMPLE_K};
use crate::model::{file_type_name, ModelConfig, ModelError, Weights};
use crate::sampling::{ParamError, Sampler, SamplingParams, StopMatcher};
use crate::tokenizer::{
    ChatTemplate, Message, RenderOptions, StreamDecoder, TemplateError, Tokenizer, TokenizerError,
};
use crate::tools::ToolSetup;
use futures::Stream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;
use web_time::{Duration, Instant};

#[cfg(not(target_arch = "wasm32"))]
mod batcher;
#[cfg(not(target_arch = "wasm32"))]
pub use batcher::BatchCounters;
#[cfg(not(target_arch = "wasm32"))]
use batcher::SlotModel;
mod embed;
pub use embed::{l2_normalize, EmbedOptions, Embedder, Embeddings};
mod pick;
use pick::{Penalty, Pick, Want};

/// Everything that can go wrong between a prompt and its tokens.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU operation failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The vocabulary could not be built or the text not tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(#[from] TemplateError),
    /// A sampling parameter is out of range.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The prompt alone does not fit the context.
    #[error("the prompt is {prompt} tokens but the context holds {capacity}; shorten it or raise the context size")]
    ContextOverflow {
        /// Prompt tokens.
        prompt: usize,
        /// Context capacity.
        capacity: usize,
    },
    /// A conversation was given but there is no template to render it.
    #[error("the model has no chat template and none is built in for '{0}'; pass a template file or use raw mode")]
    NoTemplate(String),
    /// Nothing to feed the model.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The session's cancel flag was raised during the prompt.
    #[error("cancelled")]
    Cancelled,
    /// The output constraint (grammar, schema, regular expression) cannot be used.
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// The model is an encoder that only embeds (BERT, EmbeddingGemma).
    #[error("'{0}' is an embedding model (a non-causal encoder): it does not generate text; embed with /api/embed, /v1/embeddings or `hearth embed`")]
    EmbeddingOnly(&'static str),
}

/// Options fixed when the engine loads.
#[derive(Clone)]
pub struct EngineOptions {
    /// KV-cache capacity per session in tokens (clamped to the model's context length).
    pub context: usize,
    /// Prefill chunk size in tokens.
    pub batch: usize,
    /// A chat template that replaces the model's own.
    pub template: Option<Arc<ChatTemplate>>,
    /// How the KV cache stores K and V (None: f16 where the device has shader-f16).
    pub kv_type: Option<crate::kernels::KvType>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            batch: 256,
            template: None,
            kv_type: None,
        }
    }
}

/// Facts about the loaded model, for `show`, `bench` and the server.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// `general.architecture`.
    pub arch: String,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// Parameters (elements of all tensors).
    pub params: u64,
    /// Bytes of tensor data in the file.
    pub bytes: u64,
    /// The quantization mix, e.g. "mostly Q4_K_M".
    pub quant: String,
    /// Context length the model was trained for.
    pub train_context: usize,
}

impl ModelInfo {
    fn from_gguf(f: &GgufFile, cfg: &ModelConfig) -> Self {
        Self {
            arch: cfg.arch.name().to_string(),
            name: f.get_str("general.name").ok().flatten().map(str::to_string),
            params: f.tensors.iter().map(|t| t.n_elements()).sum(),
            bytes: f.tensors.iter().map(|t| t.n_bytes).sum(),
            quant: match f.get_u32("general.file_type") {
                Ok(Some(ft)) => file_type_name(ft).to_string(),
                _ => "unknown".into(),
            },
            train_context: cfg.context,
        }
    }
}

/// A model on the GPU with its tokenizer and template, ready to open sessions.
pub struct Engine {
    gpu: Arc<Gpu>,
    cfg: ModelConfig,
    weights: Arc<Weights>,
    memory: MemoryPlan,
    tokenizer: Arc<Tokenizer>,
    grammars: Arc<Grammars>,
    template: Option<Arc<ChatTemplate>>,
    info: ModelInfo,
    load_time: Duration,
}

impl Engine {
    /// Reads the tokenizer and template, checks the memory plan, and uploads the weights
    /// (calling `progress(done, total)` as layers arrive).
    pub fn load(
        gpu: Arc<Gpu>,
        f: &GgufFile,
        opts: EngineOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, EngineError> {
        let start = Instant::now();
        let tokenizer = Tokenizer::from_gguf(f)?;
        let template = match opts.template {
            Some(t) => Some(t),
            None => ChatTemplate::for_model(f)?.map(Arc::new),
        };
        let load = LoadOptions {
            context: opts.context,
            batch: opts.batch,
            all_logits: false,
            sequences: 1,
            kv_size: None,
            kv_type: opts.kv_type,
        };
        let (cfg, weights, memory) = Model::upload(&gpu, f, &load, progress)?;
        let tokenizer = Arc::new(tokenizer);
        Ok(Self {
            info: ModelInfo::from_gguf(f, &cfg),
            gpu,
            cfg,
            weights,
            memory,
            grammars: Arc::new(Grammars::new(tokenizer.clone())),
            tokenizer,
            template,
            load_time: start.elapsed(),
        })
    }

    /// A new session with its own KV cache of the engine's context size.
    pub fn session(&self) -> Result<Session, EngineError> {
        let model = Model::with_weights(
            self.gpu.clone(),
            self.cfg.clone(),
            self.weights.clone(),
            self.memory.clone(),
        )?;
        Ok(self.session_over(SeqModel::Own(Box::new(model))))
    }

    /// A session that embeds (its own KV cache and plans over the weights).
    pub fn embedder(&self) -> Result<Embedder, EngineError> {
        let model = Model::with_weights(
            self.gpu.clone(),
            self.cfg.clone(),
            self.weights.clone(),
            self.memory.clone(),
        )?;
        Ok(Embedder::new(model, self.tokenizer.clone()))
    }

    /// The embeddings of `texts` through a new `embedder` (servers keep one instead).
    pub async fn embed(
        &self,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Result<Embeddings, EngineError> {
        self.embedder()?.embed(texts, opts).await
    }

    fn session_over(&self, model: SeqModel) -> Session {
        Session {
            model,
            tokenizer: self.tokenizer.clone(),
            grammars: self.grammars.clone(),
            template: self.template.clone(),
            cached: Vec::new(),
            cancel: None,
        }
    }

    /// `n` sessions that generate together: one model, whose KV page pool (`kv_size`
    /// positions; None: `n` x the engine's context) they share, each up to the engine's
    /// context size, and a worker thread runs every session's next token in
    /// one batched step (continuous batching; see `batcher`). Each session is used like
    /// any other, one generation at a time.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn batched_sessions(
        &self,
        n: usize,
        kv_size: Option<usize>,
    ) -> Result<Vec<Session>, EngineError> {
        let n = n.clamp(1, crate::kernels::MAX_ROWS);
        let mut memory = self.memory.with_sequences(&self.cfg, n);
        if let Some(k) = kv_size {
            memory = memory.with_kv_size(&self.cfg, k);
        }
        memory.check_buffers(self.gpu.max_binding)?;
        let model = Model::with_weights(
            self.gpu.clone(),
            self.cfg.clone(),
            self.weights.clone(),
            memory,
        )?;
        Ok(batcher::slots(model)?
            .into_iter()
            .map(|slot| self.session_over(SeqModel::Slot(Box::new(slot))))
            .collect())
    }

    /// The prompt's token ids as a session's `generate` would feed them, without a GPU.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        tokenize_prompt(
            &self.tokenizer,
            self.template.as_deref(),
            self.cfg.arch.name(),
            prompt,
        )
    }

    /// Whether `format` compiles for this model's vocabulary (the first use builds the
    /// vocabulary's token trie).
    pub fn check_format(&self, format: &Format) -> Result<(), EngineError> {
        self.grammars.constraint(format)?;
        Ok(())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template in use, if any.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_deref()
    }

    /// Hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// What a session allocates, and the weights.
    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Time `load` took (tokenizer, template, upload).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// What to feed the model.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// Fed as is: BOS is added per the vocabulary and special-token spellings
    /// (`<start_of_turn>`) become those tokens, as in llama.cpp.
    Raw(String),
    /// A conversation rendered by the chat template, ending with the model's turn.
    Chat(Vec<Message>),
    /// A conversation with tools the model may call: rendered through the template's
    /// own `tools` when it has them, else with a system message describing them
    /// (`ToolSetup::prepare`).
    ChatTools(Vec<Message>, ToolSetup),
}

/// Per-request generation settings.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Most tokens to generate (None: until an end token or the context is full).
    pub max_tokens: Option<usize>,
    /// Text that ends generation; never part of the output.
    pub stop: Vec<String>,
    /// What the output must match (JSON, a JSON schema, a grammar, a regular
    /// expression); generation stops once the match is complete and nothing may follow.
    pub format: Option<Format>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop sequence.
    Stop,
    /// `max_tokens` reached or the context full.
    Length,
}

impl FinishReason {
    /// The name ollama and OpenAI use.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Counts and timings of one generation.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens reused from the KV cache (not evaluated again).
    pub cached_tokens: usize,
    /// Time from the start to the first token (prefill and the first sample).
    pub prompt_duration: Duration,
    /// Tokens generated (the end token not counted).
    pub generated: usize,
    /// Time spent generating after the first token.
    pub generate_duration: Duration,
    /// Why it ended.
    pub reason: FinishReason,
    /// Constraint masks computed (one per sampled token of a constrained generation).
    pub masks: usize,
    /// Time spent computing them (on the CPU, while the GPU finishes each step).
    pub mask_duration: Duration,
}

impl Stats {
    /// Prompt tokens evaluated per second.
    pub fn prompt_rate(&self) -> f64 {
        rate(
            self.prompt_tokens - self.cached_tokens,
            self.prompt_duration,
        )
    }

    /// Tokens generated per second after the first.
    pub fn generate_rate(&self) -> f64 {
        rate(self.generated.saturating_sub(1), self.generate_duration)
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// One item of the stream `Session::generate` returns.
#[derive(Clone, Debug)]
pub enum Event {
    /// A generated token and the text it releases (may be empty while a multi-byte
    /// character or a possible stop sequence is incomplete).
    Token {
        /// The token id.
        id: u32,
        /// Newly released text.
        text: String,
        /// Time since `generate` was called.
        at: Duration,
    },
    /// The end, with the text still held and the statistics.
    Done {
        /// Text released at the end (held bytes flushed).
        text: String,
        /// Counts and timings.
        stats: Stats,
    },
}

/// What a session runs on: its own model (KV cache and plans), or a slot of a model
/// shared by batched sessions.
enum SeqModel {
    Own(Box<Model>),
    #[cfg(not(target_arch = "wasm32"))]
    Slot(Box<SlotModel>),
}

impl SeqModel {
    fn pos(&self) -> usize {
        match self {
            Self::Own(m) => m.pos(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.pos(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Self::Own(m) => m.capacity(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.capacity(),
        }
    }

    fn batch(&self) -> usize {
        match self {
            Self::Own(m) => m.batch(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.batch(),
        }
    }

    fn cfg(&self) -> &ModelConfig {
        match self {
            Self::Own(m) => &m.cfg,
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.cfg(),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Own(m) => m.reset(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.truncate(0),
        }
    }

    fn truncate(&mut self, pos: usize) {
        match self {
            Self::Own(m) => m.truncate(pos),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.truncate(pos),
        }
    }

    /// Feeds `ids` (a batched session's last ids travel with the next `pick`).
    fn forward(&mut self, ids: &[u32]) -> Result<(), EngineError> {
        match self {
            Self::Own(m) => Ok(m.forward(ids)?),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.forward(ids),
        }
    }

    /// Waits for the fed work (between prompt chunks, so a cancel is seen).
    #[cfg(not(target_arch = "wasm32"))]
    fn wait(&self) -> Result<(), EngineError> {
        match self {
            Self::Own(m) => Ok(m.gpu.wait()?),
            Self::Slot(_) => Ok(()),
        }
    }

    /// The own model when feeding ahead pays there (never for a batched session).
    fn ahead(&mut self) -> Option<&mut Model> {
        match self {
            Self::Own(m) if m.feeds_ahead() => Some(m),
            _ => None,
        }
    }

    /// The next token per `want`, after what was fed.
    async fn pick(&mut self, want: Want) -> Result<Pick, EngineError> {
        match self {
            Self::Own(m) => Ok(match want {
                Want::Argmax => Pick::Argmax(m.argmax().await?),
                Want::TopK {
                    k,
                    penalties,
                    allowed,
                } => {
                    if let Some(p) = penalties {
                        m.apply_penalties(&p.window, p.repeat, p.presence, p.frequency)?;
                    }
                    let top = m.sample_top_k(k).await?;
                    Pick::TopK(match pick::allowed_of(top, allowed.as_deref()) {
                        Ok(c) => c,
                        Err(mask) => pick::top_allowed(&m.logits().await?, mask),
                    })
                }
            }),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.pick(want),
        }
    }

    /// A batched session's sequence starts from the cached pages of the longest prefix
    /// of `ids` that ended sequences left (whole pages shared, a page matched in part
    /// copied); returns the positions adopted. A session of its own keeps its own cache
    /// instead.
    fn share_prefix(&mut self, ids: &[u32]) -> Result<usize, EngineError> {
        let _ = ids; // only batched sessions (not on wasm) share
        match self {
            Self::Own(_) => Ok(0),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Slot(s) => s.share_prefix(ids),
        }
    }

    /// A prompt ending at position `end` is about to be fed (a batched session takes
    /// its KV pages for all of it with its first chunk).
    fn expect(&mut self, end: usize) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Self::Slot(s) = self {
            s.expect(end);
        }
        let _ = end;
    }

    /// The generation ended (a batched round stops waiting for it): a batched session publishes the pages of `cached`
    /// (what its sequence holds) to the prefix cache and gives its KV pages back to the
    /// shared pool at once, so `cached` empties; a session of its own keeps its cache.
    fn end(&mut self, cached: &mut Vec<u32>) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Self::Slot(s) = self {
            s.release(std::mem::take(cached));
        }
        let _ = cached;
    }
}

/// A sequence with its own KV cache (or a slot of a batched model's paged cache) over
/// an engine's weights.
pub struct Session {
    model: SeqModel,
    tokenizer: Arc<Tokenizer>,
    grammars: Arc<Grammars>,
    template: Option<Arc<ChatTemplate>>,
    /// The tokens whose keys and values are in the cache, in order.
    cached: Vec<u32>,
    /// Checked between prefill passes (the server raises it when the client leaves).
    cancel: Option<Arc<AtomicBool>>,
}

impl Session {
    /// A flag that, once raised, stops a long prompt between two prefill passes (the
    /// stream then yields `EngineError::Cancelled`). Between generated tokens, dropping
    /// the stream is the way to stop.
    pub fn set_cancel(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.cancel = flag;
    }

    /// The counters of the batch worker this session steps through (None: a session
    /// of its own).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn batch_counters(&self) -> Option<Arc<BatchCounters>> {
        match &self.model {
            SeqModel::Slot(s) => Some(s.counters().clone()),
            SeqModel::Own(_) => None,
        }
    }

    /// Forgets the cached tokens.
    pub fn reset(&mut self) {
        self.model.reset();
        self.cached.clear();
    }

    /// KV-cache capacity in tokens.
    pub fn capacity(&self) -> usize {
        self.model.capacity()
    }

    /// The session's own model, for profiling; forgets the cached tokens, since the
    /// caller may run anything through it. A batched session has none.
    pub fn model_mut(&mut self) -> Result<&mut Model, EngineError> {
        self.cached.clear();
        match &mut self.model {
            SeqModel::Own(m) => Ok(m),
            #[cfg(not(target_arch = "wasm32"))]
            SeqModel::Slot(_) => Err(ModelError::Input(
                "a batched session shares its model; profile a session of its own".into(),
            )
            .into()),
        }
    }

    /// Tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// The prompt's token ids as `generate` would feed them.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        tokenize_prompt(
            &self.tokenizer,
            self.template.as_deref(),
            self.model.cfg().arch.name(),
            prompt,
        )
    }

    /// Generates from `prompt`. Errors that need no GPU work (bad parameters, a prompt
    /// longer than the context) come back at once; the stream then yields one `Token`
    /// per generated token and a final `Done`. Dropping the stream stops generation; the
    /// session stays usable.
    pub fn generate(
        &mut self,
        prompt: &Prompt,
        opts: GenerateOptions,
    ) -> Result<impl Stream<Item = Result<Event, EngineError>> + '_, EngineError> {
        let ids = self.tokenize_prompt(prompt)?;
        self.generate_tokens(ids, opts)
    }

    /// `generate` from token ids.
    pub fn generate_tokens(
        &mut self,
        ids: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<impl Stream<Item = Result<Event, EngineError>> + '_, EngineError> {
        let arch = self.model.cfg().arch;
        if !arch.causal() {
            return Err(EngineError::EmbeddingOnly(arch.name()));
        }
        let mut sampler = Sampler::new(opts.sampling.clone())?;
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let capacity = self.model.capacity();
        if ids.len() > capacity {
            return Err(EngineError::ContextOverflow {
                prompt: ids.len(),
                capacity,
            });
        }
        if let Some(&id) = ids.iter().find(|&&t| t as usize >= self.model.cfg().vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.model.cfg().vocab,
            }
            .into());
        }
        for &id in &ids {
            sampler.accept(id);
        }
        let waiting = opts.format.as_ref().and_then(Pending::of);
        let constraint = match &opts.format {
            // A triggered format is checked now and starts at its trigger.
            Some(f) if waiting.is_some() => {
                self.grammars.constraint(f)?;
                None
            }
            Some(f) => Some(self.grammars.constraint(f)?),
            None => None,
        };
        let state = Run {
            session: self,
            sampler,
            stop: StopMatcher::new(&opts.stop),
            constraint,
            waiting,
            decoder: StreamDecoder::new(),
            max_tokens: opts.max_tokens,
            prompt: Some(ids),
            pending: None,
            start: Instant::now(),
            first: None,
            prompt_tokens: 0,
            cached_tokens: 0,
            generated: 0,
            finished: false,
        };
        Ok(futures::stream::unfold(state, |mut run| async move {
            if run.finished {
                return None;
            }
            let item = run.step().await;
            if !matches!(item, Ok(Event::Token { .. })) {
                run.finished = true;
            }
            Some((item, run))
        }))
    }
}

/// Renders (for a conversation) and tokenizes a prompt.
fn tokenize_prompt(
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
    arch: &str,
    prompt: &Prompt,
) -> Result<Vec<u32>, EngineError> {
    let ids = match prompt {
        Prompt::Raw(text) => tok.encode(text, true, true)?,
        Prompt::Chat(_) | Prompt::ChatTools(..) => {
            let template = template.ok_or_else(|| EngineError::NoTemplate(arch.to_string()))?;
            let (messages, tools) = match prompt {
                Prompt::ChatTools(m, setup) => setup.prepare(m),
                Prompt::Chat(m) => (m.clone(), None),
                Prompt::Raw(_) => unreachable!("matched above"),
            };
            let text = |id: Option<u32>| {
                id.and_then(|i| tok.token_text(i))
                    .unwrap_or_default()
                    .to_string()
            };
            let bos = text(tok.bos());
            let mut opts = RenderOptions {
                add_generation_prompt: true,
                bos_token: bos.clone(),
                eos_token: text(tok.eos()),
                date: None,
                tools,
            };
            let rendered = match template.render(&messages, &opts) {
                // Tool-use templates that loop over `tools` refuse None, as in Jinja2;
                // a conversation without tools renders with an empty list instead.
                Err(TemplateError::Render(m)) if opts.tools.is_none() && m.contains("NoneType") => {
                    opts.tools = Some(serde_json::Value::Array(Vec::new()));
                    template.render(&messages, &opts)?
                }
                r => r?,
            };
            // Templates often write the BOS themselves; the tokenizer adds it too.
            let body = match rendered.strip_prefix(bos.as_str()) {
                Some(rest) if tok.add_bos() && !bos.is_empty() => rest,
                _ => rendered.as_str(),
            };
            tok.encode(body, true, true)?
        }
    };
    if ids.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    Ok(ids)
}

/// The state of one generation between stream items.
struct Run<'a> {
    session: &'a mut Session,
    sampler: Sampler,
    stop: StopMatcher,
    /// What the output must match, when it is constrained.
    constraint: Option<Constraint>,
    /// A triggered format whose trigger has not been generated yet.
    waiting: Option<Pending>,
    decoder: StreamDecoder,
    max_tokens: Option<usize>,
    /// The prompt, until it has been fed.
    prompt: Option<Vec<u32>>,
    /// The last sampled token, not yet fed to the model.
    pending: Option<u32>,
    start: Instant,
    first: Option<Instant>,
    prompt_tokens: usize,
    cached_tokens: usize,
    generated: usize,
    finished: bool,
}

impl Drop for Run<'_> {
    /// A generation dropped before its end (the client left) stops being waited for,
    /// and a batched session's KV pages go back to the pool.
    fn drop(&mut self) {
        let s = &mut *self.session;
        s.model.end(&mut s.cached);
    }
}

impl Run<'_> {
    /// Feeds what is due (the prompt, or the last token) and samples the next token.
    async fn step(&mut self) -> Result<Event, EngineError> {
        if let Some(ids) = self.prompt.take() {
            self.feed_prompt(ids)?;
        } else if let Some(id) = self.pending.take() {
            let full = self.session.model.pos() >= self.session.model.capacity();
            if full || self.max_tokens.is_some_and(|m| self.generated >= m) {
                return Ok(self.done(FinishReason::Length));
            }
            self.session.model.forward(&[id])?;
            self.session.cached.push(id);
        }
        if self.max_tokens == Some(0) {
            return Ok(self.done(FinishReason::Length));
        }
        // Greedy without penalties where feeding ahead pays: the step that feeds the
        // next token is submitted before that token is read back (`fed`).
        let (id, fed) = match self.argmax_ahead().await? {
            Some(id) => (Some(id), true),
            None => (self.sample().await?, false),
        };
        let Some(id) = id else {
            // A constraint that allows no token at all (its grammar has ended).
            return Ok(self.done(FinishReason::Stop));
        };
        if self.first.is_none() {
            self.first = Some(Instant::now());
        }
        let tok = &self.session.tokenizer;
        if tok.is_eog(id) {
            return Ok(self.done(FinishReason::Stop));
        }
        let complete = match &mut self.constraint {
            Some(c) => {
                c.accept(id)?;
                c.is_done()
            }
            None => false,
        };
        self.generated += 1;
        self.sampler.accept(id);
        if !fed {
            self.pending = Some(id);
        }
        let piece = self.decoder.push(tok, id);
        if let Some(p) = &mut self.waiting {
            if let Some(then) = p.push(&piece) {
                self.waiting = None;
                if let Some(f) = then {
                    self.constraint = Some(self.session.grammars.constraint(&f)?);
                }
            }
        }
        let (text, stopped) = self.stop.push(&piece);
        if stopped || complete {
            return Ok(self.finish(text, stopped, FinishReason::Stop));
        }
        if fed {
            self.session.cached.push(id);
        }
        Ok(Event::Token {
            id,
            text,
            at: self.start.elapsed(),
        })
    }

    /// Keeps the longest cached prefix of `ids` and evaluates the rest (at least one
    /// token, so that there are logits to sample from).
    fn feed_prompt(&mut self, ids: Vec<u32>) -> Result<(), EngineError> {
        let s = &mut *self.session;
        let common = s
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        s.model.truncate(common);
        s.cached.truncate(common);
        let mut common = common;
        if common == 0 {
            common = s.model.share_prefix(&ids)?;
            s.cached.extend_from_slice(&ids[..common]);
        }
        s.model.expect(ids.len());
        // With a cancel flag, one prefill pass at a time, waiting for each, so that a
        // long prompt can stop early; without one, every pass is queued at once.
        let step = match &s.cancel {
            Some(_) if cfg!(not(target_arch = "wasm32")) => s.model.batch().max(1),
            _ => ids.len(),
        };
        let mut done = common;
        while done < ids.len() {
            let end = (done + step).min(ids.len());
            s.model.forward(&ids[done..end]).inspect_err(|_| {
                // A failed step leaves the cache undefined past what was fed.
                s.model.truncate(done);
            })?;
            s.cached.extend_from_slice(&ids[done..end]);
            done = end;
            if done < ids.len() {
                #[cfg(not(target_arch = "wasm32"))]
                s.model.wait()?;
                if s.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(EngineError::Cancelled);
                }
            }
        }
        self.prompt_tokens = ids.len();
        self.cached_tokens = common;
        Ok(())
    }

    /// Whether the next token is the GPU's argmax: greedy, without penalties or a
    /// constraint.
    fn argmax_is_the_draw(&self) -> bool {
        let p = self.sampler.params();
        p.temperature == 0.0 && !penalizes(p) && self.constraint.is_none()
    }

    /// The next token when greedy without penalties or JSON on an adapter where feeding
    /// ahead pays (`Model::feeds_ahead`), and there is room for one more position and
    /// one more token: submits the step that feeds the last argmax on the GPU, then reads
    /// that argmax while the step runs. The caller keeps the step (the token joins
    /// `cached`) or `finish` undoes it. `None`: the caller samples as usual.
    async fn argmax_ahead(&mut self) -> Result<Option<u32>, EngineError> {
        let argmax = self.argmax_is_the_draw();
        let room = self.session.model.pos() < self.session.model.capacity()
            && self.max_tokens.is_none_or(|m| self.generated + 1 < m);
        let model = match self.session.model.ahead() {
            Some(m) if argmax && room => m,
            _ => return Ok(None),
        };
        model.forward_argmax()?;
        Ok(Some(model.argmax_before().await?))
    }

    /// The next token: argmax on the GPU when greedy without penalties, else penalties
    /// and top-k on the GPU and the draw on the CPU. With a constraint the draw is among
    /// the GPU's top `SAMPLE_K` that its mask allows, or, when none is allowed, among
    /// the allowed tokens of the whole logit row; `None` when the mask allows nothing.
    async fn sample(&mut self) -> Result<Option<u32>, EngineError> {
        if self.argmax_is_the_draw() {
            return match self.session.model.pick(Want::Argmax).await? {
                Pick::Argmax(id) => Ok(Some(id)),
                Pick::TopK(c) => Ok(c.first().map(|c| c.0)),
            };
        }
        let p = self.sampler.params();
        let penalties = penalizes(p).then(|| {
            let window = self.sampler.window();
            let from = window.len().saturating_sub(MAX_PENALTY_IDS);
            Penalty {
                window: window[from..].to_vec(),
                repeat: p.repeat_penalty,
                presence: p.presence_penalty,
                frequency: p.frequency_penalty,
            }
        });
        // The mask is computed while the GPU finishes the step.
        let mask = match &mut self.constraint {
            Some(c) => Some(c.mask()?),
            None => None,
        };
        let k = match (p.temperature == 0.0, p.top_k) {
            _ if mask.is_some() => SAMPLE_K,
            (true, _) => 1,
            (false, 0) => SAMPLE_K,
            (false, k) => k.min(SAMPLE_K),
        };
        if mask.as_ref().is_some_and(|m| m.count() == 0) {
            return Ok(None);
        }
        let want = Want::TopK {
            k,
            penalties,
            allowed: mask.map(Arc::new),
        };
        let candidates = match self.session.model.pick(want).await? {
            Pick::TopK(c) => c,
            Pick::Argmax(id) => vec![(id, 0.0)],
        };
        match self.sampler.sample(&candidates) {
            u32::MAX => Err(GpuError::Runtime("top-k returned no candidates".into()).into()),
            id => Ok(Some(id)),
        }
    }

    fn done(&mut self, reason: FinishReason) -> Event {
        self.finish(String::new(), false, reason)
    }

    /// The final event. `released` is text this step already let out; unless a stop
    /// sequence matched (everything after it is dropped), what the decoder and the stop
    /// matcher still hold follows it.
    fn finish(&mut self, released: String, stopped: bool, reason: FinishReason) -> Event {
        // A step fed ahead with the token that ended the text is undone.
        let s = &mut *self.session;
        if s.model.pos() > s.cached.len() {
            s.model.truncate(s.cached.len());
        }
        s.model.end(&mut s.cached);
        let (masks, mask_duration) = self
            .constraint
            .as_ref()
            .map_or((0, Duration::ZERO), Constraint::mask_stats);
        let now = Instant::now();
        let first = self.first.unwrap_or(now);
        let text = final_text(released, stopped, &mut self.decoder, &mut self.stop);
        Event::Done {
            text,
            stats: Stats {
                prompt_tokens: self.prompt_tokens,
                cached_tokens: self.cached_tokens,
                prompt_duration: first - self.start,
                generated: self.generated,
                generate_duration: now - first,
                reason,
                masks,
                mask_duration,
            },
        }
    }
}

/// Whether `p` changes the logits before the draw (repetition, presence or frequency).
fn penalizes(p: &SamplingParams) -> bool {
    p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
}

/// The text a generation releases last: `released` (already let out by this step), then,
/// unless a stop sequence has matched, the bytes the decoder and the stop matcher hold
/// (a held prefix of a stop that never completed is output, as generated).
fn final_text(
    released: String,
    stopped: bool,
    decoder: &mut StreamDecoder,
    stop: &mut StopMatcher,
) -> String {
    if stopped {
        return released;
    }
    let (tail, stopped) = stop.push(&decoder.finish());
    if stopped {
        released + &tail
    } else {
        released + &tail + &stop.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_closing_while_a_stop_is_held_keeps_its_brace() {
        // The closing brace arrives while "}\n" might still be a stop sequence: the step
        // releases `{"a": 1` and holds "}"; the final text must still end in it.
        let mut stop = StopMatcher::new(&["}\n".to_string()]);
        let (released, stopped) = stop.push("{\"a\": 1}");
        assert!(!stopped);
        assert_eq!(released, "{\"a\": 1");
        let out = final_text(released, false, &mut StreamDecoder::new(), &mut stop);
        assert_eq!(out, "{\"a\": 1}");
    }

    #[test]
    fn a_matched_stop_drops_what_follows() {
        let mut stop = StopMatcher::new(&["END".to_string()]);
        let (released, stopped) = stop.push("done END trailing");
        assert!(stopped);
        let out = final_text(released, true, &mut StreamDecoder::new(), &mut stop);
        assert_eq!(out, "done ");
    }
}
