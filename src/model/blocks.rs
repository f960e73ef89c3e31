//! The parts blocks are made of, as architectures describe them to the shared builders:
//! which weights an attention or feed-forward sub-block uses, and the usual tensor lists.
//! The same descriptions serve the GPU plan (`M` = `GpuTensor`, `V` = a buffer) and the
//! CPU reference (`M` = `V` = `Vec<f32>`).

use super::{Activation, BlockTensor, LayerTensors, ModelConfig, ModelError};

/// Self-attention: `q, k, v = W x (+ b)`, optional per-head RMSNorm of q and k, RoPE,
/// the KV cache, causal (possibly windowed) attention, then the output projection.
pub struct Attention<'a, M, V> {
    /// Query, key and value projections `[hidden] -> [q_dim], [kv_dim], [kv_dim]`.
    pub qkv: [&'a M; 3],
    /// Output projection `[q_dim] -> [hidden]`.
    pub out: &'a M,
    /// Biases of q, k and v (Qwen 2).
    pub bias: Option<[&'a V; 3]>,
    /// Per-head RMSNorm weights of q and k `[head_dim]`, applied before RoPE.
    pub qk_norm: Option<[&'a V; 2]>,
    /// Bias of the output projection `[hidden]` (gpt-oss).
    pub out_bias: Option<&'a V>,
    /// Per-head attention sinks `[n_heads]` (gpt-oss): a logit in each head's softmax
    /// denominator that no value goes with.
    pub sinks: Option<&'a V>,
}

impl<'a, M, V> Attention<'a, M, V> {
    /// The projections under their usual names (`attn_{q,k,v,output}.weight`), with no
    /// bias and no q/k norm.
    pub fn projections(l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        Ok(Self {
            qkv: [
                l.mat("attn_q.weight")?,
                l.mat("attn_k.weight")?,
                l.mat("attn_v.weight")?,
            ],
            out: l.mat("attn_output.weight")?,
            bias: None,
            qk_norm: None,
            out_bias: None,
            sinks: None,
        })
    }

    /// With the output projection's bias and the attention sinks under their usual
    /// names (`attn_output.bias`, `attn_sinks.weight`).
    pub fn with_out_bias_and_sinks(self, l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        Ok(Self {
            out_bias: Some(l.vec("attn_output.bias")?),
            sinks: Some(l.vec("attn_sinks.weight")?),
            ..self
        })
    }

    /// With the q/k/v biases under their usual names.
    pub fn with_bias(self, l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        Ok(Self {
            bias: Some(l.vecs(["attn_q.bias", "attn_k.bias", "attn_v.bias"])?),
            ..self
        })
    }

    /// With the per-head q/k norms under their usual names.
    pub fn with_qk_norm(self, l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        Ok(Self {
            qk_norm: Some(l.vecs(["attn_q_norm.weight", "attn_k_norm.weight"])?),
            ..self
        })
    }
}

/// Gated feed-forward: `down(act(gate x) * up x)`.
pub struct FeedForward<'a, M> {
    /// Gate projection `[hidden] -> [ffn]`.
    pub gate: &'a M,
    /// Up projection `[hidden] -> [ffn]`.
    pub up: &'a M,
    /// Down projection `[ffn] -> [hidden]`.
    pub down: &'a M,
    /// The activation applied to the gate.
    pub act: Activation,
}

impl<'a, M> FeedForward<'a, M> {
    /// The projections under their usual names (`ffn_{gate,up,down}.weight`).
    pub fn named<V>(l: &'a LayerTensors<M, V>, act: Activation) -> Result<Self, ModelError> {
        Ok(Self {
            gate: l.mat("ffn_gate.weight")?,
            up: l.mat("ffn_up.weight")?,
            down: l.mat("ffn_down.weight")?,
            act,
        })
    }
}

/// Ungated feed-forward (BERT): `down(act(up x + up_bias)) + down_bias`.
pub struct SeqFeedForward<'a, M, V> {
    /// Up projection `[hidden] -> [ffn]`.
    pub up: &'a M,
    /// Its bias `[ffn]`.
    pub up_bias: Option<&'a V>,
    /// Down projection `[ffn] -> [hidden]`.
    pub down: &'a M,
    /// Its bias `[hidden]`.
    pub down_bias: Option<&'a V>,
    /// The activation between them.
    pub act: Activation,
}

