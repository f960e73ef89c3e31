//! Plans and the executor. At load every pipeline, bind group and buffer is created and two
//! plans are built: prefill (the prompt in chunks of `batch` tokens through matrix-matrix
//! kernels) and decode (one token through matrix-vector kernels, every other op built for
//! one token). A step only writes the token ids and the small `Step` uniform, then
//! records the plan into two command buffers (the blocks, then the tail) and submits them.

// wgpu handles are not Send/Sync on wasm, where there is a single thread anyway.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod block;
mod buffers;
mod memory;
mod pages;
mod plan;
mod profile;

pub use block::Block;
pub use memory::MemoryPlan;
pub use pages::{Cut, KvPages, PageStats};

use buffers::{read_into, Activations};
use plan::{Builder, Plan};

use crate::gguf::GgufFile;
use crate::gpu::{map_read_after, Gpu, GpuError};
use crate::kernels::matvec::AdapterClass;
use crate::kernels::{
    Copies, Dispatch, KvCache, KvType, Op, Penalties, Plain, Step, StepBuffer, Submit, TopK, View,
};
use crate::model::{ModelConfig, ModelError, Weights};
use std::sync::Arc;

/// A built op in a plan (shared between plans where both run it as is).
#[cfg(not(target_arch = "wasm32"))]
pub type Stage = Arc<dyn Op + Send + Sync>;
/// A built op in a plan (shared between plans where both run it as is).
#[cfg(target_arch = "wasm32")]
pub type Stage = Arc<dyn Op>;

/// An op that can become a `Stage`.
#[cfg(not(target_arch = "wasm32"))]
pub trait StageOp: Op + Send + Sync + 'static {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Op + Send + Sync + 'static> StageOp for T {}
/// An op that can become a `Stage`.
#[cfg(target_arch = "wasm32")]
pub trait StageOp: Op + 'static {}
#[cfg(target_arch = "wasm32")]
impl<T: Op + 'static> StageOp for T {}

/// Rows a batched step holds beyond one per sequence: the tokens of short prompts (or a
/// long one's last chunk) that share a step with the others' decode tokens, so that a
/// request arriving while every sequence decodes does not cost a step of its own.
pub const PROMPT_ROWS: usize = 16;

/// The most rows (tokens) one batched step of a model loaded for `sequences` sequences
/// takes: one per sequence and `PROMPT_ROWS` more (1 without a batched plan).
pub fn step_rows(sequences: usize) -> usize {
    if sequences > 1 {
        (sequences + PROMPT_ROWS).min(crate::kernels::MAX_ROWS)
    } else {
        1
    }
}

/// Options fixed at load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV-cache capacity in tokens (clamped to the model's context length).
    pub context: usize,
    /// Prefill chunk size: tokens per matrix-matrix pass.
    pub batch: usize,
    /// Keep logits of every prefill token (tests, perplexity), not only the last.
    pub all_logits: bool,
    /// Sequences decoded together (`forward_batch`): each may hold up to `context`
    /// positions, and one step advances up to this many. 1: single-sequence decoding.
    pub sequences: usize,
    /// Positions in the KV page pool, all sequences together (`--kv-size`); `None`:
    /// every sequence at full `context`.
    pub kv_size: Option<usize>,
    /// How the KV cache stores K and V (`--kv-type`); `None`: f16 where the device has
    /// shader-f16, else f32.
    pub kv_type: Option<KvType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            batch: 64,
            all_logits: false,
            sequences: 1,
            kv_size: None,
            kv_type: None,
        }
    }
}

/// A model loaded on the GPU with its KV cache: feed tokens, read logits or the argmax.
pub struct Model {
    /// Hyperparameters.
    pub cfg: ModelConfig,
    /// The device.
    pub gpu: Arc<Gpu>,
    /// What the load planned and allocated.
    pub memory: MemoryPlan,
    weights: Arc<Weights>,
    /// Per layer; ops hold bind groups on its buffers, page copies use them.
    kv: Vec<KvCache>,
    /// The KV page pool, each slot's page table and the prefix cache.
    pages: KvPages,
    step: StepBuffer,
    acts: Activations,
    prefill: Plan,
    decode: Plan,
    /// The batched decode plan (`sequences > 1`).
    batched: Option<Plan>,
    batch: usize,
    capacity: usize,
    /// The current slot's next position (the single-sequence API works on `slot`).
    pos: usize,
    /// The sequence (KV slot) the single-sequence API works on.
    slot: usize,
    /// Every slot's next position; the current slot's lives in `pos`.
    slot_pos: Vec<usize>,
    /// The last batched step, for reading its rows.
    batch_done: Option<BatchDone>,
    /// Tokens in the last step (rows of `logits_all` that are valid).
    last_n: usize,
    last_was_prefill: bool,
    /// Steps run since load; step s copies its argmax to `staging_tokens[s % 2]`.
    steps: u64,
    /// The submission of the last step that copied into each staging token slot.
    token_done: [Option<wgpu::SubmissionIndex>; 2],
    /// The GPU top-`SAMPLE_K` of `logits`, run on demand by `sample_top_k`.
    topk: TopK,
    /// `SAMPLE_K` ids then their values, and its persistent staging buffer.
    topk_out: wgpu::Buffer,
    staging_topk: wgpu::Buffer,
    /// In-place penalties on `logits`, set by `apply_penalties`.
    penalties: Penalties,
    /// The same two ops over each row of a batched step's logits (`sequences > 1`).
    row_sampling: Vec<RowSampling>,
    /// Where `sample_top_k_rows` reads every row's candidates at once.
    staging_rows: Option<wgpu::Buffer>,
}

/// The sampling ops over one row of a batched step's logits, with the row's own top-k
/// output (so that several rows' top-k run in one submission).
struct RowSampling {
    topk: TopK,
    penalties: Penalties,
    out: wgpu::Buffer,
}

