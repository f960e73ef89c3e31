//! A model's weights on the GPU: matrices as raw quantized blocks (sharded when large),
//! norm weights and biases as plain f32 vectors. Uploaded once at load.

use super::tensors::{load_block, LayerTensors};
use super::{ModelConfig, ModelError};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuTensor};
use crate::quant::{dequantize_to_vec, widen_to_q8_0, GgmlType};
use std::borrow::Cow;
use std::collections::HashMap;
use wgpu::util::DeviceExt;

/// One transformer block's weights by name, as its architecture lists them: matrices
/// as raw blocks, norm weights and biases as f32 buffers.
pub type LayerWeights = LayerTensors<GpuTensor, wgpu::Buffer>;

/// All weights of a model.
pub struct Weights {
    /// Token embedding `[vocab, hidden]`; also the output head when tied.
    pub token_embd: GpuTensor,
    /// Separate output head, when the model has one.
    pub output: Option<GpuTensor>,
    /// Final RMSNorm weight `[hidden]` (none in BERT-style encoders).
    pub output_norm: Option<wgpu::Buffer>,
    /// BERT's absolute position embeddings `[context, hidden]`.
    pub position_embd: Option<GpuTensor>,
    /// BERT-style token-type embeddings `[types][hidden]` as f32 (row 0 is used).
    pub token_types: Option<wgpu::Buffer>,
    /// BERT-style LayerNorm of the embedding: weight and bias `[hidden]`.
    pub embd_norm: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// RoPE frequency divisors (Llama 3.1+ `rope_freqs.weight`).
    pub rope_freqs: Option<wgpu::Buffer>,
    /// LongRoPE's divisors past the original context (Phi-3 `rope_factors_long.weight`).
    pub rope_long: Option<wgpu::Buffer>,
    /// LongRoPE's divisors within it (`rope_factors_short.weight`).
    pub rope_short: Option<wgpu::Buffer>,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights>,
    /// Projections of the pooled embedding, in order (EmbeddingGemma's `dense_2.weight`
    /// and `dense_3.weight`, when the file has them).
    pub dense: Vec<GpuTensor>,
}

impl Weights {
    /// Uploads every weight of `f` (shapes checked against `cfg` first).
    pub fn upload(gpu: &Gpu, f: &GgufFile, cfg: &ModelConfig) -> Result<Self, ModelError> {
        Self::upload_with_progress(gpu, f, cfg, &mut |_, _| {})
    }

