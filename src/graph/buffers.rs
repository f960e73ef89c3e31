//! The buffers a loaded model works in: activations sized once for the prefill batch,
//! logits, and persistent staging buffers for the small readbacks of every step.

use crate::gpu::{Gpu, GpuError};
use crate::model::ModelConfig;

/// Activation buffers, sized once for `batch` tokens.
pub(super) struct Activations {
    pub(super) ids: wgpu::Buffer,
    pub(super) x: wgpu::Buffer,
    /// The decode plan's residual stream after an odd number of folded sandwich norms
    /// (`matvec::Sandwich` writes the new stream to the buffer it does not read).
    pub(super) x_alt: wgpu::Buffer,
    pub(super) h: wgpu::Buffer,
    /// Attention's query heads, rotated (`rope_kv`'s output), packed per token.
    pub(super) q: wgpu::Buffer,
    /// The q, k and v projections' outputs, `[q | k | v]` per token.
    pub(super) qkv: wgpu::Buffer,
    pub(super) attn: wgpu::Buffer,
    pub(super) o: wgpu::Buffer,
    pub(super) g: wgpu::Buffer,
    pub(super) u: wgpu::Buffer,
    pub(super) last: wgpu::Buffer,
    pub(super) last_normed: wgpu::Buffer,
    /// Decode's sums of squares of the residual stream, per workgroup of the
    /// projection that added into it (a folded pre-norm's scale: `matvec::Fold`).
    pub(super) ssq: wgpu::Buffer,
    pub(super) logits: wgpu::Buffer,
    /// The pooled embedding of the last `Model::embed` (`[hidden]`).
    pub(super) pooled: wgpu::Buffer,
    pub(super) logits_all: Option<wgpu::Buffer>,
    /// Batched decoding: each sequence's logits row and argmax, and the argmaxes' staging.
    pub(super) logits_batch: Option<wgpu::Buffer>,
    pub(super) tokens_batch: Option<wgpu::Buffer>,
    pub(super) staging_batch: Option<wgpu::Buffer>,
    pub(super) token: wgpu::Buffer,
    pub(super) staging_logits: wgpu::Buffer,
    /// The argmax of the last two steps, by step parity: a step's token can be read
    /// while the next step runs.
    pub(super) staging_tokens: [wgpu::Buffer; 2],
    /// A mixture-of-experts model's router state and expert outputs.
    pub(super) moe: Option<MoeBuffers>,
}

/// Per token: the router's logits, the chosen experts and their weights, and the experts'
/// down projections (their gate and up projections go to `g` and `u`).
pub(super) struct MoeBuffers {
    pub(super) logits: wgpu::Buffer,
    pub(super) sel: wgpu::Buffer,
    pub(super) wts: wgpu::Buffer,
    pub(super) down: wgpu::Buffer,
    /// The step's slots grouped by expert (`MoeGroup`), for prefill's expert projections.
    pub(super) order: wgpu::Buffer,
    pub(super) offsets: wgpu::Buffer,
    /// The shared expert's gate logit per token (Qwen2-MoE).
    pub(super) shared_gate: wgpu::Buffer,
}

/// A buffer of `bytes`; one that may be bound as uniform has a whole window past its
/// data: the CPU class's matvecs read x through a uniform window of `X_WINDOW` bytes
/// where it fits, and the batched matvec a window per column block, the last one's
/// starting near the data's end.
fn buffer(gpu: &Gpu, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let size = match usage.contains(wgpu::BufferUsages::UNIFORM) {
        true => bytes.next_multiple_of(4) + crate::kernels::X_WINDOW,
        false => bytes.max(4),
    };
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    })
}

/// `buffer` (with `COPY_DST`) filled with NaN: the folded norms' sums of squares
/// (`ssq`), so a norm that reads a sum no matvec wrote poisons the logits (the model
/// tests fail) instead of reading a zero.
fn nan_buffer(gpu: &Gpu, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let b = buffer(gpu, label, bytes, usage);
    let nan = vec![f32::NAN; (b.size() / 4) as usize];
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(&nan));
    b
}

