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

/// One tensor of a block, as an architecture lists it (the loader adds `blk.N.`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTensor {
    /// Name within the block, e.g. `attn_q.weight`.
    pub name: &'static str,
    /// Expected dimensions in GGUF order (a 2-D matrix's third is 1; an expert tensor's
    /// is the expert count).
    pub dims: [usize; 3],
    /// Whether the model cannot run without it.
    pub required: bool,
    /// A float vector (norm weight, bias: never quantized, uploaded as f32) rather than a
    /// matrix (uploaded as raw blocks).
    pub vector: bool,
    /// A fused matrix (Phi-3's `attn_qkv`): the blocks see its rows as these matrices,
    /// in order, each (name, rows); unused entries are ("", 0).
    pub split: [(&'static str, usize); 3],
}

impl BlockTensor {
    /// A required matrix `[cols, rows]`: `rows` outputs of `cols` inputs, stored quantized.
    pub fn matrix(name: &'static str, cols: usize, rows: usize) -> Self {
        Self {
            name,
            dims: [cols, rows, 1],
            required: true,
            vector: false,
            split: NO_SPLIT,
        }
    }

    /// A required expert tensor: `n` matrices `[cols, rows]` one after another (the GPU
    /// sees one matrix of `n * rows` rows).
    pub fn experts(name: &'static str, cols: usize, rows: usize, n: usize) -> Self {
        Self {
            dims: [cols, rows, n],
            ..Self::matrix(name, cols, rows)
        }
    }

    /// A required float tensor of `n` rows of `len` (per-expert biases).
    pub fn vectors(name: &'static str, len: usize, n: usize) -> Self {
        Self {
            dims: [len, n, 1],
            ..Self::vector(name, len)
        }
    }

    /// A required fused matrix of `cols` inputs whose rows are the matrices `parts`
    /// (name, rows) one after another; the blocks see the parts, never the whole.
    pub fn fused(name: &'static str, cols: usize, parts: &[(&'static str, usize)]) -> Self {
        let mut split = NO_SPLIT;
        for (s, p) in split.iter_mut().zip(parts) {
            *s = *p;
        }
        Self {
            split,
            ..Self::matrix(name, cols, parts.iter().map(|p| p.1).sum())
        }
    }

    /// The parts of a fused matrix (empty for any other).
    pub fn parts(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.split.iter().copied().filter(|p| !p.0.is_empty())
    }

    /// A required float vector (norm weight, bias) of `len` elements.
    pub fn vector(name: &'static str, len: usize) -> Self {
        Self {
            name,
            dims: [len, 1, 1],
            required: true,
            vector: true,
            split: NO_SPLIT,
        }
    }
}

const NO_SPLIT: [(&str, usize); 3] = [("", 0); 3];

/// Every tensor of `cfg`'s architecture with its expected shape: the shared embedding,
/// head and RoPE factors, then each block's tensors as the architecture lists them.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (h, vocab) = (cfg.hidden, cfg.vocab);
    let mut v = vec![
        spec("token_embd.weight".into(), &[h, vocab], true, false),
        spec("output_norm.weight".into(), &[h], cfg.final_norm, true),
        // Absent in tied models (Gemma, small Qwen): the head then reuses token_embd.
        spec("output.weight".into(), &[h, vocab], false, false),
        // Optional RoPE frequency divisors (Llama 3.1+ long context). One rule for every
        // architecture: when a file has it, the GPU plan, the reference and this check
        // all use it.
        spec(
            "rope_freqs.weight".into(),
            &[cfg.rope_dims / 2],
            false,
            true,
        ),
        // LongRoPE's two sets (Phi-3): long past the original context, short within.
        spec(
            "rope_factors_long.weight".into(),
            &[cfg.rope_dims / 2],
            false,
            true,
        ),
        spec(
            "rope_factors_short.weight".into(),
            &[cfg.rope_dims / 2],
            false,
            true,
        ),
    ];
    // BERT-style encoders' embedding extras: absolute positions, token types (row 0 is
    // added; llama.cpp does without them), and the embedding's LayerNorm.
    if cfg.pos_embd {
        v.push(spec(
            "position_embd.weight".into(),
            &[h, cfg.context],
            true,
            false,
        ));
    }
    if cfg.token_types > 0 {
        v.push(spec(
            "token_types.weight".into(),
            &[h, cfg.token_types],
            false,
            false,
        ));
    }
    if cfg.embd_norm {
        for name in ["token_embd_norm.weight", "token_embd_norm.bias"] {
            v.push(spec(name.into(), &[h], true, true));
        }
    }
    let block = (cfg.arch.def().tensors)(cfg);
    for i in 0..cfg.n_layers {
        for t in &block {
            let n = if t.dims[2] > 1 {
                3
            } else if t.dims[1] > 1 || !t.vector {
                2
            } else {
                1
            };
            let dims = &t.dims[..n];
            v.push(spec(
                format!("blk.{i}.{}", t.name),
                dims,
                t.required,
                t.vector,
            ));
        }
    }
    v
}