    /// `upload`, calling `progress(done, total)` after each layer (for a progress bar).
    pub fn upload_with_progress(
        gpu: &Gpu,
        f: &GgufFile,
        cfg: &ModelConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        super::tensors::check_tensors(cfg, f)?;
        let total = cfg.n_layers + 1;
        // Tensors one decode dispatch reads together go into one buffer when they can
        // (see `STACKS`): the first of a stack a block asks for uploads them all, and the
        // others wait here until asked for (each name is asked once).
        let mut waiting: HashMap<String, GpuTensor> = HashMap::new();
        let mut block_mat = |name: &str| -> Result<GpuTensor, ModelError> {
            if let Some(t) = waiting.remove(name) {
                return Ok(t);
            }
            for names in stacks_of(name) {
                if let Some(views) = matrix_stack(gpu, f, &names)? {
                    let mut mine = None;
                    for (n, t) in names.into_iter().zip(views) {
                        if n == name {
                            mine = Some(t);
                        } else {
                            waiting.insert(n, t);
                        }
                    }
                    if let Some(t) = mine {
                        return Ok(t);
                    }
                }
            }
            matrix(gpu, f, name)
        };
        let mat = |name: &str| matrix(gpu, f, name);
        let vec = |name: &str| vector(gpu, f, name);
        let opt_vec = |name: &str| {
            if f.tensor(name).is_some() {
                vec(name).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for il in 0..cfg.n_layers {
            let split = |name: &str, parts: &[(&'static str, usize)]| fused(gpu, f, name, parts);
            layers.push(load_block(cfg, f, il, &mut block_mat, vec, split)?);
            progress(il + 1, total);
        }
        let token_embd = mat("token_embd.weight")?;
        progress(total, total);
        Ok(Self {
            token_embd,
            output: if f.tensor("output.weight").is_some() {
                Some(mat("output.weight")?)
            } else {
                None
            },
            output_norm: opt_vec("output_norm.weight")?,
            position_embd: if cfg.pos_embd {
                Some(mat("position_embd.weight")?)
            } else {
                None
            },
            token_types: opt_vec("token_types.weight")?,
            embd_norm: if cfg.embd_norm {
                Some((vec("token_embd_norm.weight")?, vec("token_embd_norm.bias")?))
            } else {
                None
            },
            rope_freqs: opt_vec("rope_freqs.weight")?,
            rope_long: opt_vec("rope_factors_long.weight")?,
            rope_short: opt_vec("rope_factors_short.weight")?,
            layers,
            dense: ["dense_2.weight", "dense_3.weight"]
                .into_iter()
                .filter(|n| f.tensor(n).is_some())
                .map(mat)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The output head (the embedding when tied).
    pub fn head(&self) -> &GpuTensor {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Uploads a 2-D (or higher, viewed as rows) weight as raw blocks.
fn matrix(gpu: &Gpu, f: &GgufFile, name: &str) -> Result<GpuTensor, ModelError> {
    let t = f
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    GpuTensor::upload(gpu, name, t.ty, t.row_len(), t.n_rows(), f.tensor_data(t))
        .map_err(ModelError::from)
}

/// A fused matrix (`attn_qkv`, Phi-3's gate+up `ffn_up`) as its parts, each a matrix of
/// its rows: in one buffer when the parts end on bindable offsets (so a decode step
/// reads them with one dispatch, as a stack), else one upload each.
fn fused(
    gpu: &Gpu,
    f: &GgufFile,
    name: &str,
    parts: &[(&'static str, usize)],
) -> Result<Vec<GpuTensor>, ModelError> {
    let t = f
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    let cols = t.row_len();
    let bad = |why: &str| ModelError::BadTensor {
        name: name.to_string(),
        why: why.to_string(),
    };
    let row_bytes =
        t.ty.bytes_for(cols)
            .ok_or_else(|| bad("rows are not whole blocks"))?;
    let data = f.tensor_data(t);
    let mut slices = Vec::with_capacity(parts.len());
    let mut at = 0usize;
    for &(part, rows) in parts {
        let n = (row_bytes * rows as u64) as usize;
        let bytes = data
            .get(at..at + n)
            .ok_or_else(|| bad("shorter than its parts"))?;
        slices.push((format!("{name}:{part}"), rows as u64, bytes));
        at += n;
    }
    let stack: Vec<(&str, u64, &[u8])> = slices.iter().map(|s| (s.0.as_str(), s.1, s.2)).collect();
    if let Some(v) = GpuTensor::upload_stack(gpu, t.ty, cols, &stack)? {
        return Ok(v);
    }
    stack
        .iter()
        .map(|&(n, rows, d)| {
            GpuTensor::upload(gpu, n, t.ty, cols, rows, d).map_err(ModelError::from)
        })
        .collect()
}

/// Weights a decode step reads with one dispatch, in buffer order: a gated FFN's gate
/// then up (the matvec's gated pair), an attention's q, k then v (one matvec with three
/// outputs).
const STACKS: [&[&str]; 2] = [
    &["ffn_gate.weight", "ffn_up.weight"],
    &["attn_q.weight", "attn_k.weight", "attn_v.weight"],
];

/// The full names of each stack (`STACKS`) tensor `name` belongs to (its block's).
fn stacks_of(name: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    STACKS.iter().filter_map(move |stack| {
        let base = stack.iter().find_map(|s| name.strip_suffix(s))?;
        Some(stack.iter().map(|s| format!("{base}{s}")).collect())
    })
}

/// The type two stacked tensors of types `a` and `b` take: their own where they agree,
/// Q8_0 where both are 32-element types that widen to it exactly (`widen_to_q8_0`:
/// Q4_0, Q5_0 beside Q8_0 or each other), else none (they do not stack).
fn stack_type(a: GgmlType, b: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    let widens = |t| matches!(t, Q4_0 | Q5_0 | Q8_0);
    match (a, b) {
        _ if a == b => Some(a),
        _ if widens(a) && widens(b) => Some(Q8_0),
        _ => None,
    }
}

/// The longest leading run of `names` (at least two) that exist with one row length and
/// types that stack (`stack_type`), and the type they are uploaded as; `None` where
/// fewer than two do.
fn stack_run(f: &GgufFile, names: &[String]) -> Option<(usize, GgmlType)> {
    let mut run: Option<(usize, GgmlType, u64)> = None;
    for name in names {
        let Some(t) = f.tensor(name) else { break };
        run = match run {
            None => Some((1, t.ty, t.row_len())),
            Some((n, ty, cols)) => match stack_type(ty, t.ty) {
                Some(ty) if t.row_len() == cols => Some((n + 1, ty, cols)),
                _ => break,
            },
        };
    }
    run.filter(|r| r.0 >= 2).map(|(n, ty, _)| (n, ty))
}

/// The type tensor `name` of `f` is uploaded as: its stack's (`stack_run`) where it is
/// in one, else its own. What the memory plan counts.
pub fn upload_type(f: &GgufFile, name: &str, ty: GgmlType) -> GgmlType {
    for names in stacks_of(name) {
        if let Some((n, t)) = stack_run(f, &names) {
            if names[..n].iter().any(|x| x == name) {
                return t;
            }
        }
    }
    ty
}

/// Uploads the longest leading run of `names` that stacks (`stack_run`) into one buffer
/// (see `GpuTensor::upload_stack`), parts of another type widened to the stack's;
/// `None` leaves them to `matrix`. Gemma 3 270M's q and k (Q5_0) stack with its v
/// (Q8_0) as Q8_0 in the layers where the types differ: one decode dispatch for the
/// three instead of two, for 1.55x the bytes of q and k (values unchanged).
fn matrix_stack(
    gpu: &Gpu,
    f: &GgufFile,
    names: &[String],
) -> Result<Option<Vec<GpuTensor>>, ModelError> {
    let Some((n, ty)) = stack_run(f, names) else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(n);
    for name in &names[..n] {
        let t = f
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
        let data = f.tensor_data(t);
        let data = match t.ty == ty {
            true => Cow::Borrowed(data),
            false => {
                Cow::Owned(
                    widen_to_q8_0(t.ty, data).ok_or_else(|| ModelError::BadTensor {
                        name: name.clone(),
                        why: format!("{} data that is not whole blocks", t.ty),
                    })?,
                )
            }
        };
        parts.push((name.as_str(), t.row_len(), t.n_rows(), data));
    }
    let cols = parts[0].1;
    let parts: Vec<(&str, u64, &[u8])> = parts.iter().map(|p| (p.0, p.2, &p.3[..])).collect();
    GpuTensor::upload_stack(gpu, ty, cols, &parts).map_err(ModelError::from)
}

/// Uploads a small float tensor (norm weight, bias) as plain f32.
fn vector(gpu: &Gpu, f: &GgufFile, name: &str) -> Result<wgpu::Buffer, ModelError> {
    let t = f
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    let v = dequantize_to_vec(t.ty, f.tensor_data(t)).map_err(|e| ModelError::BadTensor {
        name: name.to_string(),
        why: e.to_string(),
    })?;
    Ok(gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::cast_slice(&v),
            // UNIFORM: the CPU class's matvecs read a sandwich's norm weights through
            // uniform bindings (`matvec::Sandwich`).
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        }))
}
