//! The plain CPU forward pass of every architecture hearth runs (Gemma 3, Llama, Qwen 2,
//! Qwen 3), one token at a time, top to bottom, in the manner of llama2.c's `run.c`.
//!
//! It is two things at once: the onboarding document (read [`Reference::step`] to learn
//! what a transformer does per token, with every buffer's shape in a comment) and the
//! oracle every GPU test compares against. Weights are dequantized to f32 once at load,
//! sums are accumulated in f64, and nothing is fused or reordered for speed; the
//! semantics follow llama.cpp (`src/models/{gemma3,llama,qwen2,qwen3}.cpp`).
//!
//! Matrices keep GGUF's layout: a `[cols, rows]` tensor is `rows` rows of `cols` floats,
//! and `out = W x` takes one dot product per row.

mod ops;

use crate::gguf::{GgufFile, TensorInfo};
use crate::model::{check_tensors, Activation, ModelConfig, ModelError};
use crate::quant::dequantize_to_vec;
use ops::{add, attention, gelu_tanh, matvec, rmsnorm, rmsnorm_heads, rope, silu};

/// One transformer block's weights, dequantized; matrices are `[rows][cols]`.
struct Layer {
    attn_norm: Vec<f32>,              // [hidden]
    wq: Vec<f32>,                     // [q_dim][hidden]
    wk: Vec<f32>,                     // [kv_dim][hidden]
    wv: Vec<f32>,                     // [kv_dim][hidden]
    bias: Option<[Vec<f32>; 3]>,      // q [q_dim], k [kv_dim], v [kv_dim] (Qwen 2)
    qk_norm: Option<[Vec<f32>; 2]>,   // q, k: [head_dim] each (Gemma 3, Qwen 3)
    wo: Vec<f32>,                     // [hidden][q_dim]
    post_attn_norm: Option<Vec<f32>>, // [hidden] (Gemma 3)
    ffn_norm: Vec<f32>,               // [hidden]
    w_gate: Vec<f32>,                 // [ffn][hidden]
    w_up: Vec<f32>,                   // [ffn][hidden]
    w_down: Vec<f32>,                 // [hidden][ffn]
    post_ffw_norm: Option<Vec<f32>>,  // [hidden] (Gemma 3)
}

/// A model with every weight dequantized to f32, ready for [`Reference::forward`].
pub struct Reference {
    /// The configuration the weights were checked against. Tests may change behaviour
    /// (window, scales, RoPE) through it; the shapes must stay as loaded.
    pub cfg: ModelConfig,
    token_embd: Vec<f32>,         // [vocab][hidden]
    output: Option<Vec<f32>>,     // [vocab][hidden]; None: tied to token_embd
    output_norm: Vec<f32>,        // [hidden]
    rope_freqs: Option<Vec<f32>>, // [rope_dims / 2] frequency divisors (Llama 3.1+)
    layers: Vec<Layer>,           // [n_layers]
}

/// The key/value cache of one sequence: every layer's K and V for each position so far.
pub struct RefCache {
    k: Vec<f32>, // [n_layers][capacity][kv_dim], after RoPE
    v: Vec<f32>, // [n_layers][capacity][kv_dim]
    n_layers: usize,
    kv_dim: usize,
    capacity: usize,
    len: usize,
    kv_f16: bool,
}