/// Copies `bytes` from `src` into the persistent `staging` buffer and maps it.
pub(super) async fn read_into(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, GpuError> {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, staging, 0, bytes);
    gpu.submit([enc.finish()]);
    crate::gpu::map_read(gpu, staging, bytes).await
}

impl Activations {
    /// The decode plan's residual stream: `x`, or `x_alt` after an odd number of folded
    /// sandwich norms (`alt`).
    pub(super) fn dec_x(&self, alt: bool) -> &wgpu::Buffer {
        match alt {
            true => &self.x_alt,
            false => &self.x,
        }
    }

    /// Allocates every activation buffer for `batch` tokens per step (prefill's chunk,
    /// or the batched plan's rows if more: `step_rows`), and for `sequences > 1` each
    /// sequence's logits and argmax (a batched step's outputs).
    pub(super) fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        batch: usize,
        all_logits: bool,
        sequences: usize,
    ) -> Self {
        let rows = batch.max(super::step_rows(sequences));
        let batched = sequences > 1;
        use wgpu::BufferUsages as U;
        // Matvec inputs also UNIFORM: the CPU class's matvecs read x through a uniform
        // window (`buffer`).
        let data = U::STORAGE | U::COPY_SRC | U::COPY_DST;
        let act = data | U::UNIFORM;
        let f =
            |label: &str, per_token: usize| buffer(gpu, label, (rows * per_token * 4) as u64, act);
        let v = cfg.vocab as u64;
        // The gate and up activations hold every chosen expert's in a MoE model.
        let moe = cfg.is_moe() as usize;
        let ffn = cfg
            .ffn
            .max(cfg.n_expert_used * cfg.expert_ffn * moe)
            .max(cfg.expert_shared_ffn * moe);
        Self {
            ids: buffer(gpu, "ids", rows as u64 * 4, U::STORAGE | U::COPY_DST),
            x: f("x", cfg.hidden),
            x_alt: buffer(gpu, "x_alt", cfg.hidden as u64 * 4, act),
            h: f("h", cfg.hidden),
            q: f("q", cfg.q_dim()),
            qkv: f("qkv", cfg.q_dim() + 2 * cfg.kv_dim()),
            attn: f("attn", cfg.q_dim()),
            o: f("o", cfg.hidden),
            g: f("g", ffn),
            u: f("u", ffn),
            last: buffer(gpu, "last", cfg.hidden as u64 * 4, act),
            last_normed: buffer(gpu, "last_normed", cfg.hidden as u64 * 4, act),
            ssq: nan_buffer(gpu, "ssq", cfg.hidden as u64 * 4, data),
            logits: buffer(gpu, "logits", v * 4, data),
            pooled: buffer(gpu, "pooled", cfg.hidden as u64 * 4, act),
            logits_all: all_logits.then(|| buffer(gpu, "logits_all", batch as u64 * v * 4, data)),
            logits_batch: batched
                .then(|| buffer(gpu, "logits_batch", sequences as u64 * v * 4, data)),
            tokens_batch: batched.then(|| buffer(gpu, "tokens_batch", sequences as u64 * 4, data)),
            staging_batch: batched.then(|| {
                let usage = U::MAP_READ | U::COPY_DST;
                buffer(gpu, "staging batch", sequences as u64 * 4, usage)
            }),
            token: buffer(gpu, "token", 4, data),
            staging_logits: buffer(gpu, "staging logits", v * 4, U::MAP_READ | U::COPY_DST),
            staging_tokens: [0, 1]
                .map(|_| buffer(gpu, "staging token", 4, U::MAP_READ | U::COPY_DST)),
            moe: cfg.is_moe().then(|| MoeBuffers {
                logits: f("router logits", cfg.n_expert),
                sel: f("experts", cfg.n_expert_used),
                wts: f("expert weights", cfg.n_expert_used),
                down: f("expert outputs", cfg.n_expert_used * cfg.hidden),
                order: f("expert order", cfg.n_expert_used),
                offsets: buffer(
                    gpu,
                    "expert offsets",
                    (2 * cfg.n_expert as u64 + 2) * 4,
                    act,
                ),
                shared_gate: f("shared expert gate", 1),
            }),
        }
    }
}
