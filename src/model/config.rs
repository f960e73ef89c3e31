//! Model hyperparameters read from GGUF metadata: the keys every architecture shares,
//! read here with Llama's defaults, then each architecture's `configure` (see `mod.rs`).

use super::Arch;
use crate::gguf::{GgufError, GgufHeader};
use thiserror::Error;

/// The architectures hearth runs, for error messages.
fn supported() -> String {
    Arch::ALL.map(Arch::name).join(", ")
}

/// Errors from reading a model's configuration or weights.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The architecture named in `general.architecture` is not one hearth runs.
    #[error("unsupported architecture '{0}' (hearth runs {list})", list = supported())]
    UnsupportedArch(String),
    /// A metadata key is missing or has the wrong type.
    #[error(transparent)]
    Metadata(#[from] GgufError),
    /// A hyperparameter has a value hearth cannot use.
    #[error("{key} = {value}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    /// A tensor has a shape the architecture does not expect.
    #[error("tensor '{name}' has shape {got:?}, expected {want:?}")]
    BadShape {
        name: String,
        got: Vec<u64>,
        want: Vec<u64>,
    },
    /// The GPU could not hold or run part of the model.
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// A request the loaded model cannot serve (token id out of range, context full).
    #[error("{0}")]
    Input(String),
    /// A tensor has a type hearth cannot use where it appears.
    #[error("tensor '{name}': {why}")]
    BadTensor { name: String, why: String },
    /// A token id is not below the vocabulary size.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    /// The tokens would run past the end of the KV cache.
    #[error("{needed} positions do not fit a KV cache of {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    /// The KV page pool has no page left for a sequence to grow (others hold them).
    #[error("{0}")]
    KvFull(String),
    /// A forward pass must start at or before the end of what the cache holds.
    #[error("position {pos} leaves a gap after the {cached} cached positions")]
    PositionGap { pos: usize, cached: usize },
}

/// The gated activation of the feed-forward block: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Qwen.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
    /// gpt-oss's SwiGLU: `min(g, 7) * sigmoid(1.702 min(g, 7)) * (clamp(u, -7, 7) + 1)`.
    SwigluOai,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 3] = [
        Activation::Silu,
        Activation::GeluTanh,
        Activation::SwigluOai,
    ];
}

/// How an embedding is pooled from the final hidden states of an input's tokens
/// (llama.cpp's `llama_pooling_type`, GGUF `{arch}.pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's row.
    Mean,
    /// The first token's row (BERT's [CLS]).
    Cls,
    /// The last token's row (decoder embedding models such as Qwen3-Embedding).
    Last,
}

