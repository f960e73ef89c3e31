//! The tensors each architecture needs, under their upstream GGUF names and shapes, and
//! the check that a file holds them before anything is uploaded or dequantized
//! (`ROBUSTNESS.md` case 13: a wrong shape is an error naming the tensor and both shapes,
//! never an out-of-bounds read later).

use super::config::{ModelConfig, ModelError};
use crate::gguf::GgufHeader;

/// One tensor the architecture expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Upstream GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Expected dimensions in GGUF order (dim 0 fastest: a matrix is `[cols, rows]`).
    pub dims: Vec<u64>,
    /// Whether the model cannot run without it.
    pub required: bool,
    /// Whether it must be stored as a float type (norm weights, biases, RoPE factors):
    /// these are tiny and applied element-wise, and no converter quantizes them.
    pub float_only: bool,
}

fn spec(name: String, dims: &[usize], required: bool, float_only: bool) -> TensorSpec {
    TensorSpec {
        name,
        dims: dims.iter().map(|&d| d as u64).collect(),
        required,
        float_only,
    }
}

/// Every tensor of `cfg`'s architecture with its expected shape.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (h, q, kv, ff, hd) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn, cfg.head_dim);
    let mut v = vec![
        spec("token_embd.weight".into(), &[h, cfg.vocab], true, false),
        spec("output_norm.weight".into(), &[h], true, true),
        // Absent in tied models (Gemma, small Qwen): the head then reuses token_embd.
        spec("output.weight".into(), &[h, cfg.vocab], false, false),
    ];
    // Optional RoPE frequency divisors (Llama 3.1+ long context). One rule for every
    // architecture: when a file has it, the GPU plan, the reference and this check all use it.
    v.push(spec(
        "rope_freqs.weight".into(),
        &[cfg.rope_dims / 2],
        false,
        true,
    ));
    for i in 0..cfg.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}");
        v.push(spec(n("attn_norm.weight"), &[h], true, true));
        v.push(spec(n("attn_q.weight"), &[h, q], true, false));
        v.push(spec(n("attn_k.weight"), &[h, kv], true, false));
        v.push(spec(n("attn_v.weight"), &[h, kv], true, false));
        if cfg.qkv_bias {
            v.push(spec(n("attn_q.bias"), &[q], true, true));
            v.push(spec(n("attn_k.bias"), &[kv], true, true));
            v.push(spec(n("attn_v.bias"), &[kv], true, true));
        }
        if cfg.qk_norm {
            v.push(spec(n("attn_q_norm.weight"), &[hd], true, true));
            v.push(spec(n("attn_k_norm.weight"), &[hd], true, true));
        }
        v.push(spec(n("attn_output.weight"), &[q, h], true, false));
        if cfg.post_norms {
            v.push(spec(n("post_attention_norm.weight"), &[h], true, true));
        }
        v.push(spec(n("ffn_norm.weight"), &[h], true, true));
        v.push(spec(n("ffn_gate.weight"), &[h, ff], true, false));
        v.push(spec(n("ffn_up.weight"), &[h, ff], true, false));
        v.push(spec(n("ffn_down.weight"), &[ff, h], true, false));
        if cfg.post_norms {
            v.push(spec(n("post_ffw_norm.weight"), &[h], true, true));
        }
    }
    v
}

/// Drops trailing dimensions of 1, as ggml does when it compares shapes: `[640, 1]` is
/// the same tensor as `[640]`.
fn trimmed(dims: &[u64]) -> &[u64] {
    let mut n = dims.len();
    while n > 1 && dims[n - 1] == 1 {
        n -= 1;
    }
    &dims[..n]
}

/// Checks that `h` holds every required tensor of `cfg` with the expected shape, and that
/// norms, biases and RoPE factors are float tensors.
pub fn check_tensors(cfg: &ModelConfig, h: &GgufHeader) -> Result<(), ModelError> {
    for s in expected_tensors(cfg) {
        let Some(t) = h.tensor(&s.name) else {
            if s.required {
                return Err(ModelError::MissingTensor(s.name));
            }
            continue;
        };
        if trimmed(&t.dims) != trimmed(&s.dims) {
            return Err(ModelError::BadShape {
                name: s.name,
                got: t.dims.clone(),
                want: s.dims,
            });
        }
        if s.float_only && !t.ty.is_float() {
            return Err(ModelError::BadTensor {
                name: s.name,
                why: format!("stored as {}, expected a float type (F32, F16, BF16)", t.ty),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_ones_do_not_change_a_shape() {
        assert_eq!(trimmed(&[640, 1, 1]), &[640]);
        assert_eq!(trimmed(&[1]), &[1]);
        assert_eq!(trimmed(&[1, 640]), &[1, 640]);
    }
}
