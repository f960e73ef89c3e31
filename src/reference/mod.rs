//! The plain CPU forward pass of every architecture hearth runs, one token at a time, top
//! to bottom, in the manner of llama2.c's `run.c`. This file holds what every
//! architecture shares (embedding, the KV cache, the head) and the block helpers of
//! [`Block`]; each architecture's block is `<arch>.rs`, beside its GPU twin in
//! `src/model/<arch>.rs`.
//!
//! It is two things at once: the onboarding document (read [`Reference::step`] and
//! [`Block`] to learn what a transformer does per token, with every buffer's shape in a
//! comment) and the oracle every GPU test compares against. Weights are dequantized to f32 once at load,
//! sums are accumulated in f64, and nothing is fused or reordered for speed; the
//! semantics follow llama.cpp (`src/models/{gemma3,llama,qwen2,qwen3}.cpp`).
//!
//! Matrices keep GGUF's layout: a `[cols, rows]` tensor is `rows` rows of `cols` floats,
//! and `out = W x` takes one dot product per row.

pub(crate) mod bert;
pub(crate) mod gemma2;
pub(crate) mod gemma3;
pub(crate) mod gpt_oss;
pub(crate) mod llama;
pub(crate) mod nomic_bert;
pub(crate) mod ops;
pub(crate) mod qwen2;
pub(crate) mod qwen2moe;
pub(crate) mod qwen3;
pub(crate) mod qwen3moe;

use crate::gguf::{GgufFile, TensorInfo};
use crate::kernels::{AttnSpec, KvType};
use crate::model::tensors::load_block;
use crate::model::{
    check_tensors, Activation, Attention, FeedForward, LayerTensors, ModelConfig, ModelError, Moe,
    SeqFeedForward,
};
use crate::quant::dequantize_to_vec;
use ops::{
    add, attention, gelu_tanh, layernorm, matvec, rmsnorm, rmsnorm_heads, rope, silu, visible,
};

/// One transformer block's weights by name, dequantized; matrices are `[rows][cols]`.
pub type RefLayer = LayerTensors<Vec<f32>, Vec<f32>>;

/// A model with every weight dequantized to f32, ready for [`Reference::forward`].
pub struct Reference {
    /// The configuration the weights were checked against. Tests may change behaviour
    /// (window, scales, RoPE) through it; the shapes must stay as loaded.
    pub cfg: ModelConfig,
    token_embd: Vec<f32>,                    // [vocab][hidden]
    output: Option<Vec<f32>>,                // [vocab][hidden]; None: tied to token_embd
    output_norm: Option<Vec<f32>>,           // [hidden]; None: the blocks end normed (BERT)
    position_embd: Option<Vec<f32>>,         // [context][hidden] absolute positions (BERT)
    token_types: Option<Vec<f32>>,           // [types][hidden]; row 0 is added (BERT)
    embd_norm: Option<(Vec<f32>, Vec<f32>)>, // [hidden] x2: LayerNorm of the embedding
    rope_freqs: Option<Vec<f32>>,            // [rope_dims / 2] frequency divisors (Llama 3.1+)
    rope_long: Option<Vec<f32>>, // [rope_dims / 2] LongRoPE divisors past n_ctx_orig (Phi-3)
    rope_short: Option<Vec<f32>>, // [rope_dims / 2] LongRoPE divisors within it
    layers: Vec<RefLayer>,       // [n_layers]
    dense_2: Option<Vec<f32>>,   // [dense][hidden] projection after pooling (EmbeddingGemma)
    dense_3: Option<Vec<f32>>,   // [hidden][dense]
}

/// The key/value cache of one sequence: every layer's K and V for each position so far.
pub struct RefCache {
    k: Vec<f32>, // [n_layers][capacity][kv_dim], after RoPE
    v: Vec<f32>, // [n_layers][capacity][kv_dim]
    n_layers: usize,
    kv_dim: usize,
    capacity: usize,
    len: usize,
    kv_type: KvType,
}

impl RefCache {
    /// An empty cache for `capacity` positions of `cfg`; with `kv_f16`, K and V are
    /// rounded to f16 as they are stored, like a GPU cache kept in half precision.
    pub fn new(cfg: &ModelConfig, capacity: usize, kv_f16: bool) -> Self {
        Self::typed(cfg, capacity, KvType::default_for(kv_f16))
    }