impl Pooling {
    /// llama.cpp's number for it in `{arch}.pooling_type` (0 none, 1 mean, 2 cls, 3 last,
    /// 4 rank); `None` for the types hearth does not pool by (none, rank).
    pub fn from_gguf(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Mean),
            2 => Some(Self::Cls),
            3 => Some(Self::Last),
            _ => None,
        }
    }

    /// Its name in APIs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::Last => "last",
        }
    }

    /// The pooling named `s` (`mean`, `cls`, `last`).
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Mean, Self::Cls, Self::Last]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Embedding width (`n_embd`).
    pub hidden: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (`n_heads` for MHA, fewer for GQA, 1 for MQA).
    pub n_kv_heads: usize,
    /// Width of one head (queries and keys; values use the same).
    pub head_dim: usize,
    /// Feed-forward inner width.
    pub ffn: usize,
    /// Vocabulary size (rows of token_embd).
    pub vocab: usize,
    /// Epsilon of the norms: RMSNorm's, or LayerNorm's in BERT-style encoders
    /// (`attention.layer_norm_epsilon`).
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub context: usize,
    /// RoPE frequency base of global (full-attention) layers.
    pub rope_base: f32,
    /// RoPE frequency base of sliding-window layers (Gemma 3: 10000).
    pub rope_base_local: f32,
    /// Linear RoPE scaling of global layers: positions are multiplied by this (1 = none).
    pub rope_scale: f32,
    /// Rotated dimensions per head (`rope.dimension_count`, default `head_dim`).
    pub rope_dims: usize,
    /// NeoX pairing (i, i + d/2) instead of adjacent pairs (2i, 2i + 1).
    pub rope_neox: bool,
    /// Sliding window of local layers (Gemma 3: 512), `None` when every layer is global.
    pub sliding_window: Option<usize>,
    /// Every `n`-th layer is global (`il % n == n - 1`); the rest slide. Gemma 3: 6.
    pub sliding_pattern: usize,
    /// Scale applied to q·k (1/sqrt(head_dim) unless the model says otherwise).
    pub attn_scale: f32,
    /// Multiplier of the token embedding (Gemma: sqrt(hidden)), 1 otherwise.
    pub embed_scale: f32,
    /// Final logit soft-capping `c * tanh(x / c)` when present.
    pub final_softcap: Option<f32>,
    /// Attention score soft-capping `c * tanh(s / c)` of the scaled scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Positions the model was trained on before any context extension
    /// (`rope.scaling.original_context_length`, default `context`).
    pub n_ctx_orig: usize,
    /// YaRN: (1 / factor, beta_fast, beta_slow) when `rope.scaling.type` is `yarn`.
    pub rope_yarn: Option<(f32, f32, f32)>,
    /// Multiplier of RoPE's cos and sin (YaRN's attention factor times
    /// `rope.scaling.attn_factor`, as llama.cpp computes it); 1 for none.
    pub rope_mscale: f32,
    /// Attention temperature of q after RoPE (Llama 4, Mistral 3): (scale, floor), q at
    /// position p times `1 + scale * ln(floor(p / floor) + 1)`.
    pub attn_temp: Option<(f32, u32)>,
    /// Experts of each mixture-of-experts FFN (`expert_count`; 0: dense FFNs).
    pub n_expert: usize,
    /// Experts each token uses (`expert_used_count`).
    pub n_expert_used: usize,
    /// Inner width of one expert (`expert_feed_forward_length`, default `ffn`).
    pub expert_ffn: usize,
    /// Inner width of the shared expert (`expert_shared_feed_forward_length`, default
    /// `ffn`), in architectures that have one.
    pub expert_shared_ffn: usize,
    /// How the router weighs the chosen experts.
    pub gating: crate::kernels::Gating,
    /// The pooling the file asks for (`{arch}.pooling_type`); `None`: unspecified, and
    /// embeddings pool by the mean.
    pub pooling: Option<Pooling>,
    /// Whether a token attends only to itself and earlier tokens (decoders); encoders
    /// (BERT, EmbeddingGemma) attend to the whole input, which then runs as one step.
    pub causal: bool,
    /// BERT: absolute position embeddings (`position_embd.weight`, one row per trained
    /// position) added to the token embedding.
    pub pos_embd: bool,
    /// BERT-style encoders: rows of `token_types.weight` (`tokenizer.ggml.token_type_count`;
    /// row 0, "sentence A", is added to every token), 0 for none.
    pub token_types: usize,
    /// BERT-style encoders: the embedding goes through a LayerNorm with bias
    /// (`token_embd_norm.{weight,bias}`) before the first block.
    pub embd_norm: bool,
    /// Whether the blocks are followed by a final norm (`output_norm.weight`); BERT's
    /// post-norm blocks end normalized and have none.
    pub final_norm: bool,
}