/// Most candidates `Model::sample_top_k` returns.
pub const SAMPLE_K: usize = crate::kernels::topk::MAX_K as usize;
/// Most distinct ids `Model::apply_penalties` takes.
pub const MAX_PENALTY_IDS: usize = 1024;

impl Model {
    /// Uploads the weights of `f`, allocates the KV cache and activations, and builds the
    /// prefill and decode plans. Refuses before allocating when the plan cannot fit.
    pub fn load(gpu: Arc<Gpu>, f: &GgufFile, opts: &LoadOptions) -> Result<Self, ModelError> {
        Self::load_with_progress(gpu, f, opts, &mut |_, _| {})
    }

    /// `load`, reporting weight upload progress as `progress(done, total)`.
    pub fn load_with_progress(
        gpu: Arc<Gpu>,
        f: &GgufFile,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        let (cfg, weights, memory) = Self::upload(&gpu, f, opts, progress)?;
        Self::with_weights(gpu, cfg, weights, memory)
    }

    /// The one load path (`run`, `serve`, `bench`, `profile` and the browser all come
    /// through here): reads the hyperparameters, refuses what the plans cannot run,
    /// checks the memory plan against the device, then uploads the weights. Sessions are
    /// then made with `with_weights`.
    pub fn upload(
        gpu: &Gpu,
        f: &GgufFile,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(ModelConfig, Arc<Weights>, MemoryPlan), ModelError> {
        let cfg = ModelConfig::from_gguf(f)?;
        let memory = Self::plan_memory(gpu, &cfg, f, opts);
        memory.check(gpu, f)?;
        let weights = gpu.catch("uploading the weights", || {
            Weights::upload_with_progress(gpu, f, &cfg, progress)
        })?;
        Ok((cfg, Arc::new(weights), memory))
    }

    /// The memory a `load` of `f` with `opts` plans (capacity and batch clamped as there).
    pub fn plan_memory(
        gpu: &Gpu,
        cfg: &ModelConfig,
        f: &GgufFile,
        opts: &LoadOptions,
    ) -> MemoryPlan {
        let capacity = opts.context.clamp(1, cfg.context);
        let batch = opts.batch.clamp(1, capacity).min(crate::kernels::MAX_ROWS);
        let plan = MemoryPlan::batched(
            cfg,
            f,
            capacity,
            batch,
            opts.all_logits,
            opts.kv_type
                .unwrap_or(KvType::default_for(gpu.features.shader_f16)),
            opts.sequences.clamp(1, crate::kernels::MAX_ROWS),
        );
        match opts.kv_size {
            Some(n) => plan.with_kv_size(cfg, n),
            None => plan,
        }
    }

    /// Another sequence over weights already on the GPU: its own KV cache, activations
    /// and plans, sized by `memory` (from `plan_memory`, already checked). Sessions of one
    /// engine share the weights this way.
    /// GPU faults while allocating (out of memory, validation) come back as errors.
    pub fn with_weights(
        gpu: Arc<Gpu>,
        cfg: ModelConfig,
        weights: Arc<Weights>,
        memory: MemoryPlan,
    ) -> Result<Self, ModelError> {
        let g = gpu.clone();
        g.catch(
            "creating a session (KV cache, activations, plans)",
            move || Self::build(gpu, cfg, weights, memory),
        )
    }

    fn build(
        gpu: Arc<Gpu>,
        cfg: ModelConfig,
        weights: Arc<Weights>,
        memory: MemoryPlan,
    ) -> Result<Self, ModelError> {
        let (capacity, batch) = (memory.capacity, memory.batch);
        let all_logits = memory.all_logits;
        let sequences = memory.sequences.max(1);
        let (shift, per_slot) = KvPages::geometry(sequences, capacity, crate::kernels::MAX_PAGES);
        if shift != memory.page_shift {
            return Err(ModelError::Input(format!(
                "a memory plan with pages of {} positions for a model that needs {}",
                1u64 << memory.page_shift,
                1u64 << shift
            )));
        }
        let pages = KvPages::new(memory.kv_pages, shift, sequences, per_slot);
        let rows = memory.kv_positions() as u64;
        let kv = (0..cfg.n_layers)
            .map(|_| {
                let dims = (cfg.kv_dim() as u32, cfg.head_dim as u32);
                KvCache::typed(&gpu, memory.kv_type, rows, capacity as u32, dims)
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let acts = Activations::new(&gpu, &cfg, batch, all_logits, sequences);
        let mut step = StepBuffer::new(&gpu, Step::new(0, 1));
        step.paging = (shift, per_slot as u32);
        let b = Builder {
            gpu: &gpu,
            cfg: &cfg,
            w: &weights,
            kv: &kv,
            a: &acts,
            step: &step,
            capacity,
        };
        let (prefill, decode, batched) = b.plans(batch, sequences)?;
        let k = SAMPLE_K.min(cfg.vocab) as u32;
        let vocab = u32::try_from(cfg.vocab)
            .map_err(|_| ModelError::Input(format!("vocabulary of {} tokens", cfg.vocab)))?;
        let topk_out = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top-k out"),
            size: k as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging_topk = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging top-k"),
            size: k as u64 * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let topk = TopK::new(&gpu, View::of(&acts.logits), vocab, k, &topk_out)?;
        let penalties =
            Penalties::new(&gpu, View::of(&acts.logits), vocab, MAX_PENALTY_IDS as u32)?;
        let mut row_sampling = Vec::new();
        let mut staging_rows = None;
        if let Some(buf) = &acts.logits_batch {
            for r in 0..sequences as u64 {
                let row = View {
                    buffer: buf,
                    offset: r * vocab as u64,
                };
                let out = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("row top-k out"),
                    size: k as u64 * 8,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                row_sampling.push(RowSampling {
                    topk: TopK::new(&gpu, row, vocab, k, &out)?,
                    penalties: Penalties::new(&gpu, row, vocab, MAX_PENALTY_IDS as u32)?,
                    out,
                });
            }
            staging_rows = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("staging row top-k"),
                size: sequences as u64 * k as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        Ok(Self {
            cfg,
            gpu,
            memory,
            weights,
            kv,
            pages,
            step,
            acts,
            prefill,
            decode,
            batched,
            batch,
            capacity,
            pos: 0,
            slot: 0,
            slot_pos: vec![0; sequences],
            batch_done: None,
            last_n: 0,
            last_was_prefill: false,
            steps: 0,
            token_done: [None, None],
            topk,
            topk_out,
            staging_topk,
            penalties,
            row_sampling,
            staging_rows,
        })
    }

    /// Tokens processed so far (the next token's position).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// KV-cache capacity in tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Prompt tokens per prefill pass.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forgets the sequence and releases its KV pages (reserved ones too).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.release_to(self.slot, 0);
        self.last_n = 0;
    }

    /// Rewinds to position `pos` (keeps the first `pos` cached tokens) and releases the
    /// pages past it. Where `pos` ends inside a page another sequence shares, that page
    /// is copied first; when the pool has no page for the copy, the sequence keeps only
    /// its whole pages, so `pos()` afterwards may be below `pos`.
    pub fn truncate(&mut self, pos: usize) {
        if pos < self.pos {
            self.pos = self.release_to(self.slot, pos);
        }
    }

    /// Releases `slot`'s pages past `len`; returns the positions it keeps.
    fn release_to(&mut self, slot: usize, len: usize) -> usize {
        match self.pages.truncate(slot, len) {
            Cut::Done => len,
            Cut::Copy { from, to } => {
                self.copy_page(from, to);
                len
            }
            Cut::NoRoom => {
                let whole = len - len % self.pages.page_size();
                self.pages.truncate(slot, whole);
                whole
            }
        }
    }

    /// Copies pool page `from` to `to` in every layer's K and V (through a one-page
    /// buffer: a copy within one buffer is not allowed).
    fn copy_page(&self, from: u32, to: u32) {
        let Some(c) = self.kv.first() else {
            return;
        };
        let bytes = self.pages.page_size() as u64 * c.row_bytes();
        let page = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kv page copy"),
            size: bytes,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for c in &self.kv {
            for b in [&c.k, &c.v] {
                enc.copy_buffer_to_buffer(b, from as u64 * bytes, &page, 0, bytes);
                enc.copy_buffer_to_buffer(&page, 0, b, to as u64 * bytes, bytes);
            }
        }
        self.gpu.submit([enc.finish()]);
    }

    /// Gives `slot` KV pages for its first `len` positions and writes changed page
    /// tables into the step uniform.
    fn reserve(&mut self, slot: usize, len: usize) -> Result<(), ModelError> {
        self.pages.ensure(slot, len).map_err(ModelError::KvFull)?;
        self.sync_pages();
        Ok(())
    }

    /// Gives the sequence in `slot` its KV pages up to `len` positions now (a prompt's
    /// whole length when it starts, so that its later chunks never wait for pages);
    /// they stay its own until it is reset or truncated below them.
    pub fn kv_reserve(&mut self, slot: usize, len: usize) -> Result<(), ModelError> {
        if slot >= self.sequences() {
            return Err(ModelError::Input(format!("sequence slot {slot}")));
        }
        self.reserve(slot, len.min(self.capacity))
    }

    /// Writes the page tables that changed into the step uniform.
    fn sync_pages(&mut self) {
        for (first, entries) in self.pages.take_dirty() {
            self.step.write_pages(&self.gpu, first, &entries);
        }
    }

    /// Starts the current sequence, when it is empty, with the cached KV pages of the
    /// longest prefix of `tokens` that earlier sequences published (`publish_prefix`),
    /// leaving at least the last token to feed: whole pages shared, and a page matched
    /// in part copied to a page of its own. Returns the positions adopted (0 when the
    /// sequence is not empty or nothing matches). The caller feeds `tokens` from there.
    pub fn share_prefix(&mut self, tokens: &[u32]) -> usize {
        if self.pos != 0 {
            return 0;
        }
        let got = self
            .pages
            .adopt(self.slot, &tokens[..tokens.len().saturating_sub(1)]);
        if let Some((from, to)) = got.copy {
            self.copy_page(from, to);
        }
        self.sync_pages();
        self.pos = got.positions;
        got.positions
    }

    /// Publishes the current sequence's KV pages to the prefix cache, `tokens` being the
    /// tokens it was fed (only its first `pos()` count; a last page in part with the
    /// tokens it has), so that later sequences starting the same way share them
    /// (`share_prefix`). Published pages stay cached after the sequence releases them,
    /// until the pool needs them.
    pub fn publish_prefix(&mut self, tokens: &[u32]) {
        let n = tokens.len().min(self.pos);
        self.pages.publish(self.slot, &tokens[..n]);
    }

    /// The KV page pool: pages held, cached and in all.
    pub fn kv_pages(&self) -> PageStats {
        self.pages.stats()
    }

    /// Whether the sequence in `slot` could grow to `len` positions now: the
    /// `KvFull` error its step would meet if not (other sequences hold the pages).
    pub fn kv_room(&self, slot: usize, len: usize) -> Result<(), ModelError> {
        if slot >= self.sequences() {
            return Ok(());
        }
        self.pages.room(slot, len).map_err(ModelError::KvFull)
    }

    /// KV pages the sequence in `slot` holds (shared ones included).
    pub fn pages_held_by(&self, slot: usize) -> usize {
        if slot < self.sequences() {
            self.pages.held_by(slot)
        } else {
            0
        }
    }

    /// Sequences this model decodes together (KV slots).
    pub fn sequences(&self) -> usize {
        self.slot_pos.len()
    }

    /// The most rows (tokens) one `forward_batch` takes (`step_rows`).
    pub fn step_rows(&self) -> usize {
        step_rows(self.sequences())
    }

    /// The sequence (KV slot) that `forward`, `argmax`, `reset`, `truncate` and `pos`
    /// act on.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Makes slot `slot` the one the single-sequence API acts on; each slot keeps its
    /// own position and cache.
    pub fn set_slot(&mut self, slot: usize) -> Result<(), ModelError> {
        if slot >= self.sequences() {
            return Err(ModelError::Input(format!(
                "sequence slot {slot} of a model loaded for {} sequences",
                self.sequences()
            )));
        }
        self.slot_pos[self.slot] = self.pos;
        self.slot = slot;
        self.pos = self.slot_pos[slot];
        Ok(())
    }

    /// The next position of the sequence in `slot`.
    pub fn pos_of(&self, slot: usize) -> usize {
        if slot == self.slot {
            self.pos
        } else {
            self.slot_pos.get(slot).copied().unwrap_or(0)
        }
    }

    fn set_pos_of(&mut self, slot: usize, pos: usize) {
        if slot == self.slot {
            self.pos = pos;
        } else {
            self.slot_pos[slot] = pos;
        }
    }

    /// One batched step: the next tokens of several sequences, given as `(slot, token)`
    /// rows (at most `step_rows()` of them), each sequence continuing from its own
    /// position. A slot may appear in several rows: its tokens take consecutive
    /// positions in row order (a short prompt, or a chunk of one, sharing the step with
    /// other sequences' decode tokens). The weights are read once for all rows. Each
    /// slot's last row is the step's output for it: the outputs, one per slot in the
    /// order of those last rows, are the only rows that run the final norm and the
    /// output head (a prompt's earlier tokens need no logits), and `argmax_batch`,
    /// `batch_logits`, `row_logits` and the row sampling ops index them. Each slot
    /// advances by its rows.
    pub fn forward_batch(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError> {
        self.run_batch(rows, &mut Plain)
    }

    /// The executor of `forward_batch`, handing the step's one command buffer to `submit`.
    fn run_batch(
        &mut self,
        rows: &[(usize, u32)],
        submit: &mut dyn Submit,
    ) -> Result<(), ModelError> {
        let n = rows.len();
        if n == 0 || n > self.step_rows() {
            return Err(ModelError::Input(format!(
                "a batched step of {n} tokens on a model loaded for {} sequences (at most {} rows)",
                self.sequences(),
                self.step_rows()
            )));
        }
        let mut next: Vec<Option<usize>> = vec![None; self.sequences()];
        // Each slot's last row: its output.
        let mut last_row = vec![0; self.sequences()];
        let mut step_rows = Vec::with_capacity(n);
        for (i, &(slot, id)) in rows.iter().enumerate() {
            if slot >= next.len() {
                return Err(ModelError::Input(format!(
                    "slot {slot} of a model loaded for {} sequences",
                    next.len()
                )));
            }
            if id as usize >= self.cfg.vocab {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    vocab: self.cfg.vocab,
                });
            }
            let pos = next[slot].unwrap_or_else(|| self.pos_of(slot));
            if pos + 1 > self.capacity {
                return Err(ModelError::ContextFull {
                    needed: pos + 1,
                    capacity: self.capacity,
                });
            }
            next[slot] = Some(pos + 1);
            last_row[slot] = i;
            step_rows.push((slot as u32, pos as u32));
        }
        for (slot, end) in next.iter().enumerate() {
            if let Some(end) = *end {
                self.reserve(slot, end)?;
            }
        }
        // The step runs its outputs (each slot's last row, in the order of those rows)
        // first, so that the final norm and the head cover only them; the other rows
        // follow in their given order. Positions were set above in the given order, and
        // every row's K and V are appended before any row attends, so the order of the
        // rows within the step changes no result.
        let is_last: Vec<bool> = (0..n).map(|i| last_row[rows[i].0] == i).collect();
        let order: Vec<usize> = (0..n)
            .filter(|&i| is_last[i])
            .chain((0..n).filter(|&i| !is_last[i]))
            .collect();
        let n_out = is_last.iter().filter(|&&l| l).count();
        let step_rows: Vec<(u32, u32)> = order.iter().map(|&i| step_rows[i]).collect();
        let gpu = self.gpu.clone();
        let ids: Vec<u32> = order.iter().map(|&i| rows[i].1).collect();
        gpu.queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(&ids));
        let step = Step::batch(&step_rows);
        let kv_len = step.kv_len;
        self.step.write(&gpu, step);
        let a = &self.acts;
        let batched = match (&self.batched, &a.tokens_batch, &a.staging_batch) {
            (Some(plan), Some(tokens), Some(staging)) if n > 1 => Some((plan, tokens, staging)),
            _ => None,
        };
        let Some((plan, tokens, staging)) = batched else {
            // One token: the decode plan (its fused matvecs), its argmax staged as a
            // single step's.
            let dispatches = self.plan_dispatches(false, kv_len);
            let save = |enc: &mut wgpu::CommandEncoder| {
                let slot = (self.steps % 2) as usize;
                enc.copy_buffer_to_buffer(&a.token, 0, &a.staging_tokens[slot], 0, 4)
            };
            let done = submit.submit(&gpu, &dispatches, None, Some(&save))?;
            self.finish_batch(rows, 1, done, true);
            return Ok(());
        };
        // Rows are apart when each is its sequence's only token (n_out outputs).
        let apart = n_out == n;
        let mut groups = vec![flat_batch(&plan.embed, n, kv_len, apart)];
        groups.extend(plan.layers.iter().map(|l| flat_batch(l, n, kv_len, apart)));
        groups.push(flat_batch(&plan.tail, n_out, kv_len, apart));
        let all: Vec<&Dispatch> = groups.into_iter().flatten().collect();
        let bytes = n_out as u64 * 4;
        let save = |enc: &mut wgpu::CommandEncoder| {
            enc.copy_buffer_to_buffer(tokens, 0, staging, 0, bytes)
        };
        let done = submit.submit(&gpu, &all, None, Some(&save))?;
        self.finish_batch(rows, n_out, done, false);
        Ok(())
    }

    /// Advances the slots of a submitted batched step and remembers it for reading.
    /// `outputs`: the step's outputs (one per slot it advanced).
    fn finish_batch(
        &mut self,
        rows: &[(usize, u32)],
        outputs: usize,
        done: wgpu::SubmissionIndex,
        single: bool,
    ) {
        if single {
            // The decode plan wrote a step's argmax slot.
            let slot = (self.steps % 2) as usize;
            self.token_done[slot] = Some(done.clone());
            self.steps += 1;
        }
        // Each row advances its slot by one.
        for &(slot, _) in rows {
            let p = self.pos_of(slot);
            self.set_pos_of(slot, p + 1);
        }
        self.last_n = 1;
        self.last_was_prefill = false;
        self.batch_done = Some(BatchDone {
            rows: outputs,
            done,
            single,
        });
    }

    /// The last batched step.
    fn last_batch(&self) -> Result<BatchDone, GpuError> {
        self.batch_done
            .clone()
            .ok_or_else(|| GpuError::Runtime("no batched step has run".into()))
    }

    /// Each row's argmax of the last `forward_batch`, in its row order.
    pub async fn argmax_batch(&self) -> Result<Vec<u32>, GpuError> {
        let BatchDone {
            rows: n,
            done,
            single,
        } = self.last_batch()?;
        match &self.acts.staging_batch {
            Some(staging) if !single => {
                let b = map_read_after(&self.gpu, staging, n as u64 * 4, Some(done)).await?;
                Ok(bytemuck::cast_slice(&b).to_vec())
            }
            _ => Ok(vec![self.step_argmax(1).await?]),
        }
    }

    /// Each row's logits of the last `forward_batch` (tests; a sampler reads less).
    pub async fn batch_logits(&self) -> Result<Vec<Vec<f32>>, GpuError> {
        let BatchDone {
            rows: n, single, ..
        } = self.last_batch()?;
        match &self.acts.logits_batch {
            Some(buf) if !single => {
                let v = self.cfg.vocab;
                let all = crate::gpu::read_f32(&self.gpu, buf, 0, (n * v) as u64).await?;
                Ok(all.chunks_exact(v).map(|c| c.to_vec()).collect())
            }
            _ => Ok(vec![self.logits().await?]),
        }
    }

    /// Row `row`'s logits of the last `forward_batch` (after any penalties on it).
    pub async fn row_logits(&self, row: usize) -> Result<Vec<f32>, GpuError> {
        let BatchDone {
            rows: n, single, ..
        } = self.last_batch()?;
        if row >= n {
            return Err(GpuError::Runtime(format!(
                "row {row} of a batched step of {n} tokens"
            )));
        }
        match &self.acts.logits_batch {
            Some(buf) if !single => {
                let v = self.cfg.vocab;
                crate::gpu::read_f32(&self.gpu, buf, (row * v) as u64, v as u64).await
            }
            _ => self.logits().await,
        }
    }

    /// Blocking `forward_batch` + `argmax_batch`: one greedy token for each row.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn greedy_batch(&mut self, rows: &[(usize, u32)]) -> Result<Vec<u32>, ModelError> {
        self.forward_batch(rows)?;
        Ok(pollster::block_on(self.argmax_batch())?)
    }