impl<'a, M, V> SeqFeedForward<'a, M, V> {
    /// The projections and biases under their usual names (`ffn_{up,down}.{weight,bias}`),
    /// the biases where the block has them.
    pub fn named(l: &'a LayerTensors<M, V>, act: Activation) -> Result<Self, ModelError> {
        Ok(Self {
            up: l.mat("ffn_up.weight")?,
            up_bias: l.vec("ffn_up.bias").ok(),
            down: l.mat("ffn_down.weight")?,
            down_bias: l.vec("ffn_down.bias").ok(),
            act,
        })
    }
}

/// A mixture-of-experts FFN: a router projection picks `n_expert_used` of `n_expert`
/// experts per token and weighs them (`ModelConfig::gating`); each chosen expert is a
/// gated FFN `down_e(act(gate_e x) * up_e x)`, and the output is their weighted sum.
pub struct Moe<'a, M, V> {
    /// Router `[hidden] -> [n_expert]`.
    pub router: &'a M,
    /// Router bias `[n_expert]` (gpt-oss).
    pub router_bias: Option<&'a V>,
    /// Every expert's gate `[hidden] -> [expert_ffn]`, experts one after another.
    pub gate: &'a M,
    /// Every expert's up projection, as the gate.
    pub up: &'a M,
    /// Every expert's down projection `[expert_ffn] -> [hidden]`.
    pub down: &'a M,
    /// Per-expert biases of gate, up and down (`[n_expert][rows]` each; gpt-oss).
    pub biases: Option<[&'a V; 3]>,
    /// The gated activation.
    pub act: Activation,
    /// A shared expert every token uses (Qwen2-MoE): its FFN, and the one-row gate
    /// `[hidden] -> [1]` whose sigmoid weighs it.
    pub shared: Option<(FeedForward<'a, M>, &'a M)>,
}

impl<'a, M, V> Moe<'a, M, V> {
    /// The router and experts under their usual names (`ffn_gate_inp.weight`,
    /// `ffn_{gate,up,down}_exps.weight`), without biases.
    pub fn named(l: &'a LayerTensors<M, V>, act: Activation) -> Result<Self, ModelError> {
        Ok(Self {
            router: l.mat("ffn_gate_inp.weight")?,
            router_bias: None,
            gate: l.mat("ffn_gate_exps.weight")?,
            up: l.mat("ffn_up_exps.weight")?,
            down: l.mat("ffn_down_exps.weight")?,
            biases: None,
            act,
            shared: None,
        })
    }

    /// With the shared expert under its usual names (`ffn_{gate,up,down}_shexp.weight`,
    /// gated by `ffn_gate_inp_shexp.weight`).
    pub fn with_shared_expert(self, l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        let ffn = FeedForward {
            gate: l.mat("ffn_gate_shexp.weight")?,
            up: l.mat("ffn_up_shexp.weight")?,
            down: l.mat("ffn_down_shexp.weight")?,
            act: self.act,
        };
        Ok(Self {
            shared: Some((ffn, l.mat("ffn_gate_inp_shexp.weight")?)),
            ..self
        })
    }

    /// With the router's and the experts' biases under their usual names.
    pub fn with_biases(self, l: &'a LayerTensors<M, V>) -> Result<Self, ModelError> {
        Ok(Self {
            router_bias: Some(l.vec("ffn_gate_inp.bias")?),
            biases: Some(l.vecs([
                "ffn_gate_exps.bias",
                "ffn_up_exps.bias",
                "ffn_down_exps.bias",
            ])?),
            ..self
        })
    }
}

