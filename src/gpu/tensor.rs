//! Weights on the GPU: the on-device block layout, repacking at upload, and row shards.
//!
//! Several block types are not a multiple of 4 bytes long (18, 22, 34, 110, 210), but WGSL
//! reads storage as `array<u32>`. Rather than decode at unaligned offsets on every read,
//! upload pads each such block by 2 bytes so every field the decoders read as a word is
//! word-aligned: in front when the block starts with its f16 scale (Q4_0, Q5_0, Q8_0,
//! IQ4_NL), behind when it ends with it (Q3_K, Q6_K). Float tensors are stored as
//! 4-element groups with each row zero-padded to a multiple of 4 elements.

use super::{Gpu, GpuError};
use crate::quant::GgmlType;

/// Bytes repacked per step while filling a mapped buffer.
const REPACK_CHUNK: u64 = 4 << 20;

/// How one block type sits in GPU memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    /// Elements per GPU block (4 for float types, the block size otherwise).
    pub block_elems: u32,
    /// u32 words per GPU block, padding included.
    pub block_words: u32,
    /// Zero bytes placed before the file's block bytes.
    pub pad_front: u32,
}

/// The GPU layout of `ty`, or `None` for types without a GPU decoder (Q8_K).
pub fn gpu_layout(ty: GgmlType) -> Option<GpuLayout> {
    use GgmlType::*;
    let (pad_front, pad_back) = match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => (2, 0),
        Q3_K | Q6_K => (0, 2),
        Q8_K => return None,
        _ => (0, 0),
    };
    if ty.is_float() {
        let words = (4 * ty.block_bytes() / 4) as u32;
        return Some(GpuLayout {
            block_elems: 4,
            block_words: words,
            pad_front: 0,
        });
    }
    let bytes = ty.block_bytes() + pad_front + pad_back;
    debug_assert_eq!(bytes % 4, 0, "{ty} GPU block not word-aligned");
    Some(GpuLayout {
        block_elems: ty.block_elems() as u32,
        block_words: (bytes / 4) as u32,
        pad_front: pad_front as u32,
    })
}

impl GpuLayout {
    /// u32 words per row of `cols` elements.
    pub fn row_words(&self, cols: u64) -> u64 {
        cols.div_ceil(self.block_elems as u64) * self.block_words as u64
    }
}

/// Repacks `rows` rows of `cols` elements from file layout (`src`) into GPU layout
/// (`dst`, exactly `rows * row_words * 4` bytes).
pub fn repack_rows(
    ty: GgmlType,
    src: &[u8],
    cols: u64,
    rows: u64,
    dst: &mut [u8],
) -> Result<(), String> {
    let layout = gpu_layout(ty).ok_or_else(|| format!("{ty} has no GPU layout"))?;
    let src_row =
        ty.bytes_for(cols)
            .ok_or_else(|| format!("row of {cols} is not whole {ty} blocks"))? as usize;
    let dst_row = (layout.row_words(cols) * 4) as usize;
    if src.len() as u64 != rows * src_row as u64 || dst.len() as u64 != rows * dst_row as u64 {
        return Err(format!(
            "repack: {} source / {} destination bytes for {rows} rows of {cols}",
            src.len(),
            dst.len()
        ));
    }
    if ty.is_float() {
        for (s, d) in src
            .chunks_exact(src_row.max(1))
            .zip(dst.chunks_exact_mut(dst_row.max(1)))
        {
            d[..src_row].copy_from_slice(s);
            d[src_row..].fill(0);
        }
        return Ok(());
    }
    let (bb, gb, pf) = (
        ty.block_bytes(),
        layout.block_words as usize * 4,
        layout.pad_front as usize,
    );
    for (s, d) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(gb)) {
        d[..pf].fill(0);
        d[pf..pf + bb].copy_from_slice(s);
        d[pf + bb..].fill(0);
    }
    Ok(())
}

/// How a `rows` x `cols` tensor of `ty` splits into row shards of at most `max_binding`
/// bytes each (GPU layout): `(first row, rows)` per shard.
pub fn shard_rows(
    ty: GgmlType,
    cols: u64,
    rows: u64,
    max_binding: u64,
) -> Result<Vec<(u64, u64)>, String> {
    let layout =
        gpu_layout(ty).ok_or_else(|| format!("type {ty} cannot be used as a GPU weight"))?;
    let row_bytes = layout.row_words(cols) * 4;
    let per_shard = max_binding / row_bytes;
    if per_shard == 0 {
        return Err(format!(
            "one row takes {row_bytes} bytes, more than this device's largest binding ({max_binding} bytes)"
        ));
    }
    Ok((0..rows.div_ceil(per_shard))
        .map(|i| (i * per_shard, per_shard.min(rows - i * per_shard)))
        .collect())
}