    /// Runs `tokens` at the current position: one token goes through the decode plan,
    /// more through the prefill plan in chunks. Afterwards `logits()` holds the last
    /// token's logits (and `all_logits()` every prefill token's, if enabled).
    pub fn forward(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        self.check_tokens(tokens)?;
        for chunk in tokens.chunks(self.batch) {
            self.run(Input::Ids(chunk), tokens.len() > 1, &mut Plain)?;
        }
        Ok(())
    }

    /// Greedy decoding without a round trip: one decode step whose token is the last
    /// step's argmax, read by the step itself from GPU memory. It can be submitted
    /// before that argmax is read back: `argmax_before` then reads it while this step
    /// runs. The caller undoes the step with `truncate` if the token ends the text.
    pub fn forward_argmax(&mut self) -> Result<(), ModelError> {
        if self.steps == 0 {
            return Err(ModelError::Input(
                "no step ran, so there is no argmax to feed".into(),
            ));
        }
        self.check_room(1)?;
        self.run(Input::Argmax, false, &mut Plain)
    }

    /// Whether greedy decoding should submit each step before reading the last token
    /// (`forward_argmax`, then `argmax_before`): on a GPU the CPU's reading and
    /// recording then hide behind the GPU's work. On a CPU adapter (lavapipe) they
    /// compete with it for the same cores: SmolLM2 tg128 on 2 cores ran at 21.2 tokens/s
    /// overlapped against 23.1 in turn, so there it waits for each token first.
    /// `HEARTH_FEED_AHEAD=0|1` overrides (for measuring).
    pub fn feeds_ahead(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(v) = std::env::var("HEARTH_FEED_AHEAD") {
            return v.trim() != "0";
        }
        AdapterClass::of(&self.gpu.info) != AdapterClass::Cpu
    }