impl ModelConfig {
    /// Reads the configuration from GGUF metadata (`{arch}.*` keys).
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, ModelError> {
        let arch_name = h.architecture()?;
        let arch = Arch::from_name(arch_name)
            .ok_or_else(|| ModelError::UnsupportedArch(arch_name.to_string()))?;
        let a = arch_name;
        let key = |k: &str| format!("{a}.{k}");
        let need = |k: &str| -> Result<usize, ModelError> { Ok(h.require_u32(&key(k))? as usize) };
        let n_layers = need("block_count")?;
        let hidden = need("embedding_length")?;
        let n_heads = need("attention.head_count")?;
        let n_kv_heads = h
            .get_u32(&key("attention.head_count_kv"))?
            .map(|v| v as usize)
            .unwrap_or(n_heads);
        let ffn = need("feed_forward_length")?;
        let context = need("context_length")?;
        if n_heads == 0 {
            return Err(bad(&key("attention.head_count"), 0, "must be at least 1"));
        }
        let head_dim = match h.get_u32(&key("attention.key_length"))? {
            Some(v) => v as usize,
            None => {
                if !hidden.is_multiple_of(n_heads) {
                    return Err(bad(
                        &key("embedding_length"),
                        hidden,
                        "not divisible by the head count",
                    ));
                }
                hidden / n_heads
            }
        };
        if let Some(v) = h.get_u32(&key("attention.value_length"))? {
            if v as usize != head_dim {
                return Err(bad(
                    &key("attention.value_length"),
                    v,
                    "differs from key_length (unsupported)",
                ));
            }
        }
        let vocab = match h.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            Some(t) => {
                return Err(ModelError::BadShape {
                    name: t.name.clone(),
                    got: t.dims.clone(),
                    want: vec![hidden as u64, 0],
                })
            }
            None => return Err(ModelError::MissingTensor("token_embd.weight".into())),
        };
        let rms_eps = h
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6);
        let rope_base = h.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let factor = || -> Result<f32, ModelError> {
            let f = h.get_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            if !(f > 0.0 && f.is_finite()) {
                return Err(bad(&key("rope.scaling.factor"), f, "must be positive"));
            }
            Ok(f)
        };
        let n_ctx_orig = h
            .get_u32(&key("rope.scaling.original_context_length"))?
            .map_or(context, |v| v as usize);
        let attn_factor = h.get_f32(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0);
        let mut rope_yarn = None;
        let mut rope_mscale = attn_factor;
        let rope_scale = match h.get_str(&key("rope.scaling.type"))? {
            Some("linear") => 1.0 / factor()?,
            Some("yarn") => {
                let f = factor()?;
                if n_ctx_orig == 0 {
                    return Err(bad(
                        &key("rope.scaling.original_context_length"),
                        0,
                        "YaRN needs the original context length",
                    ));
                }
                let beta = |k: &str, d: f32| -> Result<f32, ModelError> {
                    Ok(h.get_f32(&key(k))?.unwrap_or(d))
                };
                let (fast, slow) = (
                    beta("rope.scaling.yarn_beta_fast", 32.0)?,
                    beta("rope.scaling.yarn_beta_slow", 1.0)?,
                );
                if !(fast > 0.0 && slow > 0.0 && fast.is_finite() && slow.is_finite()) {
                    return Err(bad(
                        &key("rope.scaling.yarn_beta_fast"),
                        format!("{fast} / {slow}"),
                        "YaRN betas must be positive",
                    ));
                }
                rope_yarn = Some((1.0 / f, fast, slow));
                // llama.cpp: an attention factor of get_mscale(f, 1) (divided by
                // get_mscale(f, log_mul) when the file sets a log multiplier), which it
                // divides by 1 + 0.1 ln f because ggml's YaRN RoPE multiplies that in
                // again: the net factor on cos and sin is `yarn` times attn_factor.
                let log_mul = beta("rope.scaling.yarn_log_multiplier", 0.0)?;
                let m = |s: f32, m: f32| {
                    if s <= 1.0 {
                        1.0
                    } else {
                        0.1 * m * s.ln() + 1.0
                    }
                };
                let yarn = if log_mul != 0.0 {
                    m(f, 1.0) / m(f, log_mul)
                } else {
                    m(f, 1.0)
                };
                rope_mscale = yarn * attn_factor;
                1.0
            }
            Some("none") | None => 1.0,
            Some(other) => {
                return Err(bad(
                    &key("rope.scaling.type"),
                    other,
                    "unsupported RoPE scaling",
                ))
            }
        };
        let rope_dims = h
            .get_u32(&key("rope.dimension_count"))?
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        // The Llama defaults; each architecture's module changes what differs.
        let mut cfg = Self {
            arch,
            n_layers,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn,
            vocab,
            rms_eps,
            context,
            rope_base,
            rope_base_local: rope_base,
            rope_scale,
            rope_dims,
            rope_neox: false,
            sliding_window: None,
            sliding_pattern: 1,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            embed_scale: 1.0,
            final_softcap: softcap(h, &key("final_logit_softcapping"))?,
            attn_softcap: softcap(h, &key("attn_logit_softcapping"))?,
            n_ctx_orig,
            rope_yarn,
            rope_mscale,
            attn_temp: None,
            n_expert: h.get_u32(&key("expert_count"))?.unwrap_or(0) as usize,
            n_expert_used: h.get_u32(&key("expert_used_count"))?.unwrap_or(0) as usize,
            expert_ffn: h
                .get_u32(&key("expert_feed_forward_length"))?
                .map_or(ffn, |v| v as usize),
            expert_shared_ffn: h
                .get_u32(&key("expert_shared_feed_forward_length"))?
                .map_or(ffn, |v| v as usize),
            gating: crate::kernels::Gating::SoftmaxNorm,
            pooling: h
                .get_u32(&key("pooling_type"))?
                .and_then(Pooling::from_gguf),
            causal: true,
            pos_embd: false,
            token_types: 0,
            embd_norm: false,
            final_norm: true,
        };
        (arch.def().configure)(h, &mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let a = self.arch.name();
        let checks: [(&str, usize, bool, &str); 7] = [
            (
                "block_count",
                self.n_layers,
                (1..=1024).contains(&self.n_layers),
                "must be 1..=1024",
            ),
            (
                "embedding_length",
                self.hidden,
                (1..=1 << 16).contains(&self.hidden),
                "must be 1..=65536",
            ),
            (
                "attention.head_count_kv",
                self.n_kv_heads,
                self.n_kv_heads >= 1 && self.n_heads.is_multiple_of(self.n_kv_heads),
                "must divide the head count",
            ),
            (
                "attention.key_length",
                self.head_dim,
                (2..=1024).contains(&self.head_dim) && self.head_dim.is_multiple_of(2),
                "must be even, 2..=1024",
            ),
            (
                "feed_forward_length",
                self.ffn,
                (1..=1 << 20).contains(&self.ffn),
                "must be 1..=2^20",
            ),
            (
                "context_length",
                self.context,
                self.context >= 1,
                "must be at least 1",
            ),
            (
                "rope.dimension_count",
                self.rope_dims,
                self.rope_dims <= self.head_dim && self.rope_dims.is_multiple_of(2),
                "must be even and at most the head width",
            ),
        ];
        for (k, v, ok, why) in checks {
            if !ok {
                return Err(bad(&format!("{a}.{k}"), v, why));
            }
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(bad(
                &format!("{a}.attention.layer_norm_rms_epsilon"),
                self.rms_eps,
                "must be positive",
            ));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return Err(bad(
                &format!("{a}.rope.freq_base"),
                self.rope_base,
                "must be above 1",
            ));
        }
        if self.n_expert > 0 {
            use crate::kernels::moe::{MAX_EXPERTS, MAX_USED};
            if self.n_expert > MAX_EXPERTS as usize {
                return Err(bad(
                    &format!("{a}.expert_count"),
                    self.n_expert,
                    "more experts than hearth's router takes (1024)",
                ));
            }
            if self.n_expert_used == 0 || self.n_expert_used > self.n_expert.min(MAX_USED as usize)
            {
                return Err(bad(
                    &format!("{a}.expert_used_count"),
                    self.n_expert_used,
                    "must be 1..=min(expert_count, 32)",
                ));
            }
            if !(1..=1 << 20).contains(&self.expert_ffn) {
                return Err(bad(
                    &format!("{a}.expert_feed_forward_length"),
                    self.expert_ffn,
                    "must be 1..=2^20",
                ));
            }
            if !(1..=1 << 20).contains(&self.expert_shared_ffn) {
                return Err(bad(
                    &format!("{a}.expert_shared_feed_forward_length"),
                    self.expert_shared_ffn,
                    "must be 1..=2^20",
                ));
            }
        }
        if !(self.rope_mscale.is_finite() && self.rope_mscale > 0.0) {
            return Err(bad(
                &format!("{a}.rope.scaling.attn_factor"),
                self.rope_mscale,
                "gives a RoPE magnitude scale that is not positive",
            ));
        }
        if self.sliding_pattern == 0 {
            return Err(bad(
                &format!("{a}.attention.sliding_window_pattern"),
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Whether layer `il` uses the sliding window (Gemma 3: all but every 6th).
    pub fn is_sliding(&self, il: usize) -> bool {
        self.sliding_window.is_some() && il % self.sliding_pattern < self.sliding_pattern - 1
    }

    /// The attention window of layer `il`: `Some(w)` means a query at position p sees keys
    /// at positions p' with p - p' < w.
    pub fn window(&self, il: usize) -> Option<usize> {
        if self.is_sliding(il) {
            self.sliding_window
        } else {
            None
        }
    }

    /// RoPE (frequency base, position scale) of layer `il`.
    pub fn rope(&self, il: usize) -> (f32, f32) {
        if self.is_sliding(il) {
            (self.rope_base_local, 1.0)
        } else {
            (self.rope_base, self.rope_scale)
        }
    }

    /// The RoPE of layer `il`: its base and position scale, YaRN's ramp (every layer,
    /// as llama.cpp applies it) and the magnitude scale.
    pub fn rope_spec(&self, il: usize) -> crate::kernels::RopeSpec {
        let (base, pos_scale) = self.rope(il);
        let mut spec =
            crate::kernels::RopeSpec::plain(self.rope_dims as u32, base, pos_scale, self.rope_neox);
        spec.mscale = self.rope_mscale;
        spec.yarn = self.rope_yarn.map(|(freq_scale, fast, slow)| {
            crate::kernels::rope::YarnRamp::new(
                freq_scale,
                self.rope_dims as u32,
                base,
                self.n_ctx_orig as u32,
                (fast, slow),
            )
        });
        spec
    }

    /// Which RoPE frequency divisors a model of `capacity` positions per sequence uses,
    /// as llama.cpp picks them: `rope_freqs` when the file has them, else LongRoPE's long
    /// factors when the context exceeds the original one, else its short factors.
    pub fn rope_factors<'a, T>(
        &self,
        freqs: Option<&'a T>,
        (long, short): (Option<&'a T>, Option<&'a T>),
        capacity: usize,
    ) -> Option<&'a T> {
        freqs.or(if capacity > self.n_ctx_orig {
            long
        } else {
            short
        })
    }

    /// Whether the FFNs are mixtures of experts.
    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// A soft-capping value: absent or 0 means none; otherwise it must be positive.
fn softcap(h: &GgufHeader, key: &str) -> Result<Option<f32>, ModelError> {
    match h.get_f32(key)? {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(c) if c > 0.0 && c.is_finite() => Ok(Some(c)),
        Some(c) => Err(bad(key, c, "must be positive (or 0 for none)")),
    }
}

pub(super) fn bad(key: &str, value: impl std::fmt::Display, why: &str) -> ModelError {
    ModelError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// llama.cpp's names for `general.file_type` (the quantization mix of the file).
pub fn file_type_name(ft: u32) -> &'static str {
    match ft {
        0 => "all F32",
        1 => "mostly F16",
        2 => "mostly Q4_0",
        3 => "mostly Q4_1",
        7 => "mostly Q8_0",
        8 => "mostly Q5_0",
        9 => "mostly Q5_1",
        10 => "mostly Q2_K",
        11 => "mostly Q3_K_S",
        12 => "mostly Q3_K_M",
        13 => "mostly Q3_K_L",
        14 => "mostly Q4_K_S",
        15 => "mostly Q4_K_M",
        16 => "mostly Q5_K_S",
        17 => "mostly Q5_K_M",
        18 => "mostly Q6_K",
        25 => "mostly IQ4_NL",
        30 => "mostly IQ4_XS",
        32 => "mostly BF16",
        38 => "MXFP4 MoE",
        _ => "other",
    }
}
