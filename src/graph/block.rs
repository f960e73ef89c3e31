//! The shared block builders architectures compose (`src/model/<arch>.rs`): each adds
//! the stages of one sub-block to the prefill and the decode plan at once, over the
//! model's activation buffers. The residual stream is `x`; a pre-norm writes `h`; a
//! sub-block reads `h` and leaves its output in `o`; `residual` adds `o` into `x`.

use super::buffers::Activations;
use super::{Stage, StageOp};
use crate::gpu::{Gpu, GpuError, GpuTensor};
use crate::kernels::matvec::{fold_parts, sandwich_fits, Fold, NormPrep, NormScale, Sandwich};
use crate::kernels::{
    Add, AttentionDecode, AttentionPrefill, AttnSpec, GatedAct, KvCache, LayerNorm, LayerNormIo,
    MatMul, MatVec, MatVecBatch, NormOut, ResidualNorm, ResidualNormIo, RmsNorm, RopeKv, RopeKvIo,
    Rows, Tokens, View,
};
use crate::kernels::{ExpertIo, ExpertProj, MatVecId, MoeGroup, MoeRoute, MoeSum};
use crate::model::{
    Attention, FeedForward, LayerWeights, ModelConfig, ModelError, Moe, SeqFeedForward,
};
use std::sync::Arc;

/// Builds block `il` of both plans; handed to the architecture's `block` function.
pub struct Block<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) cfg: &'a ModelConfig,
    pub(super) a: &'a Activations,
    pub(super) kv: &'a KvCache,
    pub(super) rope_freqs: Option<&'a wgpu::Buffer>,
    pub(super) tok: Tokens<'a>,
    pub(super) il: usize,
    pub(super) pre: Vec<Stage>,
    pub(super) dec: Vec<Stage>,
    /// The batched decode plan's stages (one token of each of up to `tok.max`
    /// sequences), when the model decodes several sequences per step.
    pub(super) bat: Option<(Tokens<'a>, Vec<Stage>)>,
    /// A residual add not yet emitted (with its post-norm, if any): the next `pre_norm`
    /// takes it into one fused op; anything else emits it first. It may carry over from
    /// the previous block.
    pub(super) pending: Option<Pending>,
    /// The decode plan's pre-norm `h = RmsNorm(x) * w` at this index of `dec` (a plain
    /// norm, nothing else in it), with its weights.
    pub(super) dec_norm_at: Option<(usize, wgpu::Buffer)>,
    /// The decode plan's residual add through a post-norm fused with the next pre-norm
    /// (Gemma's sandwich) at this index of `dec`, with the post-norm's and the pre-norm's
    /// weights: the projections that read h may take it in (`dec_input`).
    pub(super) dec_sandwich_at: Option<(usize, wgpu::Buffer, wgpu::Buffer)>,
    /// Whether the decode plan's residual stream is in `a.x_alt` rather than `a.x` at
    /// this point (a folded sandwich moves it to the other buffer).
    pub(super) dec_alt: bool,
    /// The decode plan's last projection into `o`, which may take the residual add and
    /// the next pre-norm's inputs (see `DecAdd`).
    pub(super) dec_add: Option<DecAdd>,
    /// The previous block's last decode stage rebuilt (its adding projection, when this
    /// block's first projections took its pre-norm): the plan swaps it in.
    pub(super) prev_last: Option<Stage>,
    /// Whether decode's embedding lookup can leave the first pre-norm's inputs (a plain
    /// lookup, nothing added or normed after it): block 0's projections then fold that
    /// norm in and ask for it in `embed_norm` (its weights).
    pub(super) embed_prep: bool,
    pub(super) embed_norm: Option<wgpu::Buffer>,
    /// Decode attention's partials, one buffer per plan (decode, batched) that every
    /// layer's op shares: the layers run one after another.
    pub(super) scratch: &'a std::cell::RefCell<[Option<wgpu::Buffer>; 2]>,
}

/// A decode projection into `o` at index `at` of the decode plan, `o = W x`. A residual
/// add without post-norm that follows it at once makes it add into x instead (`added`:
/// decode then has no add dispatch and o is not written). When the next pre-norm's plain
/// norm follows that, and the projections reading h come next, the norm's dispatch is
/// dropped: this projection also leaves `h = x * w` and its sums of squares, and those
/// projections scale their sums by the norm (`Fold`).
/// `carried`: the projection is the previous block's last decode stage (the residual
/// add that ends a block, and the next block's pre-norm).
pub(super) struct DecAdd {
    at: usize,
    w: GpuTensor,
    x: wgpu::Buffer,
    added: bool,
    carried: bool,
}

impl DecAdd {
    /// This block's adding projection when it is its last decode stage (`dec_len`
    /// stages), to carry into the next block.
    pub(super) fn carry(self, dec_len: usize) -> Option<Self> {
        (self.added && !self.carried && self.at + 1 == dec_len).then_some(Self {
            carried: true,
            ..self
        })
    }
}

/// How decode's head reads the final norm of the residual stream (`Block::finish`):
/// from the norm dispatch the tail adds (`Plain`), from the row the last block's fused
/// residual norm left (`Normed`), or from `x * w` the last projection left, scaling by
/// the norm (`Folded`).
pub(super) enum DecHead<'a> {
    Plain,
    Normed,
    Folded(NormScale<'a>),
}

