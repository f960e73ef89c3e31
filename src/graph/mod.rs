//! Plans and the executor. At load every pipeline, bind group and buffer is created and two
//! plans are built: prefill (the prompt in chunks of `batch` tokens through matrix-matrix
//! kernels) and decode (one token through matrix-vector kernels). A step only writes the
//! token ids and the small `Step` uniform, then records the plan layer by layer into
//! command buffers and submits each as soon as it is recorded.

// wgpu handles are not Send/Sync on wasm, where there is a single thread anyway.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod memory;

pub use memory::MemoryPlan;

use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuError};
use crate::kernels::{
    Add, Argmax, AttentionDecode, AttentionPrefill, GatedAct, GetRows, KvAppend, KvCache, MatMul,
    MatVec, NormOut, RmsNorm, Rope, Scale, Step, StepBuffer, View,
};
use crate::model::{ModelConfig, ModelError, Weights};
use std::sync::Arc;

/// Something that records dispatches into a compute pass.
pub trait Encode {
    /// Records the op's dispatches.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>);
}

macro_rules! impl_encode {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
                <$t>::encode(self, pass)
            }
        }
    )*};
}
impl_encode!(
    MatVec,
    MatMul,
    GetRows,
    RmsNorm,
    Rope,
    Add,
    Scale,
    GatedAct,
    Argmax,
    KvAppend,
    AttentionDecode,
    AttentionPrefill
);

/// An op shared between plans (norms, RoPE and friends serve prefill and decode alike).
#[cfg(not(target_arch = "wasm32"))]
pub type Stage = Arc<dyn Encode + Send + Sync>;
/// An op shared between plans (norms, RoPE and friends serve prefill and decode alike).
#[cfg(target_arch = "wasm32")]
pub type Stage = Arc<dyn Encode>;

/// Options fixed at load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV-cache capacity in tokens (clamped to the model's context length).
    pub context: usize,
    /// Prefill chunk size: tokens per matrix-matrix pass.
    pub batch: usize,
    /// Keep logits of every prefill token (tests, perplexity), not only the last.
    pub all_logits: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            batch: 64,
            all_logits: false,
        }
    }
}

/// The ordered dispatches of one forward pass, grouped per command buffer.
struct Plan {
    /// Embedding lookup (and scale).
    embed: Vec<Stage>,
    /// One entry per transformer block.
    layers: Vec<Vec<Stage>>,
    /// Final norm and output head over all tokens (prefill with `all_logits`).
    all_logits: Vec<Stage>,
}

/// Activation buffers, sized once for `batch` tokens.
struct Activations {
    ids: wgpu::Buffer,
    x: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attn: wgpu::Buffer,
    o: wgpu::Buffer,
    g: wgpu::Buffer,
    u: wgpu::Buffer,
    last: wgpu::Buffer,
    last_normed: wgpu::Buffer,
    logits: wgpu::Buffer,
    logits_all: Option<wgpu::Buffer>,
    token: wgpu::Buffer,
    staging_logits: wgpu::Buffer,
    staging_token: wgpu::Buffer,
}

/// A model loaded on the GPU with its KV cache: feed tokens, read logits or the argmax.
pub struct Model {
    /// Hyperparameters.
    pub cfg: ModelConfig,
    /// The device.
    pub gpu: Arc<Gpu>,
    /// What the load planned and allocated.
    pub memory: MemoryPlan,
    weights: Weights,
    #[allow(dead_code)] // owned here; ops hold bind groups on its buffers
    kv: Vec<KvCache>,
    step: StepBuffer,
    acts: Activations,
    prefill: Plan,
    decode: Plan,
    tail: Vec<Stage>,
    batch: usize,
    capacity: usize,
    pos: usize,
    /// Tokens in the last step (rows of `logits_all` that are valid).
    last_n: usize,
    last_was_prefill: bool,
}

fn buffer(gpu: &Gpu, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4),
        usage,
        mapped_at_creation: false,
    })
}

