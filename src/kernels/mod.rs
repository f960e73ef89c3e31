//! Host side of each shader: its parameter struct, bindings and dispatch geometry. An op
//! is built once (pipelines and bind groups created up front) and then only encoded.

pub mod get_rows;
pub mod matmul;
pub mod matvec;

pub use get_rows::GetRows;
pub use matmul::MatMul;
pub use matvec::MatVec;

use crate::gpu::{Gpu, GpuError, GpuTensor, PipelineKey, ShaderVariant};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// One recorded dispatch: pipeline, bind group and workgroup counts.
pub struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    /// The op's uniform parameters, kept with the bind group that reads them.
    _params: wgpu::Buffer,
    workgroups: (u32, u32, u32),
    /// Label for profiles, e.g. `matvec_q4_k_sg_wg64 [shard 1/2]`.
    pub label: String,
}

impl Dispatch {
    /// Records this dispatch into a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let (x, y, z) = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Records `ops` into one compute pass of a new encoder and submits it.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.encode(&mut pass);
        }
    }
    gpu.queue.submit([enc.finish()]);
}

/// Splits `n` workgroups into an (x, y) grid within the per-dimension limit; kernels
/// recover the linear index with `wg_index`.
fn grid(gpu: &Gpu, n: u32) -> (u32, u32) {
    let max = gpu.limits.max_compute_workgroups_per_dimension.max(1);
    if n <= max {
        (n.max(1), 1)
    } else {
        (max, n.div_ceil(max))
    }
}

/// A storage buffer of f32 with an element offset, as ops bind it.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The buffer (bound whole; the offset travels in the params).
    pub buffer: &'a wgpu::Buffer,
    /// Offset in f32 elements.
    pub offset: u64,
}

impl<'a> View<'a> {
    /// The whole buffer from element 0.
    pub fn of(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }

    fn check(&self, what: &str, len: u64) -> Result<(), GpuError> {
        let need = (self.offset + len) * 4;
        if need > self.buffer.size() {
            return Err(GpuError::Runtime(format!(
                "{what}: needs {need} bytes but the buffer has {}",
                self.buffer.size()
            )));
        }
        Ok(())
    }
}

/// Common per-shard setup of weight kernels: pipeline and one bind group per shard.
fn weight_dispatches<P: bytemuck::Pod>(
    gpu: &Gpu,
    op: &'static str,
    w: &GpuTensor,
    workgroup: u32,
    inputs: [&wgpu::Buffer; 2],
    mut params: impl FnMut(u64, u64) -> (P, (u32, u32, u32)),
) -> Result<Vec<Dispatch>, GpuError> {
    let key = PipelineKey {
        op,
        variant: ShaderVariant {
            dtype: Some(w.ty),
            subgroups: op == "matvec" && gpu.features.subgroups,
            workgroup,
        },
    };
    let pipeline = gpu.pipeline(&key)?;
    let layout = pipeline.get_bind_group_layout(0);
    let n = w.shards.len();
    let mut out = Vec::with_capacity(n);
    for (i, shard) in w.shards.iter().enumerate() {
        let (p, workgroups) = params(shard.row_start, shard.rows);
        let params = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(op),
                contents: bytemuck::bytes_of(&p),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(op),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: shard.buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: inputs[0].as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: inputs[1].as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        let label = if n > 1 {
            format!("{} [{} shard {}/{n}]", key.label(), w.name, i + 1)
        } else {
            format!("{} [{}]", key.label(), w.name)
        };
        out.push(Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            _params: params,
            workgroups,
            label,
        });
    }
    Ok(out)
}

fn to_u32(what: &str, v: u64) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| {
        GpuError::Runtime(format!(
            "{what} = {v} exceeds the 32-bit index range of the kernels"
        ))
    })
}