/// A residual add `x += o` not yet emitted in the prefill and batched plans, with its
/// post-norm; `dec_done` when the decode plan's projection into o already added into
/// x (a folded add), so decode emits nothing for it.
pub(super) struct Pending {
    post: Option<wgpu::Buffer>,
    dec_done: bool,
}

/// How the decode projections of a sub-block's normed input read it (`dec_input`): h
/// as the pre-norm wrote it or with its norm folded (`fold`), or, with Gemma's sandwich
/// folded, o with the post-norm's and pre-norm's weights and the residual stream's
/// buffers (in, out).
pub(super) struct DecInput<'a> {
    x: &'a wgpu::Buffer,
    fold: Fold<'a>,
    sandwich: Option<(wgpu::Buffer, wgpu::Buffer, [&'a wgpu::Buffer; 2], f32)>,
}

impl<'a> DecInput<'a> {
    fn h(a: &'a Activations, fold: Fold<'a>) -> Self {
        Self {
            x: &a.h,
            fold,
            sandwich: None,
        }
    }

    /// The projections' input binding.
    fn x(&self) -> View<'a> {
        View::of(self.x)
    }

    /// The fold of one projection; `first`: the one that writes the sandwich's new
    /// residual stream (the others read the same inputs and leave it).
    fn fold(&self, first: bool) -> Fold<'_> {
        match &self.sandwich {
            Some((post, norm, [res_in, res_out], eps)) => Fold {
                sandwich: Some(Sandwich {
                    res_in,
                    res_out,
                    post,
                    norm,
                    eps: *eps,
                    write: first,
                }),
                ..Fold::NONE
            },
            None => self.fold,
        }
    }
}

impl<'a> Block<'a> {
    /// A token-parallel op in every plan, built by `make` once per plan: over the
    /// prefill batch, over one token for decode (so a decode step launches only one
    /// token's grid), and over the batched plan's sequences.
    fn both<S: StageOp>(
        &mut self,
        make: impl Fn(Tokens) -> Result<S, GpuError>,
    ) -> Result<(), ModelError> {
        let one = Tokens {
            max: 1,
            step: self.tok.step,
        };
        self.pre.push(Arc::new(make(self.tok)?));
        self.dec.push(Arc::new(make(one)?));
        if let Some((tok, bat)) = &mut self.bat {
            bat.push(Arc::new(make(*tok)?));
        }
        Ok(())
    }

    /// In the batched plan: `y = W x` for each sequence's token (`act`: the gated form).
    fn batched(
        &mut self,
        w: &GpuTensor,
        (xr, yr): (Rows, Rows),
        act: Option<crate::model::Activation>,
    ) -> Result<(), ModelError> {
        if let Some((tok, bat)) = &mut self.bat {
            bat.push(Arc::new(MatVecBatch::new(self.gpu, w, xr, yr, *tok, act)?));
        }
        Ok(())
    }

    /// The prefill form of `y = W x` over the step's tokens (`act`: the gated form, `y`
    /// holding the gate): the tiled matmul (on cooperative matrices where the device
    /// has them), or on adapters where the batched matvec shares x across a subgroup
    /// (CPU rasterizers, unless cooperative matrices are asked for), the batched matvec
    /// over every token's column. None when the gated form needs the matmul (then the
    /// caller runs the gated activation as its own op).
    fn prefill_proj(
        &self,
        w: &GpuTensor,
        (xr, yr): (Rows, Rows),
        act: Option<crate::model::Activation>,
    ) -> Result<Option<Stage>, ModelError> {
        if self.prefill_batches(w) {
            let op = MatVecBatch::new(self.gpu, w, xr, yr, self.tok, act)?;
            return Ok(Some(Arc::new(op)));
        }
        if act.is_some() {
            return Ok(None);
        }
        Ok(Some(Arc::new(MatMul::new(self.gpu, w, xr, yr, self.tok)?)))
    }

    /// Whether prompts run `w` through the batched matvec (see `prefill_proj`).
    fn prefill_batches(&self, w: &GpuTensor) -> bool {
        crate::kernels::matmul::coop_for(self.gpu, w.ty).is_none()
            && crate::kernels::matvec_batch::shares_x_on(self.gpu, w)
    }

    /// A projection `y = W x`: a matmul in prefill (see `prefill_proj`), a matvec in
    /// decode, a matrix times the sequences' columns in the batched plan.
    fn proj(
        &mut self,
        w: &GpuTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<(), ModelError> {
        let pre = self.prefill_proj(w, packed(w, x, y), None)?;
        self.pre.extend(pre);
        let mv = MatVec::new(self.gpu, w, View::of(x), View::of(y))?;
        self.dec.push(Arc::new(mv));
        // Into o: a residual add may follow.
        if *y == self.a.o && *x != self.a.x {
            self.dec_add = Some(DecAdd {
                at: self.dec.len() - 1,
                w: w.clone(),
                x: x.clone(),
                added: false,
                carried: false,
            });
        }
        self.batched(w, packed(w, x, y), None)
    }

    /// The decode plan's residual stream at this point (see `dec_alt`).
    fn dec_res(&self) -> &'a wgpu::Buffer {
        self.a.dec_x(self.dec_alt)
    }