impl Model {
    /// Uploads the weights of `f`, allocates the KV cache and activations, and builds the
    /// prefill and decode plans. Refuses before allocating when the plan cannot fit.
    pub fn load(gpu: Arc<Gpu>, f: &GgufFile, opts: &LoadOptions) -> Result<Self, ModelError> {
        let cfg = ModelConfig::from_gguf(f)?;
        if cfg.final_softcap.is_some() {
            return Err(ModelError::Input(format!(
                "{}: final logit soft-capping is not supported",
                cfg.arch.name()
            )));
        }
        let capacity = opts.context.clamp(1, cfg.context);
        let batch = opts.batch.clamp(1, capacity);
        let memory = MemoryPlan::new(
            &cfg,
            f,
            capacity,
            batch,
            opts.all_logits,
            gpu.features.shader_f16,
        );
        memory.check(&gpu, f)?;
        let weights = Weights::upload(&gpu, f, &cfg)?;
        let kv = (0..cfg.n_layers)
            .map(|_| KvCache::new(&gpu, capacity as u32, cfg.kv_dim() as u32))
            .collect::<Result<Vec<_>, GpuError>>()?;
        let acts = Activations::new(&gpu, &cfg, batch, opts.all_logits);
        let step = StepBuffer::new(&gpu, Step::new(0, 1));
        let b = Builder {
            gpu: &gpu,
            cfg: &cfg,
            w: &weights,
            kv: &kv,
            a: &acts,
            step: &step,
        };
        let (prefill, decode, tail) = b.plans(batch)?;
        Ok(Self {
            cfg,
            gpu,
            memory,
            weights,
            kv,
            step,
            acts,
            prefill,
            decode,
            tail,
            batch,
            capacity,
            pos: 0,
            last_n: 0,
            last_was_prefill: false,
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

    /// Forgets the sequence (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.last_n = 0;
    }

    /// Rewinds to position `pos` (keeps the first `pos` cached tokens).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Runs `tokens` at the current position: one token goes through the decode plan,
    /// more through the prefill plan in chunks. Afterwards `logits()` holds the last
    /// token's logits (and `all_logits()` every prefill token's, if enabled).
    pub fn forward(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens to process".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.cfg.vocab,
            });
        }
        if self.pos + tokens.len() > self.capacity {
            return Err(ModelError::ContextFull {
                needed: self.pos + tokens.len(),
                capacity: self.capacity,
            });
        }
        if tokens.len() == 1 {
            self.run(tokens, false);
        } else {
            for chunk in tokens.chunks(self.batch) {
                self.run(chunk, true);
            }
        }
        Ok(())
    }

    /// Records and submits one step of `tokens.len()` tokens at `self.pos`.
    fn run(&mut self, tokens: &[u32], prefill: bool) {
        let gpu = &self.gpu;
        let n = tokens.len();
        gpu.queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        self.step.write(gpu, Step::new(self.pos as u32, n as u32));
        let plan = if prefill { &self.prefill } else { &self.decode };
        let submit = |stages: &[Stage], before: Option<&dyn Fn(&mut wgpu::CommandEncoder)>| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            if let Some(f) = before {
                f(&mut enc);
            }
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for s in stages {
                    s.encode(&mut pass);
                }
            }
            gpu.queue.submit([enc.finish()]);
        };
        submit(&plan.embed, None);
        for layer in &plan.layers {
            submit(layer, None);
        }
        if prefill && !plan.all_logits.is_empty() {
            submit(&plan.all_logits, None);
        }
        // The last token's row becomes the input of the shared tail (norm, head, argmax).
        let row = (n as u64 - 1) * self.cfg.hidden as u64 * 4;
        let (x, last, bytes) = (&self.acts.x, &self.acts.last, self.cfg.hidden as u64 * 4);
        submit(
            &self.tail,
            Some(&|enc: &mut wgpu::CommandEncoder| {
                enc.copy_buffer_to_buffer(x, row, last, 0, bytes)
            }),
        );
        self.pos += n;
        self.last_n = n;
        self.last_was_prefill = prefill;
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
        let b = read_into(&self.gpu, &self.acts.token, 0, &self.acts.staging_token, 4).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Blocking `forward` + `argmax`, the greedy step of native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn greedy_step(&mut self, tokens: &[u32]) -> Result<u32, ModelError> {
        self.forward(tokens)?;
        Ok(pollster::block_on(self.argmax())?)
    }

    /// The weights (for inspection and profiling).
    pub fn weights(&self) -> &Weights {
        &self.weights
    }
}