    /// An empty cache that rounds K and V as a GPU cache of `kv_type` stores them (f16,
    /// or llama.cpp's q8_0 per 32 values).
    pub fn typed(cfg: &ModelConfig, capacity: usize, kv_type: KvType) -> Self {
        let n = cfg.n_layers * capacity * cfg.kv_dim();
        Self {
            k: vec![0.0; n],
            v: vec![0.0; n],
            n_layers: cfg.n_layers,
            kv_dim: cfg.kv_dim(),
            capacity,
            len: 0,
            kv_type,
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Layer `il`'s keys and values for positions `0..capacity`.
    fn layer(&mut self, il: usize) -> (&mut [f32], &mut [f32]) {
        let n = self.capacity * self.kv_dim;
        (
            &mut self.k[il * n..(il + 1) * n],
            &mut self.v[il * n..(il + 1) * n],
        )
    }
}

/// Dequantizes tensor `name`, or `None` when the file lacks it.
fn load_opt(f: &GgufFile, name: &str) -> Result<Option<Vec<f32>>, ModelError> {
    let Some(t) = f.tensor(name) else {
        return Ok(None);
    };
    dequant(f, t).map(Some)
}

fn dequant(f: &GgufFile, t: &TensorInfo) -> Result<Vec<f32>, ModelError> {
    dequantize_to_vec(t.ty, f.tensor_data(t)).map_err(|e| ModelError::BadTensor {
        name: t.name.clone(),
        why: e.to_string(),
    })
}

/// Dequantizes tensor `name`, which `check_tensors` has already found.
fn load(f: &GgufFile, name: &str) -> Result<Vec<f32>, ModelError> {
    load_opt(f, name)?.ok_or_else(|| ModelError::MissingTensor(name.to_string()))
}

impl Reference {
    /// Reads the configuration, checks every tensor's presence and shape, and
    /// dequantizes all weights to f32 (a 270M model takes about 1 GiB).
    pub fn load(f: &GgufFile) -> Result<Self, ModelError> {
        let cfg = ModelConfig::from_gguf(f.header())?;
        check_tensors(&cfg, f.header())?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for il in 0..cfg.n_layers {
            let l = |name: &str| load(f, name);
            // A fused matrix's parts are runs of its rows.
            let split = |name: &str, parts: &[(&'static str, usize)]| {
                let all = load(f, name)?;
                let cols = all.len() / parts.iter().map(|p| p.1).sum::<usize>().max(1);
                let mut at = 0;
                Ok(parts
                    .iter()
                    .map(|&(_, rows)| {
                        at += rows * cols;
                        all[at - rows * cols..at].to_vec()
                    })
                    .collect())
            };
            layers.push(load_block(&cfg, f, il, l, l, split)?);
        }
        // Any architecture may carry them (see `expected_tensors`): one set of divisors,
        // or LongRoPE's pair chosen by the context.
        let rope_freqs = load_opt(f, "rope_freqs.weight")?;
        let rope_long = load_opt(f, "rope_factors_long.weight")?;
        let rope_short = load_opt(f, "rope_factors_short.weight")?;
        Ok(Self {
            token_embd: load(f, "token_embd.weight")?,
            output: load_opt(f, "output.weight")?,
            output_norm: load_opt(f, "output_norm.weight")?,
            position_embd: if cfg.pos_embd {
                Some(load(f, "position_embd.weight")?)
            } else {
                None
            },
            token_types: load_opt(f, "token_types.weight")?,
            embd_norm: if cfg.embd_norm {
                Some((
                    load(f, "token_embd_norm.weight")?,
                    load(f, "token_embd_norm.bias")?,
                ))
            } else {
                None
            },
            rope_freqs,
            rope_long,
            rope_short,
            layers,
            dense_2: load_opt(f, "dense_2.weight")?,
            dense_3: load_opt(f, "dense_3.weight")?,
            cfg,
        })
    }

    /// Runs `tokens` at positions `pos..`, appending their K/V to `cache`, and returns
    /// the logits (`[vocab]`) of every token. `pos` may rewind into what the cache holds
    /// (later positions are dropped) but not leave a gap.
    ///
    /// # Panics
    /// When `cache` was made for a model of another shape.
    pub fn forward(
        &self,
        cache: &mut RefCache,
        tokens: &[u32],
        pos: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        assert!(
            cache.n_layers == self.cfg.n_layers && cache.kv_dim == self.cfg.kv_dim(),
            "RefCache was made for another model"
        );
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.cfg.vocab,
            });
        }
        if pos > cache.len {
            return Err(ModelError::PositionGap {
                pos,
                cached: cache.len,
            });
        }
        let needed = pos + tokens.len();
        if needed > cache.capacity {
            return Err(ModelError::ContextFull {
                needed,
                capacity: cache.capacity,
            });
        }
        cache.len = pos;
        tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| self.step(cache, t, pos + i))
            .collect()
    }

    /// The embedding of `tokens` as `Model::embed` computes it: every token's final
    /// normed hidden state, pooled (mean, first row or last row), not normalized.
    pub fn embed(
        &self,
        tokens: &[u32],
        pooling: crate::model::Pooling,
    ) -> Result<Vec<f32>, ModelError> {
        use crate::model::Pooling;
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens to embed".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.cfg.vocab,
            });
        }
        let mut cache = RefCache::new(&self.cfg, tokens.len(), false);
        let rows = if self.cfg.causal {
            tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| self.hidden(&mut cache, t, i))
                .collect::<Result<Vec<_>, _>>()? // [tokens][hidden], final-normed
        } else {
            self.hidden_noncausal(&mut cache, tokens)?
        };
        let hidden = self.cfg.hidden;
        let pooled = match pooling {
            Pooling::Cls => rows[0].clone(),
            Pooling::Last => rows[rows.len() - 1].clone(),
            Pooling::Mean => (0..hidden)
                .map(|i| {
                    let s: f64 = rows.iter().map(|r| r[i] as f64).sum();
                    (s / rows.len() as f64) as f32
                })
                .collect(),
        };
        // EmbeddingGemma's sentence-transformers projections, after pooling.
        let mut v = pooled;
        for w in [&self.dense_2, &self.dense_3].into_iter().flatten() {
            let mut y = vec![0.0f32; w.len() / v.len()];
            matvec(&mut y, w, &v);
            v = y;
        }
        Ok(v)
    }

    /// Every token of a non-causal model's input through the blocks and the final norm:
    /// layer by layer, since each token attends to all of them. Each layer runs twice
    /// per token: once to cache every position's K and V (its output dropped), then for
    /// real.
    fn hidden_noncausal(
        &self,
        cache: &mut RefCache,
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.cfg;
        let n = tokens.len();
        let mut xs: Vec<Vec<f32>> = tokens
            .iter()
            .enumerate()
            .map(|(pos, &t)| self.embedding_row(t, pos))
            .collect();
        let rope_freqs = self.rope_freqs_for(cache.capacity);
        cache.len = n;
        for (il, l) in self.layers.iter().enumerate() {
            let mut next = Vec::with_capacity(n);
            for pass in 0..2 {
                for (t, x) in xs.iter().enumerate() {
                    let mut b = Block {
                        cfg: c,
                        cache,
                        pos: t,
                        il,
                        rope_freqs,
                        x: x.clone(),
                        h: x.clone(),
                        o: vec![0.0; c.hidden],
                        noncausal: Some(n),
                    };
                    (c.arch.def().reference)(&mut b, l)?;
                    if pass == 1 {
                        next.push(b.x);
                    }
                }
            }
            xs = next;
        }
        Ok(xs.iter().map(|x| self.final_norm(x)).collect())
    }

    /// The final norm of a last hidden state (itself when the model has none).
    fn final_norm(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        if let Some(w) = &self.output_norm {
            rmsnorm(&mut h, x, w, self.cfg.rms_eps);
        }
        h
    }

    /// The token's embedding row at position `pos`, scaled (Gemma: sqrt(hidden)); in
    /// BERT-style encoders plus the position's row and token type 0's, then LayerNorm.
    fn embedding_row(&self, token: u32, pos: usize) -> Vec<f32> {
        let hidden = self.cfg.hidden;
        let row = token as usize * hidden;
        let mut x: Vec<f32> = self.token_embd[row..row + hidden]
            .iter()
            .map(|&v| v * self.cfg.embed_scale)
            .collect(); // [hidden]
                        // Positions past the table (the GPU's context is clamped to it) add nothing.
        let at = pos * hidden;
        if let Some(p) = self
            .position_embd
            .as_ref()
            .and_then(|p| p.get(at..at + hidden))
        {
            add(&mut x, p);
        }
        if let Some(t) = &self.token_types {
            add(&mut x, &t[..hidden]);
        }
        if let Some((w, b)) = &self.embd_norm {
            let copy = x.clone();
            layernorm(&mut x, &copy, w, b, self.cfg.rms_eps);
        }
        x
    }

    /// The RoPE frequency divisors for a cache of `capacity` positions, if any.
    fn rope_freqs_for(&self, capacity: usize) -> Option<&[f32]> {
        self.cfg
            .rope_factors(
                self.rope_freqs.as_ref(),
                (self.rope_long.as_ref(), self.rope_short.as_ref()),
                capacity,
            )
            .map(|v| v.as_slice())
    }

    /// One token through the whole model at position `pos` (checked by `forward`):
    /// returns its logits `[vocab]` and leaves its K/V in the cache.
    fn step(&self, cache: &mut RefCache, token: u32, pos: usize) -> Result<Vec<f32>, ModelError> {
        let c = &self.cfg;
        let h = self.hidden(cache, token, pos)?;
        let head = self.output.as_deref().unwrap_or(&self.token_embd); // [vocab][hidden]
        let mut logits = vec![0.0f32; c.vocab]; // [vocab]
        matvec(&mut logits, head, &h);
        if let Some(cap) = c.final_softcap {
            for l in &mut logits {
                *l = cap * (*l / cap).tanh();
            }
        }
        Ok(logits)
    }

    /// One token through the blocks and the final norm at position `pos`: its last
    /// hidden state `[hidden]`, leaving its K/V in the cache.
    fn hidden(&self, cache: &mut RefCache, token: u32, pos: usize) -> Result<Vec<f32>, ModelError> {
        let c = &self.cfg;
        let hidden = c.hidden;

        // The residual stream: the token's embedding row, scaled (Gemma: sqrt(hidden)).
        let x = self.embedding_row(token, pos); // [hidden]
        let rope_freqs = self.rope_freqs_for(cache.capacity);
        let mut b = Block {
            cfg: c,
            cache,
            pos,
            il: 0,
            rope_freqs,
            h: x.clone(), // encoders' blocks read the stream itself
            x,
            o: vec![0.0; hidden],
            noncausal: None,
        };
        // Each block in turn, as its architecture builds it (`<arch>.rs`).
        for (il, l) in self.layers.iter().enumerate() {
            b.il = il;
            (c.arch.def().reference)(&mut b, l)?;
        }
        b.cache.len = pos + 1;

        // ---- the final norm; the head (`step`) or pooling (`embed`) follows ----
        Ok(self.final_norm(&b.x))
    }
}

