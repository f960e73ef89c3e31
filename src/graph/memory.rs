//! Memory planned before anything is allocated: weights, KV cache and activations, and
//! the check that every buffer fits the adapter's limits.

use super::pages::KvPages;
use crate::gguf::GgufFile;
use crate::gpu::{gpu_layout, shard_rows, Gpu};
use crate::kernels::KvType;
use crate::model::{ModelConfig, ModelError};

/// Bytes a loaded model takes on the GPU, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Weights in GPU layout (matrices as blocks, norms and biases as f32).
    pub weights: u64,
    /// KV cache of all layers: the page pool.
    pub kv_cache: u64,
    /// Pages in the KV pool, each of `2^page_shift` positions.
    pub kv_pages: usize,
    /// log2 of the KV page size.
    pub page_shift: u32,
    /// Activation, logits and staging buffers.
    pub activations: u64,
    /// The single largest buffer: (what, bytes); it must fit one binding.
    pub largest: (String, u64),
    /// The largest buffer other than the KV cache's.
    pub largest_other: (String, u64),
    /// KV-cache capacity in tokens.
    pub capacity: usize,
    /// Prefill batch size.
    pub batch: usize,
    /// Sequences decoded together (KV slots; 1: no batched plan).
    pub sequences: usize,
    /// How the KV cache stores K and V.
    pub kv_type: KvType,
    /// Whether every prefill token's logits are kept.
    pub all_logits: bool,
}

impl MemoryPlan {
    /// Plans the buffers of `cfg` at `capacity` tokens of context and `batch` tokens of prefill.
    pub fn new(
        cfg: &ModelConfig,
        f: &GgufFile,
        capacity: usize,
        batch: usize,
        all_logits: bool,
        kv_type: KvType,
    ) -> Self {
        Self::batched(cfg, f, capacity, batch, all_logits, kv_type, 1)
    }

    /// `new` for `sequences` sequences decoded together: a KV slot of `capacity`
    /// positions each, and the batched plan's activations, logits and attention scratch.
    pub fn batched(
        cfg: &ModelConfig,
        f: &GgufFile,
        capacity: usize,
        batch: usize,
        all_logits: bool,
        kv_type: KvType,
        sequences: usize,
    ) -> Self {
        let mut weights = 0u64;
        for t in &f.tensors {
            // As uploaded: a stack's parts may be widened (`weights::upload_type`).
            let ty = crate::model::weights::upload_type(f, &t.name, t.ty);
            let bytes = match gpu_layout(ty) {
                Some(l) if t.dims.len() >= 2 => l.row_words(t.row_len()) * 4 * t.n_rows(),
                _ => t.n_elements() * 4,
            };
            weights += bytes;
        }
        Self::sized(
            cfg, weights, capacity, batch, all_logits, kv_type, sequences,
        )
    }

    /// This plan for `sequences` sequences decoded together (the same weights, context
    /// and batch).
    pub fn with_sequences(&self, cfg: &ModelConfig, sequences: usize) -> Self {
        let (c, b, all) = (self.capacity, self.batch, self.all_logits);
        Self::sized(cfg, self.weights, c, b, all, self.kv_type, sequences)
    }

    fn sized(
        cfg: &ModelConfig,
        weights: u64,
        capacity: usize,
        batch: usize,
        all_logits: bool,
        kv_type: KvType,
        sequences: usize,
    ) -> Self {
        let seqs = sequences.max(1) as u64;
        let mut largest = (String::new(), 0u64);
        let mut note = |what: &str, bytes: u64| {
            if bytes > largest.1 {
                largest = (what.to_string(), bytes);
            }
        };
        // By default the pool holds every sequence at full capacity.
        let (page_shift, per_slot) =
            KvPages::geometry(seqs as usize, capacity, crate::kernels::MAX_PAGES);
        let kv_pages = seqs as usize * per_slot;
        let kv_layer = Self::kv_layer_bytes(cfg, kv_pages, page_shift, kv_type);
        let kv_cache = 2 * kv_layer * cfg.n_layers as u64;
        let rows_b = super::step_rows(seqs as usize) as u64;
        let b = (batch as u64).max(rows_b);
        // A MoE model's gate and up hold every chosen expert's, plus the router's logits,
        // choices and weights and the experts' down projections (buffers.rs).
        let (k, moe) = (cfg.n_expert_used, cfg.is_moe() as usize);
        let ffn = cfg
            .ffn
            .max(k * cfg.expert_ffn * moe)
            .max(cfg.expert_shared_ffn * moe);
        let per_token = 4 * (3 * cfg.hidden + 3 * cfg.q_dim() + 2 * cfg.kv_dim() + 2 * ffn) as u64
            + 4 * (moe * (cfg.n_expert + 3 * k + k * cfg.hidden + 1)) as u64;
        note(
            "activations of one prefill batch",
            b * 4 * cfg.ffn.max(cfg.q_dim()) as u64,
        );
        let logits = 4 * cfg.vocab as u64;
        // Decode attention keeps per-chunk partials (max, sum, weighted V), in one
        // buffer that every layer of a plan shares.
        let scratch = crate::kernels::attention_decode::partials_bytes(
            cfg.n_heads as u64,
            cfg.head_dim as u64,
            capacity as u64,
            1,
        );
        note("decode attention scratch", scratch);
        // The GPU top-k keeps up to 256 (id, value) pairs per 1024-entry vocabulary chunk.
        let topk = (cfg.vocab as u64).div_ceil(1024) * 256 * 8;
        note("top-k scratch", topk);
        let mut activations = b * per_token + 3 * logits + 8 * cfg.hidden as u64 + scratch + topk;
        if all_logits {
            activations += batch as u64 * logits;
            note("logits of every prefill token", batch as u64 * logits);
        }
        if seqs > 1 {
            // The batched plan's logits rows (one per sequence), and its attention's
            // partials per row.
            activations += seqs * logits + rows_b * scratch;
            note("logits of a batched step", seqs * logits);
            note("batched decode attention scratch", rows_b * scratch);
        }
        let largest_other = largest.clone();
        let largest = Self::with_kv(largest, kv_layer);
        Self {
            weights,
            kv_cache,
            largest_other,
            kv_pages,
            page_shift,
            activations,
            largest,
            capacity,
            batch,
            sequences: seqs as usize,
            kv_type,
            all_logits,
        }
    }