/// Copies `bytes` from `src` into the persistent `staging` buffer and maps it.
async fn read_into(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, GpuError> {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, staging, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    let (tx, rx) = futures::channel::oneshot::channel();
    staging
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.wait()?;
    rx.await
        .map_err(|_| GpuError::Runtime("readback cancelled".into()))?
        .map_err(|e| GpuError::Runtime(format!("readback failed: {e}")))?;
    let out = staging
        .slice(..bytes)
        .get_mapped_range()
        .map_err(|e| GpuError::Runtime(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(out)
}

impl Activations {
    fn new(gpu: &Gpu, cfg: &ModelConfig, batch: usize, all_logits: bool) -> Self {
        use wgpu::BufferUsages as U;
        let act = U::STORAGE | U::COPY_SRC | U::COPY_DST;
        let f =
            |label: &str, per_token: usize| buffer(gpu, label, (batch * per_token * 4) as u64, act);
        let v = cfg.vocab as u64;
        Self {
            ids: buffer(gpu, "ids", batch as u64 * 4, U::STORAGE | U::COPY_DST),
            x: f("x", cfg.hidden),
            h: f("h", cfg.hidden),
            q: f("q", cfg.q_dim()),
            k: f("k", cfg.kv_dim()),
            v: f("v", cfg.kv_dim()),
            attn: f("attn", cfg.q_dim()),
            o: f("o", cfg.hidden),
            g: f("g", cfg.ffn),
            u: f("u", cfg.ffn),
            last: buffer(gpu, "last", cfg.hidden as u64 * 4, act),
            last_normed: buffer(gpu, "last_normed", cfg.hidden as u64 * 4, act),
            logits: buffer(gpu, "logits", v * 4, act),
            logits_all: all_logits.then(|| buffer(gpu, "logits_all", batch as u64 * v * 4, act)),
            token: buffer(gpu, "token", 4, act),
            staging_logits: buffer(gpu, "staging logits", v * 4, U::MAP_READ | U::COPY_DST),
            staging_token: buffer(gpu, "staging token", 4, U::MAP_READ | U::COPY_DST),
        }
    }
}

/// Builds the plans over the allocated buffers.
struct Builder<'a> {
    gpu: &'a Gpu,
    cfg: &'a ModelConfig,
    w: &'a Weights,
    kv: &'a [KvCache],
    a: &'a Activations,
    step: &'a StepBuffer,
}

impl Builder<'_> {
    fn plans(&self, batch: usize) -> Result<(Plan, Plan, Vec<Stage>), ModelError> {
        let (gpu, cfg, a, step) = (self.gpu, self.cfg, self.a, self.step);
        let t = batch as u32;
        let hidden = cfg.hidden as u32;
        let embed_scale: Vec<Stage> = if cfg.embed_scale != 1.0 {
            vec![Arc::new(Scale::new(
                gpu,
                View::of(&a.x),
                hidden,
                hidden,
                cfg.embed_scale,
                t,
                step,
            )?)]
        } else {
            vec![]
        };
        let embed = |n: u32| -> Result<Vec<Stage>, ModelError> {
            let mut v: Vec<Stage> = vec![Arc::new(GetRows::new(
                gpu,
                &self.w.token_embd,
                &a.ids,
                n as u64,
                View::of(&a.x),
                cfg.hidden as u64,
                step,
            )?)];
            v.extend(embed_scale.iter().cloned());
            Ok(v)
        };
        let mut prefill = Plan {
            embed: embed(t)?,
            layers: Vec::new(),
            all_logits: Vec::new(),
        };
        let mut decode = Plan {
            embed: embed(1)?,
            layers: Vec::new(),
            all_logits: Vec::new(),
        };
        for il in 0..cfg.n_layers {
            let (p, d) = self.layer(il, t)?;
            prefill.layers.push(p);
            decode.layers.push(d);
        }
        let eps = cfg.rms_eps;
        let head = self.w.head();
        if let Some(all) = &a.logits_all {
            prefill.all_logits = vec![
                Arc::new(RmsNorm::new(
                    gpu,
                    View::of(&a.x),
                    NormOut::To(View::of(&a.h)),
                    &self.w.output_norm,
                    hidden,
                    1,
                    hidden,
                    eps,
                    t,
                    step,
                )?),
                Arc::new(MatMul::new(
                    gpu,
                    head,
                    View::of(&a.h),
                    hidden as u64,
                    View::of(all),
                    cfg.vocab as u64,
                    t as u64,
                    step,
                )?),
            ];
        }
        let tail: Vec<Stage> = vec![
            Arc::new(RmsNorm::new(
                gpu,
                View::of(&a.last),
                NormOut::To(View::of(&a.last_normed)),
                &self.w.output_norm,
                hidden,
                1,
                hidden,
                eps,
                1,
                step,
            )?),
            Arc::new(MatVec::new(
                gpu,
                head,
                View::of(&a.last_normed),
                View::of(&a.logits),
            )?),
            Arc::new(Argmax::new(
                gpu,
                View::of(&a.logits),
                cfg.vocab as u32,
                &a.token,
                0,
            )?),
        ];
        Ok((prefill, decode, tail))
    }

    /// The stages of block `il` for prefill (batch `t`) and for decode.
    fn layer(&self, il: usize, t: u32) -> Result<(Vec<Stage>, Vec<Stage>), ModelError> {
        let (gpu, cfg, a, step) = (self.gpu, self.cfg, self.a, self.step);
        let lw = &self.w.layers[il];
        let (hidden, qd, kvd, ffn) = (
            cfg.hidden as u32,
            cfg.q_dim() as u32,
            cfg.kv_dim() as u32,
            cfg.ffn as u32,
        );
        let (nh, nkv, hd) = (
            cfg.n_heads as u32,
            cfg.n_kv_heads as u32,
            cfg.head_dim as u32,
        );
        let eps = cfg.rms_eps;
        let window = cfg.window(il).map(|w| w as u32);
        let (base, pos_scale) = cfg.rope(il);
        let kv = &self.kv[il];

        // A projection in both forms: matmul for prefill, matvec for decode.
        let proj = |w: &crate::gpu::GpuTensor,
                    x: &wgpu::Buffer,
                    y: &wgpu::Buffer|
         -> Result<(Stage, Stage), ModelError> {
            let mm: Stage = Arc::new(MatMul::new(
                gpu,
                w,
                View::of(x),
                w.cols,
                View::of(y),
                w.rows,
                t as u64,
                step,
            )?);
            let mv: Stage = Arc::new(MatVec::new(gpu, w, View::of(x), View::of(y))?);
            Ok((mm, mv))
        };
        let mut pre: Vec<Stage> = Vec::new();
        let mut dec: Vec<Stage> = Vec::new();
        let both = |s: Stage, pre: &mut Vec<Stage>, dec: &mut Vec<Stage>| {
            pre.push(s.clone());
            dec.push(s);
        };
        let split = |(p, d): (Stage, Stage), pre: &mut Vec<Stage>, dec: &mut Vec<Stage>| {
            pre.push(p);
            dec.push(d);
        };

        // Attention block.
        both(
            Arc::new(RmsNorm::new(
                gpu,
                View::of(&a.x),
                NormOut::To(View::of(&a.h)),
                &lw.attn_norm,
                hidden,
                1,
                hidden,
                eps,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        split(proj(&lw.wq, &a.h, &a.q)?, &mut pre, &mut dec);
        split(proj(&lw.wk, &a.h, &a.k)?, &mut pre, &mut dec);
        split(proj(&lw.wv, &a.h, &a.v)?, &mut pre, &mut dec);
        if let Some([bq, bk, bv]) = &lw.bias {
            for (b, y, width) in [(bq, &a.q, qd), (bk, &a.k, kvd), (bv, &a.v, kvd)] {
                both(
                    Arc::new(Add::new(
                        gpu,
                        View::of(b),
                        View::of(y),
                        width,
                        0,
                        width,
                        true,
                        1.0,
                        t,
                        step,
                    )?),
                    &mut pre,
                    &mut dec,
                );
            }
        }
        if let Some([qn, kn]) = &lw.qk_norm {
            both(
                Arc::new(RmsNorm::new(
                    gpu,
                    View::of(&a.q),
                    NormOut::InPlace,
                    qn,
                    hd,
                    nh,
                    qd,
                    eps,
                    t,
                    step,
                )?),
                &mut pre,
                &mut dec,
            );
            both(
                Arc::new(RmsNorm::new(
                    gpu,
                    View::of(&a.k),
                    NormOut::InPlace,
                    kn,
                    hd,
                    nkv,
                    kvd,
                    eps,
                    t,
                    step,
                )?),
                &mut pre,
                &mut dec,
            );
        }
        let rope_dims = cfg.rope_dims as u32;
        let freqs = self.w.rope_freqs.as_ref();
        both(
            Arc::new(Rope::new(
                gpu,
                View::of(&a.q),
                nh,
                hd,
                rope_dims,
                qd,
                base,
                pos_scale,
                cfg.rope_neox,
                freqs,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        both(
            Arc::new(Rope::new(
                gpu,
                View::of(&a.k),
                nkv,
                hd,
                rope_dims,
                kvd,
                base,
                pos_scale,
                cfg.rope_neox,
                freqs,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        both(
            Arc::new(KvAppend::new(
                gpu,
                View::of(&a.k),
                View::of(&a.v),
                kvd,
                kv,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        let scale = cfg.attn_scale;
        pre.push(Arc::new(AttentionPrefill::new(
            gpu,
            View::of(&a.q),
            kv,
            View::of(&a.attn),
            nh,
            nkv,
            hd,
            scale,
            window,
            t,
            step,
        )?));
        dec.push(Arc::new(AttentionDecode::new(
            gpu,
            View::of(&a.q),
            kv,
            View::of(&a.attn),
            nh,
            nkv,
            hd,
            scale,
            window,
            step,
        )?));
        split(proj(&lw.wo, &a.attn, &a.o)?, &mut pre, &mut dec);
        let residual = |norm: &Option<wgpu::Buffer>| -> Result<Stage, ModelError> {
            Ok(match norm {
                Some(w) => Arc::new(RmsNorm::new(
                    gpu,
                    View::of(&a.o),
                    NormOut::AddTo(View::of(&a.x)),
                    w,
                    hidden,
                    1,
                    hidden,
                    eps,
                    t,
                    step,
                )?),
                None => Arc::new(Add::new(
                    gpu,
                    View::of(&a.o),
                    View::of(&a.x),
                    hidden,
                    hidden,
                    hidden,
                    false,
                    1.0,
                    t,
                    step,
                )?),
            })
        };
        both(residual(&lw.post_attn_norm)?, &mut pre, &mut dec);

        // Feed-forward block.
        both(
            Arc::new(RmsNorm::new(
                gpu,
                View::of(&a.x),
                NormOut::To(View::of(&a.h)),
                &lw.ffn_norm,
                hidden,
                1,
                hidden,
                eps,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        split(proj(&lw.gate, &a.h, &a.g)?, &mut pre, &mut dec);
        split(proj(&lw.up, &a.h, &a.u)?, &mut pre, &mut dec);
        both(
            Arc::new(GatedAct::new(
                gpu,
                View::of(&a.g),
                View::of(&a.u),
                ffn,
                ffn,
                cfg.act,
                t,
                step,
            )?),
            &mut pre,
            &mut dec,
        );
        split(proj(&lw.down, &a.g, &a.o)?, &mut pre, &mut dec);
        both(residual(&lw.post_ffn_norm)?, &mut pre, &mut dec);
        Ok((pre, dec))
    }
}