/// One block's tensors by name, of either side: GPU weights (`LayerWeights`) or the CPU
/// reference's dequantized ones. The block builders look tensors up here by the names
/// the architecture listed.
pub struct LayerTensors<M, V> {
    /// The block's index.
    pub il: usize,
    /// Matrices by name.
    pub matrices: Vec<(&'static str, M)>,
    /// Vectors (norm weights, biases) by name.
    pub vectors: Vec<(&'static str, V)>,
}

impl<M, V> LayerTensors<M, V> {
    /// An empty block `il`.
    pub fn new(il: usize) -> Self {
        Self {
            il,
            matrices: Vec::new(),
            vectors: Vec::new(),
        }
    }

    fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor(format!("blk.{}.{name}", self.il))
    }

    /// The matrix `name`.
    pub fn mat(&self, name: &str) -> Result<&M, ModelError> {
        find(&self.matrices, name).ok_or_else(|| self.missing(name))
    }

    /// The vector `name`.
    pub fn vec(&self, name: &str) -> Result<&V, ModelError> {
        find(&self.vectors, name).ok_or_else(|| self.missing(name))
    }

    /// The vectors `names`, all required.
    pub fn vecs<const N: usize>(&self, names: [&str; N]) -> Result<[&V; N], ModelError> {
        let mut out = Vec::with_capacity(N);
        for n in names {
            out.push(self.vec(n)?);
        }
        Ok(out
            .try_into()
            .unwrap_or_else(|_| unreachable!("N names give N vectors")))
    }
}

fn find<'a, T>(items: &'a [(&'static str, T)], name: &str) -> Option<&'a T> {
    items.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
}

/// Fills a block's tensors from a file: every tensor `cfg`'s architecture lists for
/// block `il` that the file holds, matrices through `mat` and vectors through `vec`, a
/// fused matrix through `split` (its full name and its parts, (name, rows) in order; it
/// returns one matrix per part). The file has passed `check_tensors`, so required ones
/// are all there.
pub fn load_block<M, V, E>(
    cfg: &ModelConfig,
    h: &GgufHeader,
    il: usize,
    mut mat: impl FnMut(&str) -> Result<M, E>,
    mut vec: impl FnMut(&str) -> Result<V, E>,
    mut split: impl FnMut(&str, &[(&'static str, usize)]) -> Result<Vec<M>, E>,
) -> Result<LayerTensors<M, V>, E> {
    let mut l = LayerTensors::new(il);
    for t in (cfg.arch.def().tensors)(cfg) {
        let name = format!("blk.{il}.{}", t.name);
        if h.tensor(&name).is_none() {
            continue;
        }
        let parts: Vec<_> = t.parts().collect();
        if !parts.is_empty() {
            let mats = split(&name, &parts)?;
            l.matrices.extend(parts.iter().map(|p| p.0).zip(mats));
        } else if t.vector {
            l.vectors.push((t.name, vec(&name)?));
        } else {
            l.matrices.push((t.name, mat(&name)?));
        }
    }
    Ok(l)
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
