//! Repetition, presence and frequency penalties over a window of recent tokens, applied
//! in place to the logits on the GPU so the vocabulary never leaves it. Shader:
//! `penalties.wgsl`.

use super::params::ShaderParams;
use super::{build_dispatch, grid, to_u32, Dispatch, View};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the penalties kernel (one invocation per window entry).
pub const WORKGROUP: u32 = 64;

params! {
    @binding(3)
    pub(crate) struct Params {
        x_offset: u32,
        vocab: u32,
        max_ids: u32,
        _pad: u32,
    }
}

params! {
    @binding(4)
    pub(crate) struct Window {
        n_ids: u32,
        repeat: f32,
        presence: f32,
        frequency: f32,
    }
}

/// Penalties on `logits[..vocab]` for up to `max_ids` distinct tokens, set per step.
pub struct Penalties {
    /// The one dispatch.
    pub dispatches: Vec<Dispatch>,
    vocab: u32,
    max_ids: u32,
    /// (id, count) pairs, written by `set`.
    ids: wgpu::Buffer,
    /// The `Window` uniform, written by `set`.
    window: wgpu::Buffer,
}

impl Penalties {
    /// Builds the dispatch and its buffers; the window starts empty (a no-op).
    pub fn new(gpu: &Gpu, logits: View, vocab: u32, max_ids: u32) -> Result<Self, GpuError> {
        if vocab == 0 || max_ids == 0 {
            return Err(GpuError::Runtime(format!(
                "penalties: vocab {vocab}, max ids {max_ids} (both must be at least 1)"
            )));
        }
        logits.check("penalties logits", vocab as u64)?;
        let x_offset = to_u32("penalties offset", logits.offset + vocab as u64)? - vocab;
        let ids = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("penalties ids"),
            size: max_ids as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let window = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("penalties window"),
            size: std::mem::size_of::<Window>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let p = Params {
            x_offset,
            vocab,
            max_ids,
            _pad: 0,
        };
        let key = key();
        let (gx, gy) = grid(gpu, max_ids.div_ceil(WORKGROUP));
        let d = build_dispatch(
            gpu,
            &key,
            key.label(),
            &[(1, logits.buffer), (2, &ids), (Window::BINDING, &window)],
            &p,
            (gx, gy, 1),
        )?;
        Ok(Self {
            dispatches: vec![d],
            vocab,
            max_ids,
            ids,
            window,
        })
    }

    /// Queues the window (distinct ids with their counts) and the penalty strengths for
    /// the next `encode`d work; creates nothing.
    pub fn set(
        &self,
        gpu: &Gpu,
        window: &[(u32, u32)],
        repeat: f32,
        presence: f32,
        frequency: f32,
    ) -> Result<(), GpuError> {
        if window.len() > self.max_ids as usize {
            return Err(GpuError::Runtime(format!(
                "penalties: {} ids in the window, built for at most {}",
                window.len(),
                self.max_ids
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(window.len());
        for &(id, _) in window {
            if id >= self.vocab || !seen.insert(id) {
                return Err(GpuError::Runtime(format!(
                    "penalties: token id {id} is repeated or not below the vocabulary size {}",
                    self.vocab
                )));
            }
        }
        if !(repeat > 0.0 && repeat.is_finite() && presence.is_finite() && frequency.is_finite()) {
            return Err(GpuError::Runtime(format!(
                "penalties: repeat {repeat} (must be finite and > 0), presence {presence}, frequency {frequency} (must be finite)"
            )));
        }
        let pairs: Vec<[u32; 2]> = window.iter().map(|&(i, c)| [i, c]).collect();
        if !pairs.is_empty() {
            gpu.queue
                .write_buffer(&self.ids, 0, bytemuck::cast_slice(&pairs));
        }
        let w = Window {
            n_ids: window.len() as u32,
            repeat,
            presence,
            frequency,
        };
        gpu.queue
            .write_buffer(&self.window, 0, bytemuck::bytes_of(&w));
        Ok(())
    }
}

fn key() -> PipelineKey {
    PipelineKey {
        op: "penalties",
        variant: ShaderVariant::new(WORKGROUP),
    }
}

/// Every variant of the op, for validation tests.
pub fn variants() -> Vec<PipelineKey> {
    vec![key()]
}

/// CPU twin: the same penalties on `logits`; ids past its end are ignored.
pub fn cpu(logits: &mut [f32], window: &[(u32, u32)], repeat: f32, presence: f32, frequency: f32) {
    for &(id, c) in window {
        if let Some(l) = logits.get_mut(id as usize) {
            let v = if *l > 0.0 { *l / repeat } else { *l * repeat };
            *l = v - (c as f32 * frequency + if c > 0 { presence } else { 0.0 });
        }
    }
}

impl super::Op for Penalties {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
