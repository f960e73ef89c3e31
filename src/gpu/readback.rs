//! Reading results back from the GPU (tests, benches, the sampled token).

use super::{Gpu, GpuError};

/// Copies `len` f32 values starting at element `offset` of `src` back to the CPU.
/// `src` needs `COPY_SRC` usage. Blocks until the GPU is done (native), or awaits (wasm).
pub async fn read_f32(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    len: u64,
) -> Result<Vec<f32>, GpuError> {
    let bytes = len * 4;
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset * 4, &staging, 0, bytes);
    gpu.submit([enc.finish()]);
    let view = map_read(gpu, &staging, bytes).await?;
    Ok(bytemuck::cast_slice::<u8, f32>(&view).to_vec())
}

/// Maps the first `bytes` of `staging` (the target of an already submitted copy) and
/// copies them out, then unmaps. Blocks until the GPU is done (native), or awaits (wasm).
pub async fn map_read(gpu: &Gpu, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
    map_read_after(gpu, staging, bytes, None).await
}

/// `map_read` of a copy made by submission `after`: natively it waits for that
/// submission only, so work submitted since keeps the GPU busy meanwhile (`None`: all).
pub async fn map_read_after(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
    after: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>, GpuError> {
    let (tx, rx) = futures::channel::oneshot::channel();
    staging
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.wait_for(after)?;
    #[cfg(target_arch = "wasm32")]
    let _ = (gpu, after);
    rx.await
        .map_err(|_| GpuError::Runtime("readback cancelled".into()))?
        .map_err(|e| GpuError::Runtime(format!("readback map failed: {e}")))?;
    let out = staging
        .slice(..bytes)
        .get_mapped_range()
        .map_err(|e| GpuError::Runtime(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(out)
}