    /// How the decode projections of h about to be built (of `readers`) read it. When
    /// the decode plan ends with a sandwich's residual norm (`dec_sandwich_at`) and every
    /// reader can take it in, its dispatch is dropped and the projections read o
    /// (`Sandwich`; the residual stream moves to the other buffer). When the plan ends
    /// with an adding projection and the pre-norm's plain norm (see `DecAdd`), the norm
    /// is dropped, the projection rebuilt to leave `h = x * w` and its sums of squares,
    /// and the fold returned scales by the norm. Else h as the norm wrote it.
    fn dec_input(&mut self, readers: &[&GpuTensor]) -> Result<DecInput<'a>, ModelError> {
        let (gpu, a, n) = (self.gpu, self.a, self.dec.len());
        if let Some((i, post, norm)) = self.dec_sandwich_at.take() {
            if i + 1 != n || readers.is_empty() || !readers.iter().all(|w| sandwich_fits(gpu, w)) {
                return Ok(DecInput::h(a, Fold::NONE));
            }
            self.dec.pop();
            let io = [self.dec_res(), a.dec_x(!self.dec_alt)];
            self.dec_alt = !self.dec_alt;
            return Ok(DecInput {
                x: &a.o,
                fold: Fold::NONE,
                sandwich: Some((post, norm, io, self.cfg.rms_eps)),
            });
        }
        let none = DecInput::h(a, Fold::NONE);
        let Some((i, nw)) = self.dec_norm_at.take() else {
            return Ok(none);
        };
        let Some(p) = &self.dec_add else {
            // The first block's pre-norm, decode's first stage: the lookup before it
            // leaves the norm's inputs instead (`embed_norm`, one sum), and the
            // projections scale by the norm.
            if !(self.embed_prep && self.il == 0 && i == 0 && n == 1) {
                return Ok(none);
            }
            self.dec.pop();
            self.embed_norm = Some(nw);
            let fold = Fold {
                norm: Some(NormScale {
                    ssq: &a.ssq,
                    parts: 1,
                    eps: self.cfg.rms_eps,
                }),
                ..Fold::NONE
            };
            return Ok(DecInput::h(a, fold));
        };
        let parts = fold_parts(gpu, &p.w, None);
        // The projection, then the norm, then nothing: in this block, or across blocks.
        let next = match p.carried {
            true => i == 0,
            false => p.at + 1 == i,
        };
        let (true, Some(parts)) = (p.added && next && i + 1 == n, parts) else {
            return Ok(none);
        };
        let fold = Fold {
            norm: None,
            add: true,
            prep: Some(NormPrep {
                weights: &nw,
                h: &a.h,
                ssq: &a.ssq,
            }),
            sandwich: None,
        };
        let io = (View::of(&p.x), View::of(self.dec_res()));
        let mv = MatVec::folded(gpu, &p.w, io, None, fold, None)?;
        // The sums it leaves (claimed rows leave one per subgroup).
        let parts = mv.prep_parts.unwrap_or(parts);
        let mv: Stage = Arc::new(mv);
        match p.carried {
            true => self.prev_last = Some(mv),
            false => self.dec[p.at] = mv,
        }
        self.dec.pop();
        self.dec_add = None;
        let fold = Fold {
            norm: Some(NormScale {
                ssq: &a.ssq,
                parts,
                eps: self.cfg.rms_eps,
            }),
            ..Fold::NONE
        };
        Ok(DecInput::h(a, fold))
    }

    /// The q, k and v projections of `h` into `a.qkv` (`[q | k | v]` per token, `stride`
    /// elements apart) in every plan: one projection per run of the three whose weights
    /// share a buffer (`joined_runs`), so a step launches one where they all do; in
    /// decode the pre-norm folded in where it can be (`dec_input`).
    fn qkv(&mut self, w: [&GpuTensor; 3], stride: u32) -> Result<(), ModelError> {
        let (gpu, a) = (self.gpu, self.a);
        let runs = joined_runs(w);
        let input = self.dec_input(&runs.iter().map(|(w, _)| w).collect::<Vec<_>>())?;
        for (n, (wt, at)) in runs.into_iter().enumerate() {
            let y = Rows {
                view: View {
                    buffer: &a.qkv,
                    offset: at,
                },
                width: wt.rows as u32,
                rows: 1,
                stride,
            };
            let io = (Rows::packed(&a.h, wt.cols as u32), y);
            let pre = self.prefill_proj(&wt, io, None)?;
            self.pre.extend(pre);
            self.batched(&wt, io, None)?;
            let (x, fold) = (input.x(), input.fold(n == 0));
            let mv = MatVec::folded(gpu, &wt, (x, y.view), None, fold, None)?;
            self.dec.push(Arc::new(mv));
        }
        Ok(())
    }

    /// `h = RmsNorm(x) * w`: the pre-norm of a sub-block.
    pub fn pre_norm(&mut self, w: &wgpu::Buffer) -> Result<(), ModelError> {
        let (gpu, cfg, a) = (self.gpu, self.cfg, self.a);
        let pending = self.pending.take();
        let dec_x = self.dec_res();
        let io = |x, post| ResidualNormIo {
            x: Rows::packed(x, cfg.hidden as u32),
            o: View::of(&a.o),
            h: View::of(&a.h),
            post,
            norm: w,
        };
        if let Some(p) = pending.as_ref().filter(|p| !p.dec_done) {
            // The pending residual and this norm in one pass (which decode's projections
            // of h may take in, with a post-norm: `dec_input`).
            let post = p.post.as_ref();
            self.apart(
                |tok: Tokens| ResidualNorm::new(gpu, io(&a.x, post), cfg.rms_eps, tok),
                |tok: Tokens| ResidualNorm::new(gpu, io(dec_x, post), cfg.rms_eps, tok),
            )?;
            let at = self.dec.len() - 1;
            self.dec_sandwich_at = post.map(|post| (at, post.clone(), w.clone()));
            return Ok(());
        }
        match pending.as_ref() {
            // Decode added already: there the norm alone, elsewhere add and norm.
            Some(p) => {
                let post = p.post.as_ref();
                self.apart(
                    |tok: Tokens| ResidualNorm::new(gpu, io(&a.x, post), cfg.rms_eps, tok),
                    |tok: Tokens| norm_of(gpu, cfg, (dec_x, &a.h), w, tok),
                )?;
            }
            None => self.apart(
                |tok: Tokens| pre_norm(gpu, cfg, a, w, tok),
                |tok: Tokens| norm_of(gpu, cfg, (dec_x, &a.h), w, tok),
            )?,
        }
        // Decode's plain norm, for the projections that follow to absorb.
        self.dec_norm_at = Some((self.dec.len() - 1, w.clone()));
        Ok(())
    }

    /// A token-parallel op built by `make` in the prefill and batched plans, and by
    /// `dec` in the decode plan (one token).
    fn apart<S: StageOp, D: StageOp>(
        &mut self,
        make: impl Fn(Tokens) -> Result<S, GpuError>,
        dec: impl FnOnce(Tokens) -> Result<D, GpuError>,
    ) -> Result<(), ModelError> {
        let one = Tokens {
            max: 1,
            step: self.tok.step,
        };
        self.pre.push(Arc::new(make(self.tok)?));
        self.dec.push(Arc::new(dec(one)?));
        if let Some((tok, bat)) = &mut self.bat {
            bat.push(Arc::new(make(*tok)?));
        }
        Ok(())
    }

    /// `x += o`, through the post-norm `RmsNorm(o) * w` when given. Emitted with the next
    /// `pre_norm` as one op when that comes next.
    pub fn residual(&mut self, post_norm: Option<&wgpu::Buffer>) -> Result<(), ModelError> {
        self.flush()?;
        // Without a post-norm, decode's projection into o adds into x itself when it is
        // the last decode stage.
        let (gpu, dec_x) = (self.gpu, self.dec_res());
        let dec_done = match &mut self.dec_add {
            Some(p)
                if post_norm.is_none() && p.at + 1 == self.dec.len() && !p.carried && !p.added =>
            {
                let add = Fold {
                    add: true,
                    ..Fold::NONE
                };
                let io = (View::of(&p.x), View::of(dec_x));
                self.dec[p.at] = Arc::new(MatVec::folded(gpu, &p.w, io, None, add, None)?);
                p.added = true;
                true
            }
            _ => false,
        };
        self.pending = Some(Pending {
            post: post_norm.cloned(),
            dec_done,
        });
        Ok(())
    }

    /// Emits a pending residual on its own (fused with its post-norm: one pass).
    pub(super) fn flush(&mut self) -> Result<(), ModelError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let (gpu, a, hidden, eps) = (self.gpu, self.a, self.cfg.hidden as u32, self.cfg.rms_eps);
        let (o, x) = (Rows::packed(&a.o, hidden), Rows::packed(&a.x, hidden));
        let dec_x = Rows::packed(self.dec_res(), hidden);
        match &p.post {
            Some(w) => self.apart(
                |tok: Tokens| RmsNorm::new(gpu, o, NormOut::AddTo(x.view), w, eps, tok),
                |tok: Tokens| RmsNorm::new(gpu, o, NormOut::AddTo(dec_x.view), w, eps, tok),
            ),
            None if p.dec_done => {
                // Decode added in its projection: the other plans only.
                self.pre.push(Arc::new(Add::new(gpu, o, x, 1.0, self.tok)?));
                if let Some((tok, bat)) = &mut self.bat {
                    bat.push(Arc::new(Add::new(gpu, o, x, 1.0, *tok)?));
                }
                Ok(())
            }
            None => self.apart(
                |tok: Tokens| Add::new(gpu, o, x, 1.0, tok),
                |tok: Tokens| Add::new(gpu, o, dec_x, 1.0, tok),
            ),
        }
    }

    /// The last block's end, where the final norm `norm` comes next (decode's into
    /// `out`, the batched plan's into `h`): the prefill plan emits what is pending
    /// (`flush`); the batched plan and decode take the final norm in with it. A pending
    /// residual (through its post-norm: Gemma's sandwich) and the final norm become one
    /// `ResidualNorm` that leaves the normed rows (`DecHead::Normed`, and `true` for the
    /// batched plan); where decode's last projection already added into the residual
    /// stream, it also leaves `out = x * norm` and its sums of squares, and the head
    /// scales by the norm (`DecHead::Folded`). Else the heads need the norm dispatch as
    /// before (`DecHead::Plain`, `false`).
    pub(super) fn finish(
        &mut self,
        norm: Option<&wgpu::Buffer>,
        out: &'a wgpu::Buffer,
    ) -> Result<(DecHead<'a>, bool), ModelError> {
        let (gpu, a, eps) = (self.gpu, self.a, self.cfg.rms_eps);
        let (Some(norm), Some(p)) = (norm, self.pending.as_ref()) else {
            self.flush()?;
            return Ok((DecHead::Plain, false));
        };
        let (post, dec_done) = (p.post.clone(), p.dec_done);
        let fused = |x: &wgpu::Buffer, h: &wgpu::Buffer, tok: Tokens| {
            let io = ResidualNormIo {
                x: Rows::packed(x, self.cfg.hidden as u32),
                o: View::of(&a.o),
                h: View::of(h),
                post: post.as_ref(),
                norm,
            };
            ResidualNorm::new(gpu, io, eps, tok)
        };
        let one = Tokens {
            max: 1,
            step: self.tok.step,
        };
        let bat = match &self.bat {
            Some((tok, _)) => Some(fused(&a.x, &a.h, *tok)?),
            None => None,
        };
        let dec = match dec_done {
            false => Some(fused(self.dec_res(), out, one)?),
            true => None,
        };
        // flush adds one stage to the batched plan, and one to decode unless decode's
        // projection added already: the fused ops replace them.
        let lens = (self.dec.len(), self.bat.as_ref().map(|b| b.1.len()));
        self.flush()?;
        let added = (
            self.dec.len() - lens.0,
            self.bat.as_ref().map(|b| b.1.len()),
        );
        if added.0 != usize::from(!dec_done) || added.1 != lens.1.map(|n| n + 1) {
            let why = "the last block's pending residual left other stages than expected";
            return Err(GpuError::Runtime(why.into()).into());
        }
        let bat_normed = match (bat, &mut self.bat) {
            (Some(op), Some((_, stages))) => {
                *stages.last_mut().expect("counted above") = Arc::new(op);
                true
            }
            _ => false,
        };
        if let Some(op) = dec {
            *self.dec.last_mut().expect("counted above") = Arc::new(op);
            return Ok((DecHead::Normed, bat_normed));
        }
        let Some(p) = self.dec_add.as_ref().filter(|p| p.added && !p.carried) else {
            return Ok((DecHead::Plain, bat_normed));
        };
        if p.at + 1 != self.dec.len() || fold_parts(gpu, &p.w, None).is_none() {
            return Ok((DecHead::Plain, bat_normed));
        }
        let fold = Fold {
            add: true,
            prep: Some(NormPrep {
                weights: norm,
                h: out,
                ssq: &a.ssq,
            }),
            ..Fold::NONE
        };
        let io = (View::of(&p.x), View::of(self.dec_res()));
        let mv = MatVec::folded(gpu, &p.w, io, None, fold, None)?;
        let Some(parts) = mv.prep_parts else {
            return Ok((DecHead::Plain, bat_normed));
        };
        self.dec[p.at] = Arc::new(mv);
        self.dec_add = None;
        let scale = NormScale {
            ssq: &a.ssq,
            parts,
            eps,
        };
        Ok((DecHead::Folded(scale), bat_normed))
    }

    /// Self-attention from `h` into `o`: the q/k/v projections (plus biases), then in one
    /// op the per-head q/k norms, RoPE with this layer's base and scaling and the KV-cache
    /// append, then causal attention (windowed on sliding layers) and the output
    /// projection.
    pub fn attention(&mut self, w: &Attention<GpuTensor, wgpu::Buffer>) -> Result<(), ModelError> {
        self.flush()?;
        let (gpu, cfg, a) = (self.gpu, self.cfg, self.a);
        let (nh, nkv, hd) = (
            cfg.n_heads as u32,
            cfg.n_kv_heads as u32,
            cfg.head_dim as u32,
        );
        // q, k and v as the projections leave them, rows of one buffer.
        let stride = (nh + 2 * nkv) * hd;
        let in_qkv = |offset: u32, n: u32| Rows {
            view: View {
                buffer: &a.qkv,
                offset: offset as u64,
            },
            width: hd,
            rows: n,
            stride,
        };
        let (q, k, v) = (
            in_qkv(0, nh),
            in_qkv(nh * hd, nkv),
            in_qkv((nh + nkv) * hd, nkv),
        );
        self.qkv(w.qkv, stride)?;
        if let Some(bias) = w.bias {
            for (b, y) in bias.iter().zip([q, k, v]) {
                let b = Rows::broadcast(b, y.rows * y.width);
                self.both(|tok| Add::new(gpu, b, y, 1.0, tok))?;
            }
        }
        let spec = AttnSpec {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: cfg.attn_scale,
            window: cfg.window(self.il).map(|w| w as u32),
            softcap: cfg.attn_softcap,
        };
        // Per-head q/k norms, RoPE and the KV append in one op.
        let rope = cfg.rope_spec(self.il);
        // The rotated q goes to `a.q`, packed as attention reads it.
        let io = RopeKvIo {
            q,
            q_out: Some(Rows::heads(&a.q, nh, hd)),
            k,
            v,
            norms: w.qk_norm.map(|[qn, kn]| ([qn, kn], cfg.rms_eps)),
            freq_factors: self.rope_freqs,
            q_temp: cfg.attn_temp,
        };
        let kv = self.kv;
        // Prefill prepares in its own dispatch; decode and batched steps join it with
        // attention (`with_rope`), which folds it in where it can.
        self.pre
            .push(Arc::new(RopeKv::new(gpu, &spec, rope, io, kv, self.tok)?));
        let (qv, out) = (View::of(&a.q), View::of(&a.attn));
        let sinks = w.sinks;
        let one = Tokens {
            max: 1,
            step: self.tok.step,
        };
        let prefill = if cfg.causal {
            AttentionPrefill::with_sinks(gpu, &spec, (qv, out), kv, self.tok, sinks)?
        } else {
            AttentionPrefill::non_causal(gpu, &spec, (qv, out), kv, self.tok)?
        };
        let shared = |plan: usize, rows: u32| -> Option<wgpu::Buffer> {
            let bytes = AttentionDecode::scratch_bytes(&spec, kv, rows);
            if bytes > gpu.max_binding {
                return None; // the op's own check names the limit
            }
            let mut s = self.scratch.borrow_mut();
            if let Some(b) = s[plan].as_ref().filter(|b| b.size() >= bytes) {
                return Some(b.clone());
            }
            let b = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("attention_decode scratch (shared)"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            s[plan] = Some(b.clone());
            Some(b)
        };
        let attend = |tok: Tokens, plan: usize| match shared(plan, tok.max) {
            Some(b) => AttentionDecode::shared(gpu, &spec, (qv, out), kv, tok, sinks, &b),
            None => AttentionDecode::with_sinks(gpu, &spec, (qv, out), kv, tok, sinks),
        };
        let decode = attend(one, 0)?.with_rope(gpu, (&spec, rope), io, out, (kv, one), sinks)?;
        self.pre.push(Arc::new(prefill));
        self.dec.push(Arc::new(decode));
        if let Some((tok, _)) = &self.bat {
            let op = attend(*tok, 1)?.with_rope(gpu, (&spec, rope), io, out, (kv, *tok), sinks)?;
            if let Some((_, bat)) = &mut self.bat {
                bat.push(Arc::new(op));
            }
        }
        self.proj(w.out, &a.attn, &a.o)?;
        if let Some(b) = w.out_bias {
            let (b, o) = (
                Rows::broadcast(b, cfg.hidden as u32),
                Rows::packed(&a.o, cfg.hidden as u32),
            );
            self.both(|tok| Add::new(gpu, b, o, 1.0, tok))?;
        }
        Ok(())
    }

    /// Gated feed-forward from `h` into `o`: `down(act(gate h) * up h)`; in decode the
    /// activation is the up projection's epilogue.
    pub fn ffn(&mut self, w: &FeedForward<GpuTensor>) -> Result<(), ModelError> {
        self.ffn_of(w, true)
    }

    /// `ffn`; `absorb`: decode's gate and up may absorb the pre-norm (see
    /// `dec_input`), which holds when nothing after them reads h.
    fn ffn_of(&mut self, w: &FeedForward<GpuTensor>, absorb: bool) -> Result<(), ModelError> {
        self.flush()?;
        let (gpu, a) = (self.gpu, self.a);
        // Prefill: the gate and up projections, then the gated activation (where the
        // batched matvec serves prefill, as in the batched plan). Decode: when gate and
        // up share a buffer (see `Weights`), one matvec computes both and the
        // activation; else the gate's matvec, then the up's with the activation as its
        // epilogue.
        // The FFN's own width (a MoE's shared expert has its own).
        // Prefill as the batched plan where the batched matvec serves prefill.
        let ffn = w.gate.rows as u32;
        let (g, u) = (Rows::packed(&a.g, ffn), Rows::packed(&a.u, ffn));
        // Gate and up back to back in one buffer (see `Weights`): one projection of both
        // with the activation as its epilogue where the batched matvec runs them.
        let joined = w.gate.joined(w.up).filter(|_| w.gate.rows == w.up.rows);
        let pair = |tok: Tokens| -> Result<Option<Stage>, ModelError> {
            let Some(p) = &joined else {
                return Ok(None);
            };
            let io = (Rows::packed(&a.h, p.cols as u32), g);
            Ok(Some(Arc::new(MatVecBatch::pair(gpu, p, io, tok, w.act)?)))
        };
        let pre_pair = match self.prefill_batches(w.gate) {
            true => pair(self.tok)?,
            false => None,
        };
        match pre_pair {
            Some(op) => self.pre.push(op),
            None => {
                let gate = self.prefill_proj(w.gate, packed(w.gate, &a.h, &a.g), None)?;
                match self.prefill_proj(w.up, packed(w.up, &a.h, &a.g), Some(w.act))? {
                    Some(up) => self.pre.extend(gate.into_iter().chain([up])),
                    None => {
                        self.pre.extend(gate);
                        let up = self.prefill_proj(w.up, packed(w.up, &a.h, &a.u), None)?;
                        self.pre.extend(up);
                        self.pre
                            .push(Arc::new(GatedAct::new(gpu, g, u, w.act, self.tok)?));
                    }
                }
            }
        }
        // Batched: the pair in one dispatch, or the gate's columns, then the up's with
        // the activation as epilogue.
        let bat_pair = match &self.bat {
            Some((tok, _)) => pair(*tok)?,
            None => None,
        };
        match (bat_pair, &mut self.bat) {
            (Some(op), Some((_, bat))) => bat.push(op),
            _ => {
                self.batched(w.gate, packed(w.gate, &a.h, &a.g), None)?;
                self.batched(w.up, packed(w.up, &a.h, &a.g), Some(w.act))?;
            }
        }
        let dec_pair = w.gate.joined(w.up).filter(|_| w.gate.rows == w.up.rows);
        let input = match (absorb, &dec_pair) {
            (false, _) => DecInput::h(a, Fold::NONE),
            (true, Some(pair)) => self.dec_input(&[pair])?,
            (true, None) => self.dec_input(&[w.gate, w.up])?,
        };
        let (x, y) = (input.x(), View::of(&a.g));
        match dec_pair {
            Some(pair) => {
                let fold = input.fold(true);
                let mv = MatVec::pair_folded(gpu, &pair, (x, y), w.act, fold, None)?;
                self.dec.push(Arc::new(mv));
            }
            None => {
                let gate = MatVec::folded(gpu, w.gate, (x, y), None, input.fold(true), None)?;
                self.dec.push(Arc::new(gate));
                let up = MatVec::folded(gpu, w.up, (x, y), Some(w.act), input.fold(false), None)?;
                self.dec.push(Arc::new(up));
            }
        }
        self.proj(w.down, &a.g, &a.o)
    }

    /// A mixture-of-experts FFN from `h` into `o`: the router's logits (a projection like
    /// any other, plus its bias), its choice of experts per token, each chosen expert's
    /// gate and up projections (reading only their rows), the gated activation, their
    /// down projections, and the weighted sum.
    pub fn moe(&mut self, w: &Moe<GpuTensor, wgpu::Buffer>) -> Result<(), ModelError> {
        self.flush()?;
        let (gpu, cfg, a) = (self.gpu, self.cfg, self.a);
        let m = a
            .moe
            .as_ref()
            .ok_or_else(|| ModelError::Input("a MoE block in a dense model's plan".into()))?;
        // A shared expert first: its FFN of h into o, its gate logit per token; the
        // weighted sum below adds the routed experts to sigmoid(gate) * o.
        if let Some((ffn, gate)) = &w.shared {
            self.ffn_of(ffn, false)?;
            self.proj(gate, &a.h, &m.shared_gate)?;
        }
        let (ne, k, eff, hidden) = (
            cfg.n_expert as u32,
            cfg.n_expert_used as u32,
            cfg.expert_ffn as u32,
            cfg.hidden as u32,
        );
        self.proj(w.router, &a.h, &m.logits)?;
        let logits = Rows::packed(&m.logits, ne);
        if let Some(b) = w.router_bias {
            let b = Rows::broadcast(b, ne);
            self.both(|tok| Add::new(gpu, b, logits, 1.0, tok))?;
        }
        let picks = (&m.sel, &m.wts);
        self.both(|tok| MoeRoute::new(gpu, logits, picks, (k, cfg.gating), tok))?;
        let [gb, ub, db] = match w.biases {
            Some(b) => b.map(Some),
            None => [None; 3],
        };
        // Prefill and batched steps also group their slots by expert.
        let grouping = (&m.order, &m.offsets);
        let group = |tok| MoeGroup::new(gpu, &m.sel, grouping, (ne, k), tok);
        self.pre.push(Arc::new(group(self.tok)?));
        if let Some((tok, bat)) = &mut self.bat {
            bat.push(Arc::new(group(*tok)?));
        }
        let io = |x, per_slot, y, bias| ExpertIo {
            x: View::of(x),
            per_slot,
            y: View::of(y),
            sel: &m.sel,
            bias,
            grouping: Some(grouping),
        };
        let (gate, up, down) = (w.gate, w.up, w.down);
        self.experts(gate, (eff, k), io(&a.h, false, &a.g, gb))?;
        self.experts(up, (eff, k), io(&a.h, false, &a.u, ub))?;
        let (g, u) = (Rows::packed(&a.g, k * eff), Rows::packed(&a.u, k * eff));
        self.both(|tok| GatedAct::new(gpu, g, u, w.act, tok))?;
        self.experts(down, (hidden, k), io(&a.g, true, &m.down, db))?;
        let out = Rows::packed(&a.o, hidden);
        let shared = w.shared.as_ref().map(|_| &m.shared_gate);
        self.both(|tok| MoeSum::new(gpu, View::of(&m.down), &m.wts, out, (k, shared), tok))
    }

    /// An expert projection in every plan: per token in decode, grouped by expert in
    /// prefill and the batched plan when a step's tokens choose enough experts.
    fn experts(
        &mut self,
        w: &GpuTensor,
        shape: (u32, u32),
        io: ExpertIo,
    ) -> Result<(), ModelError> {
        let gpu = self.gpu;
        let one = Tokens {
            max: 1,
            step: self.tok.step,
        };
        self.pre
            .push(Arc::new(ExpertProj::new(gpu, w, shape, io, self.tok)?));
        self.dec
            .push(Arc::new(MatVecId::new(gpu, w, shape, io, one)?));
        if let Some((tok, bat)) = &mut self.bat {
            bat.push(Arc::new(ExpertProj::new(gpu, w, shape, io, *tok)?));
        }
        Ok(())
    }

    /// `x = LayerNorm(x + o) * w + b`, with a copy in `h` for the next sub-block: the
    /// residual add and post-norm of BERT's blocks, in one pass.
    pub fn residual_layer_norm(
        &mut self,
        w: &wgpu::Buffer,
        b: &wgpu::Buffer,
    ) -> Result<(), ModelError> {
        self.flush()?;
        let (gpu, cfg, a) = (self.gpu, self.cfg, self.a);
        let io = LayerNormIo {
            x: Rows::packed(&a.x, cfg.hidden as u32),
            o: Some(View::of(&a.o)),
            h: View::of(&a.h),
            w,
            b,
        };
        self.both(|tok| LayerNorm::new(gpu, io, cfg.rms_eps, tok))
    }

    /// Ungated feed-forward from `h` into `o` (BERT): `down(act(up h + b_up)) + b_down`.
    pub fn ffn_seq(
        &mut self,
        w: &SeqFeedForward<GpuTensor, wgpu::Buffer>,
    ) -> Result<(), ModelError> {
        self.flush()?;
        let (gpu, a) = (self.gpu, self.a);
        let ffn = w.up.rows as u32;
        let g = Rows::packed(&a.g, ffn);
        self.proj(w.up, &a.h, &a.g)?;
        if let Some(b) = w.up_bias {
            let b = Rows::broadcast(b, ffn);
            self.both(|tok| Add::new(gpu, b, g, 1.0, tok))?;
        }
        self.both(|tok| GatedAct::plain(gpu, g, w.act, tok))?;
        self.proj(w.down, &a.g, &a.o)?;
        if let Some(b) = w.down_bias {
            let hidden = w.down.rows as u32;
            let (b, o) = (Rows::broadcast(b, hidden), Rows::packed(&a.o, hidden));
            self.both(|tok| Add::new(gpu, b, o, 1.0, tok))?;
        }
        Ok(())
    }

    /// The usual pre-norm block: `x += attn(norm(x))`, then `x += ffn(norm(x))`, with the
    /// norms `attn_norm.weight` and `ffn_norm.weight` and no post-norms.
    pub fn pre_norm_block(
        &mut self,
        w: &LayerWeights,
        attn: &Attention<GpuTensor, wgpu::Buffer>,
        ffn: &FeedForward<GpuTensor>,
    ) -> Result<(), ModelError> {
        self.pre_norm(w.vec("attn_norm.weight")?)?;
        self.attention(attn)?;
        self.residual(None)?;
        self.pre_norm(w.vec("ffn_norm.weight")?)?;
        self.ffn(ffn)?;
        self.residual(None)
    }
}