/// One buffer holding a contiguous range of a tensor's rows.
pub struct Shard {
    /// The GPU buffer (storage, read-only for kernels).
    pub buffer: wgpu::Buffer,
    /// First row of the tensor held here.
    pub row_start: u64,
    /// Rows held here.
    pub rows: u64,
}

/// A 2-D weight on the GPU as raw (repacked) blocks, split into row shards when one
/// binding cannot hold it. Higher-rank tensors are viewed as `rows = product(dims[1..])`.
pub struct GpuTensor {
    /// Tensor name (for errors and profiles).
    pub name: String,
    /// Block type.
    pub ty: GgmlType,
    /// Elements per row (GGUF dim 0).
    pub cols: u64,
    /// Number of rows.
    pub rows: u64,
    /// u32 words per row in GPU layout.
    pub row_words: u64,
    /// Row shards in order; together they cover every row once.
    pub shards: Vec<Shard>,
}

impl GpuTensor {
    /// Uploads `data` (file layout: `rows` rows of `cols` elements of `ty`) once,
    /// repacked and sharded to fit `gpu.max_binding`.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        cols: u64,
        rows: u64,
        data: &[u8],
    ) -> Result<Self, GpuError> {
        let err = |reason: String| GpuError::Tensor {
            name: name.to_string(),
            reason,
        };
        let layout = gpu_layout(ty)
            .ok_or_else(|| err(format!("type {ty} cannot be used as a GPU weight")))?;
        if cols == 0 || rows == 0 {
            return Err(err(format!("empty tensor ({cols} x {rows})")));
        }
        let src_row = ty.bytes_for(cols).ok_or_else(|| {
            err(format!(
                "row length {cols} is not a multiple of the {ty} block size {}",
                ty.block_elems()
            ))
        })?;
        if rows.checked_mul(src_row) != Some(data.len() as u64) {
            return Err(err(format!(
                "{} bytes of data for {rows} rows of {src_row} bytes",
                data.len()
            )));
        }
        let row_words = layout.row_words(cols);
        let row_bytes = row_words * 4;
        let plan = shard_rows(ty, cols, rows, gpu.max_binding).map_err(err)?;
        let mut shards = Vec::with_capacity(plan.len());
        for (row, n) in plan {
            let size = n * row_bytes;
            let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            });
            {
                let mut view = buffer
                    .slice(..)
                    .get_mapped_range_mut()
                    .map_err(|e| err(format!("map failed: {e}")))?;
                // Mapped memory is write-only: repack a few MiB at a time, then copy in.
                let chunk_rows = (REPACK_CHUNK / row_bytes).max(1);
                let mut scratch = Vec::new();
                let mut r = 0;
                while r < n {
                    let m = chunk_rows.min(n - r);
                    let src =
                        &data[((row + r) * src_row) as usize..((row + r + m) * src_row) as usize];
                    scratch.resize((m * row_bytes) as usize, 0);
                    repack_rows(ty, src, cols, m, &mut scratch).map_err(err)?;
                    let at = (r * row_bytes) as usize;
                    view.slice(at..at + scratch.len()).copy_from_slice(&scratch);
                    r += m;
                }
            }
            buffer.unmap();
            shards.push(Shard {
                buffer,
                row_start: row,
                rows: n,
            });
        }
        Ok(Self {
            name: name.to_string(),
            ty,
            cols,
            rows,
            row_words,
            shards,
        })
    }

    /// Bytes of the weights as stored in the file (what a kernel must read).
    pub fn file_bytes(&self) -> u64 {
        self.ty.bytes_for(self.cols).unwrap_or(0) * self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_block_is_word_aligned() {
        for ty in GgmlType::ALL {
            if let Some(l) = gpu_layout(ty) {
                let file_bytes = if ty.is_float() {
                    4 * ty.block_bytes()
                } else {
                    ty.block_bytes()
                };
                let pad = l.block_words as usize * 4 - file_bytes;
                assert!(pad <= 2, "{ty}: {pad} bytes of padding");
            }
        }
    }

    #[test]
    fn float_rows_are_padded_to_groups_of_four() {
        // One row of 3 F16 elements (6 bytes) pads to 4 elements (8 bytes).
        let src: Vec<u8> = (1..=6u8).collect();
        let mut dst = vec![0xAA; 8];
        repack_rows(GgmlType::F16, &src, 3, 1, &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3, 4, 5, 6, 0, 0]);
    }
}