    fn kv_layer_bytes(cfg: &ModelConfig, pages: usize, shift: u32, kv: KvType) -> u64 {
        ((pages as u64) << shift) * kv.row_bytes(cfg.kv_dim(), cfg.head_dim)
    }

    /// This plan with a KV pool of `positions` positions (`--kv-size`), rounded up to
    /// whole pages, at least one page and at most every sequence at full capacity.
    pub fn with_kv_size(mut self, cfg: &ModelConfig, positions: usize) -> Self {
        let most = self.kv_pages;
        self.kv_pages = positions.div_ceil(1 << self.page_shift).clamp(1, most);
        let layer = Self::kv_layer_bytes(cfg, self.kv_pages, self.page_shift, self.kv_type);
        self.kv_cache = 2 * layer * cfg.n_layers as u64;
        self.largest = Self::with_kv(self.largest_other.clone(), layer);
        self
    }

    /// The larger of `other` and one layer's K or V buffer.
    fn with_kv(other: (String, u64), kv_layer: u64) -> (String, u64) {
        if kv_layer > other.1 {
            ("KV cache (K or V of one layer)".into(), kv_layer)
        } else {
            other
        }
    }

    /// Positions the KV pool holds, all sequences together.
    pub fn kv_positions(&self) -> usize {
        self.kv_pages << self.page_shift
    }

    /// Everything together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }

    /// Refuses, naming the culprit, when a buffer cannot exist on `gpu` or a weight cannot
    /// be sharded into its bindings.
    pub fn check_with(&self, max_binding: u64, f: &GgufFile) -> Result<(), ModelError> {
        self.check_buffers(max_binding)?;
        for t in f.tensors.iter().filter(|t| t.dims.len() >= 2) {
            shard_rows(t.ty, t.row_len(), t.n_rows(), max_binding).map_err(|why| {
                ModelError::BadTensor {
                    name: t.name.clone(),
                    why,
                }
            })?;
        }
        Ok(())
    }

    /// Refuses, naming the culprit, when a buffer other than a weight cannot exist in a
    /// binding of `max_binding` bytes.
    pub fn check_buffers(&self, max_binding: u64) -> Result<(), ModelError> {
        if self.largest.1 > max_binding {
            return Err(ModelError::Input(format!(
                "{} needs {} MiB, more than this adapter's largest binding ({} MiB); lower the context ({} tokens), the batch ({}) or the sequences decoded together ({})",
                self.largest.0,
                self.largest.1 >> 20,
                max_binding >> 20,
                self.capacity,
                self.batch,
                self.sequences
            )));
        }
        Ok(())
    }

    /// `check_with` against the device's limits.
    pub fn check(&self, gpu: &Gpu, f: &GgufFile) -> Result<(), ModelError> {
        self.check_with(gpu.max_binding, f)
    }

    /// One line for logs and `hearth info`.
    pub fn describe(&self) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
        format!(
            "{} total: weights {}, KV cache {} ({}{} tokens, pages of {}, {}), activations {} (batch {})",
            mib(self.total()),
            mib(self.weights),
            mib(self.kv_cache),
            match self.sequences {
                1 => String::new(),
                n => format!("{} positions shared by {n} sequences of ", self.kv_positions()),
            },
            self.capacity,
            1usize << self.page_shift,
            self.kv_type,
            mib(self.activations),
            self.batch
        )
    }
}