/// `h = RmsNorm(x) * w` over the whole hidden vector of each token: the pre-norm of both
/// sub-blocks and of the all-token output head.
pub(super) fn pre_norm(
    gpu: &Gpu,
    cfg: &ModelConfig,
    a: &Activations,
    w: &wgpu::Buffer,
    tok: Tokens,
) -> Result<RmsNorm, GpuError> {
    norm_of(gpu, cfg, (&a.x, &a.h), w, tok)
}

/// `h = RmsNorm(x) * w` from the residual stream in `x` (`pre_norm`'s, or the decode
/// plan's wherever it is: `Block::dec_res`).
fn norm_of(
    gpu: &Gpu,
    cfg: &ModelConfig,
    (x, h): (&wgpu::Buffer, &wgpu::Buffer),
    w: &wgpu::Buffer,
    tok: Tokens,
) -> Result<RmsNorm, GpuError> {
    let hidden = cfg.hidden as u32;
    RmsNorm::new(
        gpu,
        Rows::packed(x, hidden),
        NormOut::To(View::of(h)),
        w,
        cfg.rms_eps,
        tok,
    )
}

/// The packed rows of `y = W x` over every token: `x` of `w.cols`, `y` of `w.rows`.
fn packed<'b>(w: &GpuTensor, x: &'b wgpu::Buffer, y: &'b wgpu::Buffer) -> (Rows<'b>, Rows<'b>) {
    (
        Rows::packed(x, w.cols as u32),
        Rows::packed(y, w.rows as u32),
    )
}

/// The q, k and v weights as runs of consecutive parts that share a buffer
/// (`GpuTensor::joined`: one type, back to back), each with its first output row: one
/// projection covers each run (all three where they join; q and k beside Gemma 3 270M's
/// Q8_0 v).
fn joined_runs(w: [&GpuTensor; 3]) -> Vec<(GpuTensor, u64)> {
    let mut runs: Vec<(GpuTensor, u64)> = Vec::new();
    let mut at = 0;
    for t in w {
        let joined = runs.last().and_then(|(run, _)| run.joined(t));
        match (joined, runs.last_mut()) {
            (Some(j), Some((run, _))) => *run = j,
            _ => runs.push((t.clone(), at)),
        }
        at += t.rows;
    }
    runs
}
