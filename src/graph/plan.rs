//! Building the prefill and decode plans: every op of every block created once, over the
//! buffers the model allocated. The embedding and the output head are built here; each
//! block is built by its architecture's `block` function from the shared builders of
//! `block.rs`.

use super::block::{pre_norm, Block, DecHead};
use super::buffers::Activations;
use super::Stage;
use crate::gpu::Gpu;
use crate::kernels::matvec::{Fold, NormPrep};
use crate::kernels::{
    Add, Argmax, Dispatch, GetRows, KvCache, LayerNorm, LayerNormIo, MatMul, MatVec, MatVecBatch,
    NormOut, Pool, RmsNorm, Rows, Scale, StepBuffer, Tokens, View,
};
use crate::model::{ModelConfig, ModelError, Weights};
use std::sync::Arc;

/// The ordered dispatches of one forward pass, grouped per command buffer.
pub(super) struct Plan {
    /// Embedding lookup (and scale).
    pub(super) embed: Vec<Stage>,
    /// One entry per transformer block.
    pub(super) layers: Vec<Vec<Stage>>,
    /// Final norm and output head over all tokens (prefill with `all_logits`).
    pub(super) all_logits: Vec<Stage>,
    /// Prefill only: the final norm over all tokens and the pooling of their rows into
    /// one embedding (`Model::embed`), in place of the head.
    pub(super) pool: Vec<Stage>,
    /// The pooling op of `pool`, whose rows `Model::embed` sets per step.
    pub(super) pool_op: Option<Arc<Pool>>,
    /// Where `pool` leaves the embedding, and its width.
    pub(super) pool_out: Option<(wgpu::Buffer, usize)>,
    /// The last token's final norm, logits and argmax. Prefill's reads the row copied
    /// into `last`; decode's reads `x` itself, so a decode step is one command buffer.
    pub(super) tail: Vec<Stage>,
}

/// Builds the plans over the allocated buffers.
pub(super) struct Builder<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) cfg: &'a ModelConfig,
    pub(super) w: &'a Weights,
    pub(super) kv: &'a [KvCache],
    pub(super) a: &'a Activations,
    pub(super) step: &'a StepBuffer,
    /// Positions one sequence may hold (picks LongRoPE's factors).
    pub(super) capacity: usize,
}

