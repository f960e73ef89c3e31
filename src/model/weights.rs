//! A model's weights on the GPU: matrices as raw quantized blocks (sharded when large),
//! norm weights and biases as plain f32 vectors. Uploaded once at load.

use super::tensors::{load_block, LayerTensors};
use super::{ModelConfig, ModelError};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuTensor};
use crate::quant::dequantize_to_vec;
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
    /// Final RMSNorm weight `[hidden]`.
    pub output_norm: wgpu::Buffer,
    /// RoPE frequency divisors (Llama 3.1+ `rope_freqs.weight`).
    pub rope_freqs: Option<wgpu::Buffer>,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights>,
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
        // A gated FFN's gate and up go into one buffer, gate first, when they can (one
        // dispatch reads both in decode): the first of the two a block asks for uploads
        // both, and the other waits here until asked for (each name is asked once).
        let mut waiting: Option<(String, GpuTensor)> = None;
        let mut block_mat = |name: &str| -> Result<GpuTensor, ModelError> {
            if let Some((n, t)) = waiting.take() {
                if n == name {
                    return Ok(t);
                }
                waiting = Some((n, t));
            }
            let base = name.strip_suffix("ffn_gate.weight");
            let up_base = name.strip_suffix("ffn_up.weight");
            if let (Some(b), None) | (None, Some(b)) = (base, up_base) {
                let (gate, up) = (format!("{b}ffn_gate.weight"), format!("{b}ffn_up.weight"));
                if waiting.is_none() {
                    if let Some((g, u)) = matrix_pair(gpu, f, &gate, &up)? {
                        let (mine, other) = if base.is_some() {
                            (g, (up, u))
                        } else {
                            (u, (gate, g))
                        };
                        waiting = Some(other);
                        return Ok(mine);
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
            layers.push(load_block(cfg, f, il, &mut block_mat, vec)?);
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
            output_norm: vec("output_norm.weight")?,
            rope_freqs: opt_vec("rope_freqs.weight")?,
            layers,
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

/// Uploads `a` and `b` into one buffer (see `GpuTensor::upload_pair`) when both exist
/// with one type and shape and fit one binding; `None` leaves them to `matrix`.
fn matrix_pair(
    gpu: &Gpu,
    f: &GgufFile,
    a: &str,
    b: &str,
) -> Result<Option<(GpuTensor, GpuTensor)>, ModelError> {
    let (Some(ta), Some(tb)) = (f.tensor(a), f.tensor(b)) else {
        return Ok(None);
    };
    if (ta.ty, ta.row_len(), ta.n_rows()) != (tb.ty, tb.row_len(), tb.n_rows()) {
        return Ok(None);
    }
    let data = [f.tensor_data(ta), f.tensor_data(tb)];
    GpuTensor::upload_pair(gpu, [a, b], ta.ty, ta.row_len(), ta.n_rows(), data)
        .map_err(ModelError::from)
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
            usage: wgpu::BufferUsages::STORAGE,
        }))
}
