//! Building the prefill and decode plans: every op of every block created once, over the
//! buffers the model allocated. Ops that read the token count from the step uniform are
//! shared by both plans; projections and attention have a prefill and a decode form.

use super::buffers::Activations;
use super::Stage;
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::{
    Add, Argmax, AttentionDecode, AttentionPrefill, GatedAct, GetRows, KvAppend, KvCache, MatMul,
    MatVec, NormOut, RmsNorm, Rope, Scale, StepBuffer, View,
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
}

/// Builds the plans over the allocated buffers.
pub(super) struct Builder<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) cfg: &'a ModelConfig,
    pub(super) w: &'a Weights,
    pub(super) kv: &'a [KvCache],
    pub(super) a: &'a Activations,
    pub(super) step: &'a StepBuffer,
}

impl Builder<'_> {
    pub(super) fn plans(&self, batch: usize) -> Result<(Plan, Plan, Vec<Stage>), ModelError> {
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
            let logits = MatMul::new(
                gpu,
                head,
                View::of(&a.h),
                hidden as u64,
                View::of(all),
                cfg.vocab as u64,
                t as u64,
                step,
            )?;
            prefill.all_logits = vec![self.pre_norm(&self.w.output_norm, t)?, Arc::new(logits)];
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

    /// `RmsNorm(x) * w -> h` over the whole hidden vector of each token: the pre-norm of
    /// both sub-blocks and of the all-token output head.
    fn pre_norm(&self, w: &wgpu::Buffer, t: u32) -> Result<Stage, ModelError> {
        let (a, hidden) = (self.a, self.cfg.hidden as u32);
        let norm = RmsNorm::new(
            self.gpu,
            View::of(&a.x),
            NormOut::To(View::of(&a.h)),
            w,
            hidden,
            1,
            hidden,
            self.cfg.rms_eps,
            t,
            self.step,
        )?;
        Ok(Arc::new(norm))
    }

    /// A projection `y = W x` in both forms: matmul for prefill, matvec for decode.
    fn proj(
        &self,
        w: &GpuTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        t: u32,
    ) -> Result<(Stage, Stage), ModelError> {
        let (gpu, step) = (self.gpu, self.step);
        let mm = MatMul::new(
            gpu,
            w,
            View::of(x),
            w.cols,
            View::of(y),
            w.rows,
            t as u64,
            step,
        )?;
        let mv = MatVec::new(gpu, w, View::of(x), View::of(y))?;
        Ok((Arc::new(mm), Arc::new(mv)))
    }

    /// The residual add of a sub-block's output `o` into `x`, through the post-norm when
    /// the model has one (fused: one pass).
    fn residual(&self, post_norm: &Option<wgpu::Buffer>, t: u32) -> Result<Stage, ModelError> {
        let (gpu, a, step, hidden) = (self.gpu, self.a, self.step, self.cfg.hidden as u32);
        Ok(match post_norm {
            Some(w) => {
                let out = NormOut::AddTo(View::of(&a.x));
                Arc::new(RmsNorm::new(
                    gpu,
                    View::of(&a.o),
                    out,
                    w,
                    hidden,
                    1,
                    hidden,
                    self.cfg.rms_eps,
                    t,
                    step,
                )?)
            }
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
    }

    /// The stages of block `il` for prefill (batch `t`) and for decode.
    fn layer(&self, il: usize, t: u32) -> Result<(Vec<Stage>, Vec<Stage>), ModelError> {
        let (gpu, cfg, a, step) = (self.gpu, self.cfg, self.a, self.step);
        let lw = &self.w.layers[il];
        let (qd, kvd, ffn) = (cfg.q_dim() as u32, cfg.kv_dim() as u32, cfg.ffn as u32);
        let (nh, nkv, hd) = (
            cfg.n_heads as u32,
            cfg.n_kv_heads as u32,
            cfg.head_dim as u32,
        );
        let (base, pos_scale) = cfg.rope(il);
        let kv = &self.kv[il];
        let mut s = Stages::default();

        // Attention: norm, q/k/v (+bias), per-head q/k norms, RoPE, cache, attention, out.
        s.both(self.pre_norm(&lw.attn_norm, t)?);
        s.split(self.proj(&lw.wq, &a.h, &a.q, t)?);
        s.split(self.proj(&lw.wk, &a.h, &a.k, t)?);
        s.split(self.proj(&lw.wv, &a.h, &a.v, t)?);
        if let Some([bq, bk, bv]) = &lw.bias {
            for (b, y, width) in [(bq, &a.q, qd), (bk, &a.k, kvd), (bv, &a.v, kvd)] {
                // Stride 0 on x broadcasts the bias over the tokens.
                s.both(Arc::new(Add::new(
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
                )?));
            }
        }
        if let Some([qn, kn]) = &lw.qk_norm {
            let eps = cfg.rms_eps;
            s.both(Arc::new(RmsNorm::new(
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
            )?));
            s.both(Arc::new(RmsNorm::new(
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
            )?));
        }
        let (rope_dims, neox, freqs) = (
            cfg.rope_dims as u32,
            cfg.rope_neox,
            self.w.rope_freqs.as_ref(),
        );
        for (x, heads, stride) in [(&a.q, nh, qd), (&a.k, nkv, kvd)] {
            let rope = Rope::new(
                gpu,
                View::of(x),
                heads,
                hd,
                rope_dims,
                stride,
                base,
                pos_scale,
                neox,
                freqs,
                t,
                step,
            )?;
            s.both(Arc::new(rope));
        }
        s.both(Arc::new(KvAppend::new(
            gpu,
            View::of(&a.k),
            View::of(&a.v),
            kvd,
            kv,
            t,
            step,
        )?));
        let (scale, window) = (cfg.attn_scale, cfg.window(il).map(|w| w as u32));
        let (q, out) = (View::of(&a.q), View::of(&a.attn));
        s.pre.push(Arc::new(AttentionPrefill::new(
            gpu, q, kv, out, nh, nkv, hd, scale, window, t, step,
        )?));
        s.dec.push(Arc::new(AttentionDecode::new(
            gpu, q, kv, out, nh, nkv, hd, scale, window, step,
        )?));
        s.split(self.proj(&lw.wo, &a.attn, &a.o, t)?);
        s.both(self.residual(&lw.post_attn_norm, t)?);

        // Feed-forward: norm, act(gate) * up, down.
        s.both(self.pre_norm(&lw.ffn_norm, t)?);
        s.split(self.proj(&lw.gate, &a.h, &a.g, t)?);
        s.split(self.proj(&lw.up, &a.h, &a.u, t)?);
        s.both(Arc::new(GatedAct::new(
            gpu,
            View::of(&a.g),
            View::of(&a.u),
            ffn,
            ffn,
            cfg.act,
            t,
            step,
        )?));
        s.split(self.proj(&lw.down, &a.g, &a.o, t)?);
        s.both(self.residual(&lw.post_ffn_norm, t)?);
        Ok((s.pre, s.dec))
    }
}

/// One block's stages for the two plans, built side by side.
#[derive(Default)]
struct Stages {
    pre: Vec<Stage>,
    dec: Vec<Stage>,
}

impl Stages {
    /// An op both plans run as is (it reads the token count from the step uniform).
    fn both(&mut self, s: Stage) {
        self.pre.push(s.clone());
        self.dec.push(s);
    }

    /// An op with a prefill form and a decode form.
    fn split(&mut self, (p, d): (Stage, Stage)) {
        self.pre.push(p);
        self.dec.push(d);
    }
}