impl RefCache {
    /// An empty cache for `capacity` positions of `cfg`; with `kv_f16`, K and V are
    /// rounded to f16 as they are stored, like a GPU cache kept in half precision.
    pub fn new(cfg: &ModelConfig, capacity: usize, kv_f16: bool) -> Self {
        let n = cfg.n_layers * capacity * cfg.kv_dim();
        Self {
            k: vec![0.0; n],
            v: vec![0.0; n],
            n_layers: cfg.n_layers,
            kv_dim: cfg.kv_dim(),
            capacity,
            len: 0,
            kv_f16,
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
        for i in 0..cfg.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            let l = |s: &str| load(f, &n(s));
            let bias = if cfg.qkv_bias {
                Some([l("attn_q.bias")?, l("attn_k.bias")?, l("attn_v.bias")?])
            } else {
                None
            };
            let qk_norm = if cfg.qk_norm {
                Some([l("attn_q_norm.weight")?, l("attn_k_norm.weight")?])
            } else {
                None
            };
            let post = |s: &str| -> Result<Option<Vec<f32>>, ModelError> {
                if cfg.post_norms {
                    l(s).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: l("attn_norm.weight")?,
                wq: l("attn_q.weight")?,
                wk: l("attn_k.weight")?,
                wv: l("attn_v.weight")?,
                bias,
                qk_norm,
                wo: l("attn_output.weight")?,
                post_attn_norm: post("post_attention_norm.weight")?,
                ffn_norm: l("ffn_norm.weight")?,
                w_gate: l("ffn_gate.weight")?,
                w_up: l("ffn_up.weight")?,
                w_down: l("ffn_down.weight")?,
                post_ffw_norm: post("post_ffw_norm.weight")?,
            });
        }
        // Any architecture may carry it (see `expected_tensors`).
        let rope_freqs = load_opt(f, "rope_freqs.weight")?;
        Ok(Self {
            token_embd: load(f, "token_embd.weight")?,
            output: load_opt(f, "output.weight")?,
            output_norm: load(f, "output_norm.weight")?,
            rope_freqs,
            layers,
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
        let logits = tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| self.step(cache, t, pos + i))
            .collect();
        Ok(logits)
    }

    /// One token through the whole model at position `pos` (checked by `forward`):
    /// returns its logits `[vocab]` and leaves its K/V in the cache.
    fn step(&self, cache: &mut RefCache, token: u32, pos: usize) -> Vec<f32> {
        let c = &self.cfg;
        let (hidden, hd, q_dim, kv_dim) = (c.hidden, c.head_dim, c.q_dim(), c.kv_dim());

        // The residual stream: the token's embedding row, scaled (Gemma: sqrt(hidden)).
        let row = token as usize * hidden;
        let mut x: Vec<f32> = self.token_embd[row..row + hidden] // [hidden]
            .iter()
            .map(|&v| v * c.embed_scale)
            .collect();

        let mut xb = vec![0.0f32; hidden]; // [hidden] normed input of each block
        let mut q = vec![0.0f32; q_dim]; // [n_heads][head_dim]
        let mut k = vec![0.0f32; kv_dim]; // [n_kv_heads][head_dim]
        let mut v = vec![0.0f32; kv_dim]; // [n_kv_heads][head_dim]
        let mut att = vec![0.0f32; q_dim]; // [n_heads][head_dim] attention output
        let mut proj = vec![0.0f32; hidden]; // [hidden] block output before the residual
        let mut gate = vec![0.0f32; c.ffn]; // [ffn]
        let mut up = vec![0.0f32; c.ffn]; // [ffn]

        for (il, l) in self.layers.iter().enumerate() {
            // ---- attention ----
            rmsnorm(&mut xb, &x, &l.attn_norm, c.rms_eps);
            matvec(&mut q, &l.wq, &xb);
            matvec(&mut k, &l.wk, &xb);
            matvec(&mut v, &l.wv, &xb);
            if let Some([bq, bk, bv]) = &l.bias {
                add(&mut q, bq);
                add(&mut k, bk);
                add(&mut v, bv);
            }
            if let Some([qn, kn]) = &l.qk_norm {
                // Each head normalized on its own, before RoPE.
                rmsnorm_heads(&mut q, qn, c.rms_eps);
                rmsnorm_heads(&mut k, kn, c.rms_eps);
            }
            let (base, pos_scale) = c.rope(il);
            let ff = self.rope_freqs.as_deref();
            rope(
                &mut q,
                hd,
                c.rope_dims,
                pos,
                base,
                pos_scale,
                c.rope_neox,
                ff,
            );
            rope(
                &mut k,
                hd,
                c.rope_dims,
                pos,
                base,
                pos_scale,
                c.rope_neox,
                ff,
            );

            // Store this position's K and V; later tokens read them back.
            let kv_f16 = cache.kv_f16;
            let (kc, vc) = cache.layer(il); // [capacity][kv_dim] each
            let store = |dst: &mut [f32], src: &[f32]| {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = if kv_f16 {
                        half::f16::from_f32(s).to_f32()
                    } else {
                        s
                    };
                }
            };
            store(&mut kc[pos * kv_dim..(pos + 1) * kv_dim], &k);
            store(&mut vc[pos * kv_dim..(pos + 1) * kv_dim], &v);

            let (nh, nkv) = (c.n_heads, c.n_kv_heads);
            let win = c.window(il);
            attention(&mut att, &q, kc, vc, pos, nh, nkv, hd, c.attn_scale, win);
            matvec(&mut proj, &l.wo, &att);
            residual(&mut x, &mut proj, l.post_attn_norm.as_deref(), c.rms_eps);

            // ---- feed-forward: down(act(gate xb) * up xb) ----
            rmsnorm(&mut xb, &x, &l.ffn_norm, c.rms_eps);
            matvec(&mut gate, &l.w_gate, &xb);
            matvec(&mut up, &l.w_up, &xb);
            for (g, &u) in gate.iter_mut().zip(&up) {
                let a = match c.act {
                    Activation::Silu => silu(*g),
                    Activation::GeluTanh => gelu_tanh(*g),
                };
                *g = a * u;
            }
            matvec(&mut proj, &l.w_down, &gate);
            residual(&mut x, &mut proj, l.post_ffw_norm.as_deref(), c.rms_eps);
        }
        cache.len = pos + 1;

        // ---- head: final norm, then one dot product per vocabulary entry ----
        rmsnorm(&mut xb, &x, &self.output_norm, c.rms_eps);
        let head = self.output.as_deref().unwrap_or(&self.token_embd); // [vocab][hidden]
        let mut logits = vec![0.0f32; c.vocab]; // [vocab]
        matvec(&mut logits, head, &xb);
        if let Some(cap) = c.final_softcap {
            for l in &mut logits {
                *l = cap * (*l / cap).tanh();
            }
        }
        logits
    }
}

/// `x += out`, with `out` first normalized by `post_norm` when the model has one
/// (Gemma 3's sandwich norms).
fn residual(x: &mut [f32], out: &mut [f32], post_norm: Option<&[f32]>, eps: f32) {
    if let Some(w) = post_norm {
        let copy = out.to_vec();
        rmsnorm(out, &copy, w, eps);
    }
    add(x, out);
}