/// A mixture-of-experts FFN's tensors: pre-norm (`norm`), router, then the experts'
/// gate, up and down.
pub fn moe_tensors(cfg: &ModelConfig, norm: &'static str) -> Vec<BlockTensor> {
    let (h, ff, n) = (cfg.hidden, cfg.expert_ffn, cfg.n_expert);
    vec![
        BlockTensor::vector(norm, h),
        BlockTensor::matrix("ffn_gate_inp.weight", h, n),
        BlockTensor::experts("ffn_gate_exps.weight", h, ff, n),
        BlockTensor::experts("ffn_up_exps.weight", h, ff, n),
        BlockTensor::experts("ffn_down_exps.weight", ff, h, n),
    ]
}

/// Gemma's sandwich: the attention tensors (with the q/k norms when `qk_norm`), a norm
/// after attention, the FFN's, and a norm after the FFN.
pub fn sandwich_tensors(cfg: &ModelConfig, qk_norm: bool) -> Vec<BlockTensor> {
    let extra = if qk_norm {
        qk_norm_tensors(cfg)
    } else {
        vec![]
    };
    let mut v = attention_tensors(cfg, &extra);
    v.push(BlockTensor::vector(
        "post_attention_norm.weight",
        cfg.hidden,
    ));
    v.extend(ffn_tensors(cfg));
    v.push(BlockTensor::vector("post_ffw_norm.weight", cfg.hidden));
    v
}

/// A shared expert's tensors: its sigmoid gate (one row) and its gated FFN.
pub fn shared_expert_tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, ff) = (cfg.hidden, cfg.expert_shared_ffn);
    vec![
        BlockTensor::matrix("ffn_gate_inp_shexp.weight", h, 1),
        BlockTensor::matrix("ffn_gate_shexp.weight", h, ff),
        BlockTensor::matrix("ffn_up_shexp.weight", h, ff),
        BlockTensor::matrix("ffn_down_shexp.weight", ff, h),
    ]
}

/// The attention tensors most architectures share, in the converters' order: pre-norm,
/// q, k, v, then `extra` (biases, q/k norms), then the output projection.
pub fn attention_tensors(cfg: &ModelConfig, extra: &[BlockTensor]) -> Vec<BlockTensor> {
    let (h, q, kv) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim());
    let mut v = vec![
        BlockTensor::vector("attn_norm.weight", h),
        BlockTensor::matrix("attn_q.weight", h, q),
        BlockTensor::matrix("attn_k.weight", h, kv),
        BlockTensor::matrix("attn_v.weight", h, kv),
    ];
    v.extend_from_slice(extra);
    v.push(BlockTensor::matrix("attn_output.weight", q, h));
    v
}

/// The q/k/v biases (Qwen 2).
pub fn qkv_bias_tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    vec![
        BlockTensor::vector("attn_q.bias", cfg.q_dim()),
        BlockTensor::vector("attn_k.bias", cfg.kv_dim()),
        BlockTensor::vector("attn_v.bias", cfg.kv_dim()),
    ]
}

/// The per-head q/k norm weights (Gemma 3, Qwen 3).
pub fn qk_norm_tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    vec![
        BlockTensor::vector("attn_q_norm.weight", cfg.head_dim),
        BlockTensor::vector("attn_k_norm.weight", cfg.head_dim),
    ]
}

/// The gated feed-forward tensors: pre-norm, gate, up, down.
pub fn ffn_tensors(cfg: &ModelConfig) -> Vec<BlockTensor> {
    let (h, ff) = (cfg.hidden, cfg.ffn);
    vec![
        BlockTensor::vector("ffn_norm.weight", h),
        BlockTensor::matrix("ffn_gate.weight", h, ff),
        BlockTensor::matrix("ffn_up.weight", h, ff),
        BlockTensor::matrix("ffn_down.weight", ff, h),
    ]
}