impl Builder<'_> {
    /// The prefill plan (up to `batch` tokens of one sequence), the decode plan (one
    /// token) and, for `sequences > 1`, the batched decode plan (up to `step_rows`
    /// tokens of up to `sequences` sequences; its tail covers one output per sequence).
    pub(super) fn plans(
        &self,
        batch: usize,
        sequences: usize,
    ) -> Result<(Plan, Plan, Option<Plan>), ModelError> {
        let (gpu, cfg, a, step) = (self.gpu, self.cfg, self.a, self.step);
        let tok = Tokens {
            max: batch as u32,
            step,
        };
        let hidden = cfg.hidden as u32;
        let x = Rows::packed(&a.x, hidden);
        let embed = |max: u32| -> Result<Vec<Stage>, ModelError> {
            let tok = Tokens { max, step };
            // Gemma's embedding scale rides on the lookup (no dispatch of its own).
            let lookup = GetRows::scaled(gpu, &self.w.token_embd, &a.ids, x, tok, cfg.embed_scale)?;
            let mut v: Vec<Stage> = vec![Arc::new(lookup)];
            // BERT-style encoders: + the position's row, + token type 0's row, LayerNorm
            // (into x, and a copy in h for the first block).
            if let Some(pos) = &self.w.position_embd {
                v.push(Arc::new(GetRows::add_positions(gpu, pos, &a.ids, x, tok)?));
            }
            if let Some(types) = &self.w.token_types {
                let row0 = Rows::broadcast(types, hidden);
                v.push(Arc::new(Add::new(gpu, row0, x, 1.0, tok)?));
            }
            if let Some((w, b)) = &self.w.embd_norm {
                let io = LayerNormIo {
                    x,
                    o: None,
                    h: View::of(&a.h),
                    w,
                    b,
                };
                v.push(Arc::new(LayerNorm::new(gpu, io, cfg.rms_eps, tok)?));
            }
            Ok(v)
        };
        let mut prefill = Plan {
            embed: embed(tok.max)?,
            layers: Vec::new(),
            all_logits: Vec::new(),
            pool: Vec::new(),
            pool_op: None,
            pool_out: None,
            tail: Vec::new(),
        };
        let mut decode = Plan {
            embed: embed(1)?,
            layers: Vec::new(),
            all_logits: Vec::new(),
            pool: Vec::new(),
            pool_op: None,
            pool_out: None,
            tail: Vec::new(),
        };
        let tok_b = Tokens {
            max: super::step_rows(sequences) as u32,
            step,
        };
        // The batched step's outputs (the tail's rows): one per sequence, first in the
        // step (`Model::run_batch` orders them so).
        let tok_out = Tokens {
            max: sequences as u32,
            step,
        };
        let mut batched = match sequences > 1 {
            true => Some(Plan {
                embed: embed(tok_b.max)?,
                layers: Vec::new(),
                all_logits: Vec::new(),
                pool: Vec::new(),
                pool_op: None,
                pool_out: None,
                tail: Vec::new(),
            }),
            false => None,
        };
        let mut pending = None;
        let mut dec_add = None;
        let mut dec_alt = false;
        let (mut dec_head, mut bat_normed) = (DecHead::Plain, false);
        let scratch = std::cell::RefCell::new([None, None]);
        let last = self.w.layers.len().saturating_sub(1);
        for (il, lw) in self.w.layers.iter().enumerate() {
            let mut b = Block {
                gpu,
                cfg,
                a,
                kv: &self.kv[il],
                rope_freqs: cfg.rope_factors(
                    self.w.rope_freqs.as_ref(),
                    (self.w.rope_long.as_ref(), self.w.rope_short.as_ref()),
                    self.capacity,
                ),
                tok,
                il,
                pre: Vec::new(),
                dec: Vec::new(),
                bat: batched.as_ref().map(|_| (tok_b, Vec::new())),
                pending,
                dec_norm_at: None,
                dec_sandwich_at: None,
                dec_alt,
                dec_add: dec_add.take(),
                prev_last: None,
                embed_prep: self.w.position_embd.is_none()
                    && self.w.token_types.is_none()
                    && self.w.embd_norm.is_none(),
                embed_norm: None,
                scratch: &scratch,
            };
            (cfg.arch.def().block)(&mut b, lw)?;
            if il == last {
                (dec_head, bat_normed) = b.finish(self.w.output_norm.as_ref(), &a.last_normed)?;
            }
            if let Some(nw) = b.embed_norm.take() {
                // Block 0 folded its first pre-norm: decode's lookup leaves its inputs.
                let prep = NormPrep {
                    weights: &nw,
                    h: &a.h,
                    ssq: &a.ssq,
                };
                let one = Tokens { max: 1, step };
                let w = &self.w.token_embd;
                let lookup = GetRows::normed(gpu, w, &a.ids, (x, one), cfg.embed_scale, prep)?;
                decode.embed = vec![Arc::new(lookup)];
            }
            pending = b.pending.take();
            dec_alt = b.dec_alt;
            dec_add = b.dec_add.take().and_then(|p| p.carry(b.dec.len()));
            if let Some(op) = b.prev_last.take() {
                // The previous block's adding projection, now also the pre-norm's.
                if let Some(last) = decode.layers.last_mut().and_then(|l| l.last_mut()) {
                    *last = op;
                }
            }
            prefill.layers.push(b.pre);
            decode.layers.push(b.dec);
            if let (Some(plan), Some((_, stages))) = (&mut batched, b.bat) {
                plan.layers.push(stages);
            }
        }
        // Embeddings: the final norm of every token of the step into h, then pooling,
        // then the file's projections of the pooled vector (EmbeddingGemma's dense
        // layers), each into a buffer of its own.
        // Without a final norm (BERT's blocks end normalized) the rows are x itself.
        let final_norm = self.w.output_norm.as_ref();
        let normed = if final_norm.is_some() { &a.h } else { &a.x };
        let pool = Arc::new(Pool::new(
            gpu,
            Rows::packed(normed, hidden),
            &a.pooled,
            tok,
        )?);
        prefill.pool = match final_norm {
            Some(w) => vec![Arc::new(pre_norm(gpu, cfg, a, w, tok)?)],
            None => vec![],
        };
        prefill.pool.push(pool.clone());
        let mut out = (a.pooled.clone(), cfg.hidden);
        for w in &self.w.dense {
            if w.cols as usize != out.1 {
                return Err(ModelError::BadShape {
                    name: w.name.clone(),
                    got: vec![w.cols, w.rows],
                    want: vec![out.1 as u64, w.rows],
                });
            }
            let y = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dense"),
                size: w.rows.max(1) * 4,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mv = MatVec::new(gpu, w, View::of(&out.0), View::of(&y))?;
            prefill.pool.push(Arc::new(mv));
            out = (y, w.rows as usize);
        }
        prefill.pool_op = Some(pool);
        prefill.pool_out = Some(out);
        let head = self.w.head();
        let vocab = cfg.vocab as u32;
        // Final logit soft-capping (Gemma 2), in place after each head.
        let cap = |logits: &wgpu::Buffer, tok: Tokens| -> Result<Vec<Stage>, ModelError> {
            Ok(match cfg.final_softcap {
                Some(c) => vec![Arc::new(Scale::softcap(
                    gpu,
                    Rows::packed(logits, vocab),
                    c,
                    tok,
                )?)],
                None => vec![],
            })
        };
        if let Some(all) = &a.logits_all {
            let h = Rows::packed(normed, hidden);
            let logits = MatMul::new(gpu, head, h, Rows::packed(all, vocab), tok)?;
            prefill.all_logits = match final_norm {
                Some(w) => vec![Arc::new(pre_norm(gpu, cfg, a, w, tok)?)],
                None => vec![],
            };
            prefill.all_logits.push(Arc::new(logits));
            prefill.all_logits.extend(cap(all, tok)?);
        }
        let one = Tokens { max: 1, step };
        let logits = View::of(&a.logits);
        // The head over `input` (with `fold`), soft-cap and argmax.
        let head_tail = |input: View, fold: Fold| -> Result<Vec<Stage>, ModelError> {
            let mv = MatVec::folded(gpu, head, (input, logits), None, fold, None)?;
            let mut v: Vec<Stage> = vec![Arc::new(mv)];
            v.extend(cap(&a.logits, one)?);
            v.push(Arc::new(Argmax::new(gpu, logits, vocab, &a.token, 0)?));
            Ok(v)
        };
        // The final norm of `from` into last_normed, then the head (which reads `from`
        // itself when there is no final norm). The head never applies the norm's
        // weights itself: folded in that way, they cost the Q8_0 head of SmolLM2 a
        // second gather per part of x on lavapipe, 5.4 ms against 4.7-4.8 ms plus 32-34
        // us for the norm (`hearth profile`); where decode folds the final norm
        // (`DecHead::Folded`), the last projection applies them and the head only
        // scales by the norm.
        let tail = |from: &wgpu::Buffer| -> Result<Vec<Stage>, ModelError> {
            let Some(w) = final_norm else {
                return head_tail(View::of(from), Fold::NONE);
            };
            let (x, out) = (Rows::packed(from, hidden), View::of(&a.last_normed));
            let norm = RmsNorm::new(gpu, x, NormOut::To(out), w, cfg.rms_eps, one)?;
            let mut v: Vec<Stage> = vec![Arc::new(norm)];
            v.extend(head_tail(out, Fold::NONE)?);
            Ok(v)
        };
        prefill.tail = tail(&a.last)?;
        // Decode's residual stream where the last folded sandwich left it, its final
        // norm taken in by the last block where it could be (`Block::finish`).
        let last_normed = View::of(&a.last_normed);
        decode.tail = match dec_head {
            DecHead::Plain => tail(a.dec_x(dec_alt))?,
            DecHead::Normed => head_tail(last_normed, Fold::NONE)?,
            DecHead::Folded(n) => {
                let fold = Fold {
                    norm: Some(n),
                    ..Fold::NONE
                };
                head_tail(last_normed, fold)?
            }
        };
        if let (Some(plan), Some(logits), Some(tokens)) =
            (&mut batched, &a.logits_batch, &a.tokens_batch)
        {
            // Each output's final norm (into h, unless the last block's residual left
            // it there: `Block::finish`), its logits row and argmax.
            plan.tail = match final_norm {
                Some(w) if !bat_normed => vec![Arc::new(pre_norm(gpu, cfg, a, w, tok_out)?)],
                _ => vec![],
            };
            let (h, l) = (Rows::packed(normed, hidden), Rows::packed(logits, vocab));
            let head = MatVecBatch::new(gpu, head, h, l, tok_out, None)?;
            let argmax = ByRows::new((1..=tok_out.max).map(|n| {
                let rows = (vocab, n);
                Argmax::rows(gpu, View::of(logits), rows, tokens, 0).map(|op| op.dispatches)
            }))?;
            plan.tail.push(Arc::new(head));
            plan.tail.extend(cap(logits, tok_out)?);
            plan.tail.push(Arc::new(argmax));
        }
        Ok((prefill, decode, batched))
    }
}

/// One op built per count of token rows (the batched plan's argmax of each sequence's
/// logits, a build over the first n rows for each n): a step of n tokens runs build n.
struct ByRows {
    /// Build n - 1 covers rows 0..n.
    builds: Vec<Vec<Dispatch>>,
}

impl ByRows {
    fn new(
        builds: impl Iterator<Item = Result<Vec<Dispatch>, crate::gpu::GpuError>>,
    ) -> Result<Self, crate::gpu::GpuError> {
        Ok(Self {
            builds: builds.collect::<Result<_, _>>()?,
        })
    }
}

impl crate::kernels::Op for ByRows {
    fn dispatches(&self) -> &[Dispatch] {
        self.builds.last().map_or(&[], |b| b)
    }

    fn dispatches_for(&self, n_tokens: u32, _kv_len: u32) -> &[Dispatch] {
        match (n_tokens as usize).min(self.builds.len()) {
            0 => &[],
            n => &self.builds[n - 1],
        }
    }
}
