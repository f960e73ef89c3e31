//! A model's weights on the GPU: matrices as raw quantized blocks (sharded when large),
//! norm weights and biases as plain f32 vectors. Uploaded once at load.

use super::{ModelConfig, ModelError};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuTensor};
use crate::quant::dequantize_to_vec;
use wgpu::util::DeviceExt;

/// One transformer block's weights.
pub struct LayerWeights {
    /// RMSNorm weight before attention `[hidden]`.
    pub attn_norm: wgpu::Buffer,
    /// Query projection `[hidden] -> [q_dim]`.
    pub wq: GpuTensor,
    /// Key projection `[hidden] -> [kv_dim]`.
    pub wk: GpuTensor,
    /// Value projection `[hidden] -> [kv_dim]`.
    pub wv: GpuTensor,
    /// Biases of q, k, v (Qwen 2).
    pub bias: Option<[wgpu::Buffer; 3]>,
    /// Per-head RMSNorm weights of q and k `[head_dim]` (Gemma 3, Qwen 3).
    pub qk_norm: Option<[wgpu::Buffer; 2]>,
    /// Attention output projection `[q_dim] -> [hidden]`.
    pub wo: GpuTensor,
    /// Norm after attention, before the residual add (Gemma 3).
    pub post_attn_norm: Option<wgpu::Buffer>,
    /// RMSNorm weight before the FFN `[hidden]`.
    pub ffn_norm: wgpu::Buffer,
    /// FFN gate projection `[hidden] -> [ffn]`.
    pub gate: GpuTensor,
    /// FFN up projection `[hidden] -> [ffn]`.
    pub up: GpuTensor,
    /// FFN down projection `[ffn] -> [hidden]`.
    pub down: GpuTensor,
    /// Norm after the FFN, before the residual add (Gemma 3).
    pub post_ffn_norm: Option<wgpu::Buffer>,
}

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
            let p = |s: &str| format!("blk.{il}.{s}");
            let bias = if cfg.qkv_bias {
                Some([
                    vec(&p("attn_q.bias"))?,
                    vec(&p("attn_k.bias"))?,
                    vec(&p("attn_v.bias"))?,
                ])
            } else {
                None
            };
            let qk_norm = if cfg.qk_norm {
                Some([
                    vec(&p("attn_q_norm.weight"))?,
                    vec(&p("attn_k_norm.weight"))?,
                ])
            } else {
                None
            };
            let (post_attn_norm, post_ffn_norm) = if cfg.post_norms {
                (
                    Some(vec(&p("post_attention_norm.weight"))?),
                    Some(vec(&p("post_ffw_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            layers.push(LayerWeights {
                attn_norm: vec(&p("attn_norm.weight"))?,
                wq: mat(&p("attn_q.weight"))?,
                wk: mat(&p("attn_k.weight"))?,
                wv: mat(&p("attn_v.weight"))?,
                bias,
                qk_norm,
                wo: mat(&p("attn_output.weight"))?,
                post_attn_norm,
                ffn_norm: vec(&p("ffn_norm.weight"))?,
                gate: mat(&p("ffn_gate.weight"))?,
                up: mat(&p("ffn_up.weight"))?,
                down: mat(&p("ffn_down.weight"))?,
                post_ffn_norm,
            });
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