/// The state of one token passing through the blocks, and the helpers architectures
/// build their blocks from (the CPU twins of `graph::Block`'s builders). The residual
/// stream is `x`; a pre-norm writes `h`; a sub-block reads `h` and leaves its output in
/// `o`; `residual` adds `o` into `x`.
pub struct Block<'a> {
    cfg: &'a ModelConfig,
    cache: &'a mut RefCache,
    pos: usize,
    il: usize,
    rope_freqs: Option<&'a [f32]>, // [rope_dims / 2] frequency divisors (Llama 3.1+)
    x: Vec<f32>,                   // [hidden] residual stream
    h: Vec<f32>,                   // [hidden] normed input of a sub-block
    o: Vec<f32>,                   // [hidden] sub-block output before the residual
    noncausal: Option<usize>,      // non-causal: the input's length (every K/V cached)
}

impl Block<'_> {
    /// `h = RmsNorm(x) * w`.
    pub fn pre_norm(&mut self, w: &[f32]) -> Result<(), ModelError> {
        rmsnorm(&mut self.h, &self.x, w, self.cfg.rms_eps);
        Ok(())
    }

    /// `x += o`, with `o` first normalized by `post_norm` when given (Gemma 3's sandwich).
    pub fn residual(&mut self, post_norm: Option<&Vec<f32>>) -> Result<(), ModelError> {
        if let Some(w) = post_norm {
            let copy = self.o.clone();
            rmsnorm(&mut self.o, &copy, w, self.cfg.rms_eps);
        }
        add(&mut self.x, &self.o);
        Ok(())
    }

    /// Self-attention of this position from `h` into `o`.
    pub fn attention(&mut self, w: &Attention<Vec<f32>, Vec<f32>>) -> Result<(), ModelError> {
        let c = self.cfg;
        let (hd, pos, il) = (c.head_dim, self.pos, self.il);
        let mut q = vec![0.0f32; c.q_dim()]; // [n_heads][head_dim]
        let mut k = vec![0.0f32; c.kv_dim()]; // [n_kv_heads][head_dim]
        let mut v = vec![0.0f32; c.kv_dim()]; // [n_kv_heads][head_dim]
        let [wq, wk, wv] = w.qkv;
        matvec(&mut q, wq, &self.h);
        matvec(&mut k, wk, &self.h);
        matvec(&mut v, wv, &self.h);
        if let Some([bq, bk, bv]) = w.bias {
            add(&mut q, bq);
            add(&mut k, bk);
            add(&mut v, bv);
        }
        if let Some([qn, kn]) = w.qk_norm {
            // Each head normalized on its own, before RoPE.
            rmsnorm_heads(&mut q, qn, c.rms_eps);
            rmsnorm_heads(&mut k, kn, c.rms_eps);
        }
        let spec = c.rope_spec(il);
        rope(&mut q, hd, pos, &spec, self.rope_freqs);
        rope(&mut k, hd, pos, &spec, self.rope_freqs);
        // The attention temperature (Mistral 3) scales q after RoPE.
        let qt = crate::kernels::rope_kv::q_temp_factor(c.attn_temp, pos as u32);
        if qt != 1.0 {
            for x in q.iter_mut() {
                *x = (*x as f64 * qt) as f32;
            }
        }

        // Store this position's K and V; later tokens read them back.
        let kv_dim = c.kv_dim();
        let kv_type = self.cache.kv_type;
        let (kc, vc) = self.cache.layer(il); // [capacity][kv_dim] each
        let store = |dst: &mut [f32], src: &[f32]| {
            dst.copy_from_slice(src);
            kv_type.round(dst);
        };
        store(&mut kc[pos * kv_dim..(pos + 1) * kv_dim], &k);
        store(&mut vc[pos * kv_dim..(pos + 1) * kv_dim], &v);

        let spec = AttnSpec {
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: hd as u32,
            scale: c.attn_scale,
            window: c.window(il).map(|w| w as u32),
            softcap: c.attn_softcap,
        };
        let mut att = vec![0.0f32; c.q_dim()]; // [n_heads][head_dim] attention output
        let keys = visible(pos, spec.window, self.noncausal);
        attention(
            &mut att,
            &q,
            (kc, vc),
            keys,
            (&spec, w.sinks.map(|s| s.as_slice())),
        );
        matvec(&mut self.o, w.out, &att);
        if let Some(b) = w.out_bias {
            add(&mut self.o, b);
        }
        Ok(())
    }

    /// Gated feed-forward from `h` into `o`: `down(act(gate h) * up h)`.
    pub fn ffn(&mut self, w: &FeedForward<Vec<f32>>) -> Result<(), ModelError> {
        let ffn = w.gate.len() / self.cfg.hidden; // the FFN's own width (a shared expert's too)
        let mut gate = vec![0.0f32; ffn]; // [ffn]
        let mut up = vec![0.0f32; ffn]; // [ffn]
        matvec(&mut gate, w.gate, &self.h);
        matvec(&mut up, w.up, &self.h);
        for (g, &u) in gate.iter_mut().zip(&up) {
            *g = act2(w.act, *g, u);
        }
        matvec(&mut self.o, w.down, &gate);
        Ok(())
    }

    /// A mixture-of-experts FFN from `h` into `o`: the router's choice (the kernels' twin
    /// `cpu_route`), each chosen expert's gated FFN on its slice of the expert tensors,
    /// and their weighted sum.
    pub fn moe(&mut self, w: &Moe<Vec<f32>, Vec<f32>>) -> Result<(), ModelError> {
        let c = self.cfg;
        let (hidden, eff) = (c.hidden, c.expert_ffn);
        let mut logits = vec![0.0f32; c.n_expert]; // [n_expert]
        matvec(&mut logits, w.router, &self.h);
        if let Some(b) = w.router_bias {
            add(&mut logits, b);
        }
        let chosen = crate::kernels::moe::cpu_route(&logits, c.n_expert_used, c.gating);
        let mut out = vec![0f64; hidden];
        if let Some((ffn, gate)) = &w.shared {
            // The shared expert, weighed by the sigmoid of its gate.
            self.ffn(ffn)?;
            let g = ops::dot(gate, &self.h);
            let s = 1.0 / (1.0 + (-g).exp());
            for (o, v) in out.iter_mut().zip(&self.o) {
                *o = s * *v as f64;
            }
        }
        for (e, weight) in chosen {
            let mut gate = vec![0.0f32; eff]; // [expert_ffn]
            let mut up = vec![0.0f32; eff];
            let slice = |m: &[f32], rows: usize, cols: usize| -> Vec<f32> {
                m[e * rows * cols..(e + 1) * rows * cols].to_vec()
            };
            matvec(&mut gate, &slice(w.gate, eff, hidden), &self.h);
            matvec(&mut up, &slice(w.up, eff, hidden), &self.h);
            if let Some([gb, ub, _]) = w.biases {
                add(&mut gate, &gb[e * eff..(e + 1) * eff]);
                add(&mut up, &ub[e * eff..(e + 1) * eff]);
            }
            for (g, &u) in gate.iter_mut().zip(&up) {
                *g = act2(w.act, *g, u);
            }
            let mut y = vec![0.0f32; hidden]; // [hidden]
            matvec(&mut y, &slice(w.down, hidden, eff), &gate);
            if let Some([_, _, db]) = w.biases {
                add(&mut y, &db[e * hidden..(e + 1) * hidden]);
            }
            for (o, v) in out.iter_mut().zip(&y) {
                *o += weight as f64 * *v as f64;
            }
        }
        for (o, v) in self.o.iter_mut().zip(out) {
            *o = v as f32;
        }
        Ok(())
    }

    /// `x = LayerNorm(x + o) * w + b`, and `h = x` (BERT's residual and post-norm).
    pub fn residual_layer_norm(&mut self, w: &[f32], b: &[f32]) -> Result<(), ModelError> {
        add(&mut self.x, &self.o);
        let copy = self.x.clone();
        layernorm(&mut self.x, &copy, w, b, self.cfg.rms_eps);
        self.h.copy_from_slice(&self.x);
        Ok(())
    }

    /// Ungated feed-forward from `h` into `o`: `down(act(up h + b_up)) + b_down`.
    pub fn ffn_seq(&mut self, w: &SeqFeedForward<Vec<f32>, Vec<f32>>) -> Result<(), ModelError> {
        let mut u = vec![0.0f32; w.up.len() / self.cfg.hidden]; // [ffn]
        matvec(&mut u, w.up, &self.h);
        if let Some(b) = w.up_bias {
            add(&mut u, b);
        }
        for v in u.iter_mut() {
            *v = crate::kernels::gated_act::act_f64(w.act, *v as f64) as f32;
        }
        matvec(&mut self.o, w.down, &u);
        if let Some(b) = w.down_bias {
            add(&mut self.o, b);
        }
        Ok(())
    }

    /// The usual pre-norm block: `x += attn(norm(x))`, then `x += ffn(norm(x))`.
    pub fn pre_norm_block(
        &mut self,
        w: &RefLayer,
        attn: &Attention<Vec<f32>, Vec<f32>>,
        ffn: &FeedForward<Vec<f32>>,
    ) -> Result<(), ModelError> {
        self.pre_norm(w.vec("attn_norm.weight")?)?;
        self.attention(attn)?;
        self.residual(None)?;
        self.pre_norm(w.vec("ffn_norm.weight")?)?;
        self.ffn(ffn)?;
        self.residual(None)
    }
}

/// The gated activation of one element: `act(gate) * up` (gpt-oss's clamped form too).
fn act2(act: Activation, gate: f32, up: f32) -> f32 {
    match act {
        Activation::Silu => silu(gate) * up,
        Activation::GeluTanh => gelu_tanh(gate) * up,
        Activation::SwigluOai => {
            crate::kernels::gated_act::gated_f64(act, gate as f64, up as f64) as f32
        }
    }
}