    /// Refuses an empty step, ids outside the vocabulary and steps past the capacity.
    fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens to process".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.cfg.vocab,
            });
        }
        self.check_room(tokens.len())
    }

    /// Refuses a step of `n` tokens past the capacity.
    fn check_room(&self, n: usize) -> Result<(), ModelError> {
        if self.pos + n > self.capacity {
            return Err(ModelError::ContextFull {
                needed: self.pos + n,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// The one executor: writes the ids (or copies the last argmax into them) and the
    /// step uniform, hands each command buffer's dispatches of the prefill or decode plan
    /// to `submit` (plain or profiled), and advances the position. A decode step is one
    /// command buffer; a prefill chunk two (the blocks, then the tail after copying the
    /// last token's row). Each step ends by copying its argmax to a staging slot.
    fn run(
        &mut self,
        input: Input,
        prefill: bool,
        submit: &mut dyn Submit,
    ) -> Result<(), ModelError> {
        let gpu = self.gpu.clone();
        let count = match input {
            Input::Ids(tokens) => tokens.len(),
            Input::Argmax => 1,
        };
        self.reserve(self.slot, self.pos + count)?;
        let n = match input {
            Input::Ids(tokens) => {
                gpu.queue
                    .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
                tokens.len()
            }
            Input::Argmax => 1,
        };
        let step = Step::at(self.slot as u32, self.pos as u32, n as u32);
        self.step.write(&gpu, step);
        let groups = self.plan_groups(prefill, n, (self.pos + n) as u32);
        let (tail, body) = groups.split_last().expect("a plan has a tail");
        let body: Vec<&Dispatch> = body.iter().flatten().copied().collect();
        let a = &self.acts;
        let slot = (self.steps % 2) as usize;
        let save = |enc: &mut wgpu::CommandEncoder| {
            enc.copy_buffer_to_buffer(&a.token, 0, &a.staging_tokens[slot], 0, 4)
        };
        let feed =
            |enc: &mut wgpu::CommandEncoder| enc.copy_buffer_to_buffer(&a.token, 0, &a.ids, 0, 4);
        let feed: Copies = match input {
            Input::Argmax => Some(&feed),
            Input::Ids(_) => None,
        };
        let done = if prefill {
            let row = (n as u64 - 1) * self.cfg.hidden as u64 * 4;
            let bytes = self.cfg.hidden as u64 * 4;
            let copy = |enc: &mut wgpu::CommandEncoder| {
                enc.copy_buffer_to_buffer(&a.x, row, &a.last, 0, bytes)
            };
            submit.submit(&gpu, &body, feed, None)?;
            submit.submit(&gpu, tail, Some(&copy), Some(&save))?
        } else {
            let all: Vec<&Dispatch> = body.iter().chain(tail).copied().collect();
            submit.submit(&gpu, &all, feed, Some(&save))?
        };
        self.token_done[slot] = Some(done);
        self.steps += 1;
        self.pos += n;
        self.last_n = n;
        self.last_was_prefill = prefill;
        Ok(())
    }

    /// Width of the vectors `embed` returns (the hidden size, or the last dense
    /// projection's).
    pub fn embedding_width(&self) -> usize {
        self.prefill
            .pool_out
            .as_ref()
            .map_or(self.cfg.hidden, |o| o.1)
    }

    /// The pooled embedding of `tokens` (`[hidden]`, not normalized): the final norm of
    /// every token's last hidden state, pooled on the GPU as llama.cpp pools (mean, the
    /// first token's row, or the last's). A causal model runs the input in prefill
    /// chunks, pooling across them; a non-causal one (an encoder) needs the whole input
    /// in one step, so inputs longer than the batch are refused. The sequence is reset
    /// before and after.
    pub async fn embed(
        &mut self,
        tokens: &[u32],
        pooling: crate::model::Pooling,
    ) -> Result<Vec<f32>, ModelError> {
        use crate::kernels::PoolStep;
        use crate::model::Pooling;
        self.reset();
        self.check_tokens(tokens)?;
        let n = tokens.len();
        if !self.cfg.causal && n > self.batch {
            return Err(ModelError::Input(format!(
                "the input is {n} tokens but this non-causal model embeds at most {} \
                 (its batch size) in one pass; shorten it or raise the batch size",
                self.batch
            )));
        }
        let pool = self
            .prefill
            .pool_op
            .clone()
            .ok_or_else(|| ModelError::Input("the prefill plan has no pooling".into()))?;
        let gpu = self.gpu.clone();
        let chunks = n.div_ceil(self.batch);
        for (ci, chunk) in tokens.chunks(self.batch).enumerate() {
            let len = chunk.len() as u32;
            let (first_chunk, last_chunk) = (ci == 0, ci + 1 == chunks);
            let step = match pooling {
                Pooling::Mean => PoolStep {
                    first: 0,
                    count: len,
                    scale: 1.0 / n as f32,
                    accumulate: !first_chunk,
                },
                Pooling::Cls => PoolStep {
                    first: 0,
                    count: first_chunk as u32,
                    scale: 1.0,
                    accumulate: !first_chunk,
                },
                Pooling::Last => PoolStep {
                    first: len - 1,
                    count: last_chunk as u32,
                    scale: 1.0,
                    accumulate: !last_chunk,
                },
            };
            pool.set(&gpu, step);
            self.run_pooled(chunk)?;
        }
        let (buf, width) = self
            .prefill
            .pool_out
            .clone()
            .ok_or_else(|| ModelError::Input("the prefill plan has no pooling".into()))?;
        let out = crate::gpu::read_f32(&gpu, &buf, 0, width as u64).await;
        self.reset();
        Ok(out?)
    }

    /// One prefill step of `tokens` through the blocks and the pooling stages (no head).
    fn run_pooled(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        let gpu = self.gpu.clone();
        let n = tokens.len();
        self.reserve(self.slot, self.pos + n)?;
        gpu.queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::at(self.slot as u32, self.pos as u32, n as u32);
        self.step.write(&gpu, step);
        let kv_len = (self.pos + n) as u32;
        let plan = &self.prefill;
        let mut all = flat_for(&plan.embed, n, kv_len);
        for l in &plan.layers {
            all.extend(flat_for(l, n, kv_len));
        }
        all.extend(flat_for(&plan.pool, n, kv_len));
        Plain.submit(&gpu, &all, None, None)?;
        self.pos += n;
        self.last_n = n;
        self.last_was_prefill = true;
        Ok(())
    }

    /// Every dispatch of the decode plan (or the prefill plan), in execution order,
    /// including the shared tail, for a step that ends with `kv_len` cached positions
    /// (some ops pick their form by context length).
    pub fn plan_dispatches(&self, prefill: bool, kv_len: u32) -> Vec<&Dispatch> {
        let n = if prefill { self.batch } else { 1 };
        self.plan_groups(prefill, n, kv_len)
            .into_iter()
            .flatten()
            .collect()
    }

    /// The plan's stages grouped as built (embedding, each block, the all-token head, the
    /// tail last); `run` submits all but the tail as one command buffer.
    /// `n`: the step's tokens (some ops pick a build by it).
    fn plan_groups(&self, prefill: bool, n: usize, kv_len: u32) -> Vec<Vec<&Dispatch>> {
        let plan = if prefill { &self.prefill } else { &self.decode };
        let mut groups = vec![flat_for(&plan.embed, n, kv_len)];
        groups.extend(plan.layers.iter().map(|l| flat_for(l, n, kv_len)));
        if prefill && !plan.all_logits.is_empty() {
            groups.push(flat_for(&plan.all_logits, n, kv_len));
        }
        groups.push(flat_for(&plan.tail, n, kv_len));
        groups
    }

    /// The last token's logits, read back to the CPU.
    pub async fn logits(&self) -> Result<Vec<f32>, GpuError> {
        let bytes = self.cfg.vocab as u64 * 4;
        read_into(
            &self.gpu,
            &self.acts.logits,
            0,
            &self.acts.staging_logits,
            bytes,
        )
        .await
        .map(|b| bytemuck::cast_slice(&b).to_vec())
    }

    /// Logits of every token of the last prefill step (`all_logits` must be enabled).
    pub async fn all_logits(&self) -> Result<Vec<Vec<f32>>, GpuError> {
        let buf = self
            .acts
            .logits_all
            .as_ref()
            .ok_or_else(|| GpuError::Runtime("model loaded without all_logits".into()))?;
        if !self.last_was_prefill {
            return Ok(vec![self.logits().await?]);
        }
        let v = self.cfg.vocab;
        let all = crate::gpu::read_f32(&self.gpu, buf, 0, (self.last_n * v) as u64).await?;
        Ok(all.chunks_exact(v).map(|c| c.to_vec()).collect())
    }

    /// The id of the largest logit of the last token, computed on the GPU (4 bytes read back).
    pub async fn argmax(&self) -> Result<u32, GpuError> {
        self.step_argmax(1).await
    }

    /// The argmax of the step before the last: after `forward_argmax`, the token it fed,
    /// read while it runs.
    pub async fn argmax_before(&self) -> Result<u32, GpuError> {
        self.step_argmax(2).await
    }

    /// The argmax of the step `back` steps ago (1: the last), from its staging slot.
    async fn step_argmax(&self, back: u64) -> Result<u32, GpuError> {
        let step = self
            .steps
            .checked_sub(back)
            .ok_or_else(|| GpuError::Runtime("no step has run to read the argmax of".into()))?;
        let slot = (step % 2) as usize;
        let staging = &self.acts.staging_tokens[slot];
        let b = map_read_after(&self.gpu, staging, 4, self.token_done[slot].clone()).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Applies repetition / presence / frequency penalties for `window` (distinct ids with
    /// counts, at most `MAX_PENALTY_IDS`) to the last logits in place on the GPU. Call it
    /// after `forward` and before `sample_top_k`; `argmax` still reflects the raw logits.
    pub fn apply_penalties(
        &self,
        window: &[(u32, u32)],
        repeat: f32,
        presence: f32,
        frequency: f32,
    ) -> Result<(), GpuError> {
        Self::penalize(
            &self.gpu,
            &self.penalties,
            window,
            [repeat, presence, frequency],
        )
    }

    fn penalize(
        gpu: &Gpu,
        op: &Penalties,
        window: &[(u32, u32)],
        [repeat, presence, frequency]: [f32; 3],
    ) -> Result<(), GpuError> {
        op.set(gpu, window, repeat, presence, frequency)?;
        Plain.submit(gpu, &flat_op(op), None, None).map(drop)
    }

    /// Row `row`'s own sampling ops, or None when the last step ran as one decode step
    /// (its single-token ops then serve).
    fn row_sampling_of(&self, row: usize) -> Result<Option<&RowSampling>, GpuError> {
        let BatchDone {
            rows: n, single, ..
        } = self.last_batch()?;
        if row >= n {
            return Err(GpuError::Runtime(format!(
                "row {row} of a batched step of {n} tokens"
            )));
        }
        Ok(self.row_sampling.get(row).filter(|_| !single))
    }

    /// `apply_penalties` on row `row` of the last `forward_batch`.
    pub fn apply_penalties_row(
        &self,
        row: usize,
        window: &[(u32, u32)],
        repeat: f32,
        presence: f32,
        frequency: f32,
    ) -> Result<(), GpuError> {
        let pen = match self.row_sampling_of(row)? {
            Some(r) => &r.penalties,
            None => &self.penalties,
        };
        Self::penalize(&self.gpu, pen, window, [repeat, presence, frequency])
    }

    /// `sample_top_k` on row `row` of the last `forward_batch`.
    pub async fn sample_top_k_row(
        &self,
        row: usize,
        k: usize,
    ) -> Result<Vec<(u32, f32)>, GpuError> {
        match self.row_sampling_of(row)? {
            Some(r) => self.top_k_with(&r.topk, &r.out, k).await,
            None => self.top_k_with(&self.topk, &self.topk_out, k).await,
        }
    }

    /// The `k` (at most `SAMPLE_K`) largest last logits with their ids, sorted
    /// descending, selected on the GPU: only `SAMPLE_K` (id, value) pairs are read back.
    pub async fn sample_top_k(&self, k: usize) -> Result<Vec<(u32, f32)>, GpuError> {
        self.top_k_with(&self.topk, &self.topk_out, k).await
    }

    /// Runs `topk` (writing `out`) and reads its first `k` candidates back.
    async fn top_k_with(
        &self,
        topk: &TopK,
        out: &wgpu::Buffer,
        k: usize,
    ) -> Result<Vec<(u32, f32)>, GpuError> {
        let n = self.topk_out.size() / 8;
        topk.set_k(&self.gpu, k.clamp(1, n as usize) as u32)?;
        Plain.submit(&self.gpu, &flat_op(topk), None, None)?;
        let b = read_into(&self.gpu, out, 0, &self.staging_topk, n * 8).await?;
        Ok(candidates(bytemuck::cast_slice(&b), k))
    }

    /// `sample_top_k_row` for several `(row, k)` of the last `forward_batch` at once: one
    /// submission and one read back for all of them (rows must differ).
    pub async fn sample_top_k_rows(
        &self,
        picks: &[(usize, usize)],
    ) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        let n = self.topk_out.size() / 8;
        let mut ops = Vec::with_capacity(picks.len());
        for (i, &(row, k)) in picks.iter().enumerate() {
            if picks[..i].iter().any(|p| p.0 == row) {
                return Err(GpuError::Runtime(format!("row {row} picked twice")));
            }
            match self.row_sampling_of(row)? {
                Some(r) => ops.push(r),
                // A one-token step: its single row through the single-token ops.
                None => return Ok(vec![self.sample_top_k_row(row, k).await?]),
            }
            ops[i]
                .topk
                .set_k(&self.gpu, k.clamp(1, n as usize) as u32)?;
        }
        let Some(staging) = &self.staging_rows else {
            return Err(GpuError::Runtime("no batched plan".into()));
        };
        let dispatches: Vec<&Dispatch> = ops.iter().flat_map(|r| flat_op(&r.topk)).collect();
        let bytes = n * 8;
        let copy = |enc: &mut wgpu::CommandEncoder| {
            for (i, r) in ops.iter().enumerate() {
                enc.copy_buffer_to_buffer(&r.out, 0, staging, i as u64 * bytes, bytes);
            }
        };
        let done = Plain.submit(&self.gpu, &dispatches, None, Some(&copy))?;
        let total = bytes * picks.len() as u64;
        let b = map_read_after(&self.gpu, staging, total, Some(done)).await?;
        let words: &[u32] = bytemuck::cast_slice(&b);
        Ok(words
            .chunks_exact(2 * n as usize)
            .zip(picks)
            .map(|(w, &(_, k))| candidates(w, k))
            .collect())
    }

    /// Blocking `forward` + `argmax`, the greedy step of native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn greedy_step(&mut self, tokens: &[u32]) -> Result<u32, ModelError> {
        self.forward(tokens)?;
        Ok(pollster::block_on(self.argmax())?)
    }

    /// The weights (for inspection, profiling and more sessions via `with_weights`).
    pub fn weights(&self) -> &Arc<Weights> {
        &self.weights
    }
}

/// The first `k` candidates of a top-k output (`n` ids, then their `n` values as bits;
/// unfilled slots have id `u32::MAX`).
fn candidates(words: &[u32], k: usize) -> Vec<(u32, f32)> {
    let (ids, vals) = words.split_at(words.len() / 2);
    ids.iter()
        .zip(vals)
        .take(k)
        .filter(|(&id, _)| id != u32::MAX)
        .map(|(&id, &v)| (id, f32::from_bits(v)))
        .collect()
}

/// A submitted batched step: its rows, its submission (the argmaxes' staging copy), and
/// whether it ran as one decode step (its argmax then in the step staging).
#[derive(Clone)]
struct BatchDone {
    /// The step's outputs (one per slot it advanced).
    rows: usize,
    done: wgpu::SubmissionIndex,
    single: bool,
}

/// What a step feeds the model.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Token ids from the CPU.
    Ids(&'a [u32]),
    /// The last step's argmax, copied on the GPU.
    Argmax,
}

/// The dispatches of `stages` for a step of `n` tokens ending at `kv_len`, in order.
fn flat_for(stages: &[Stage], n: usize, kv_len: u32) -> Vec<&Dispatch> {
    stages
        .iter()
        .flat_map(|s| s.dispatches_for(n as u32, kv_len).iter())
        .collect()
}

/// The dispatches of `stages` for a batched step of `n` rows ending at `kv_len`, in order;
/// `apart` as `Op::dispatches_batch`.
fn flat_batch(stages: &[Stage], n: usize, kv_len: u32, apart: bool) -> Vec<&Dispatch> {
    stages
        .iter()
        .flat_map(|s| s.dispatches_batch(n as u32, kv_len, apart).iter())
        .collect()
}

/// The dispatches of one op.
fn flat_op(op: &dyn Op) -> Vec<&Dispatch> {
    op.dispatches().iter().collect()
}
