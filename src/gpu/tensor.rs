//! Weights on the GPU: the on-device block layout, repacking at upload, and row shards.
//!
//! WGSL reads storage as `array<u32>` (or `array<vec4<u32>>`), so blocks are laid out
//! for aligned reads:
//! - **Split rows** for the 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL,
//!   MXFP4, whose E8M0 scale bytes pack four to a word) and
//!   Q6_K: a row of `nb` blocks becomes three planes, the quants of every block (16 or
//!   32 bytes; Q6_K's ql, qh and scales, 208), so each block's quants start on a 16-byte
//!   boundary and a matvec reads them as `vec4<u32>`, then the scales (two f16 d per
//!   word, or one `d | m << 16` word per block), then the Q5 types' `qh` words; the row
//!   is padded to 16 bytes. No byte per block is padding (the file's 18-, 22-, 34- and
//!   210-byte blocks are not word sized). `shaders/lib/split.wgsl` reads it.
//! - **Padded blocks** for the rest: Q3_K (110 bytes) gets 2 bytes behind its closing
//!   f16 scale; the other K-quants and IQ4_XS are word sized already.
//! - Float tensors are stored as 4-element groups with each row zero-padded to a
//!   multiple of 4 elements.

use super::{Gpu, GpuError};
use crate::quant::GgmlType;

/// Bytes repacked per step while filling a mapped buffer.
const REPACK_CHUNK: u64 = 4 << 20;

/// How one block type sits in GPU memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    /// Elements per GPU block (4 for float types, the block size otherwise).
    pub block_elems: u32,
    /// u32 words per GPU block, padding included (0 for split rows).
    pub block_words: u32,
    /// Zero bytes placed before the file's block bytes (padded blocks).
    pub pad_front: u32,
    /// The split-row planes, for the 32-element types.
    pub split: Option<Split>,
}

/// Where a split-row type's fields sit in its file block (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Bytes of quants per block (16 or 32) and their offset in the file block.
    pub quant_bytes: u32,
    pub quant_at: u32,
    /// Whether the block has an f16 m after its d (then one scale word per block).
    pub dm: bool,
    /// Offset of the `qh` word (Q5_0, Q5_1).
    pub qh_at: Option<u32>,
    /// Offset of the f16 d (and m) in the file block.
    pub d_at: u32,
    /// The scale is one E8M0 byte (MXFP4): four to a word in the scale plane.
    pub e8m0: bool,
}

impl Split {
    fn of(ty: GgmlType) -> Option<Self> {
        use GgmlType::*;
        let (quant_bytes, quant_at, dm, qh_at, d_at) = match ty {
            Q4_0 | IQ4_NL => (16, 2, false, None, 0),
            MXFP4 => (16, 1, false, None, 0),
            Q4_1 => (16, 4, true, None, 0),
            Q5_0 => (16, 6, false, Some(2), 0),
            Q5_1 => (16, 8, true, Some(4), 0),
            Q8_0 => (32, 2, false, None, 0),
            // ql, qh and the 16 scales stay together as the "quants"; d follows them.
            Q6_K => (208, 0, false, None, 208),
            _ => return None,
        };
        Some(Self {
            quant_bytes,
            quant_at,
            dm,
            qh_at,
            d_at,
            e8m0: ty == MXFP4,
        })
    }

    /// Words of the quant, scale and qh planes of a row of `nb` blocks.
    fn planes(&self, nb: u64) -> (u64, u64, u64) {
        let scales = if self.dm {
            nb
        } else if self.e8m0 {
            nb.div_ceil(4)
        } else {
            nb.div_ceil(2)
        };
        let qh = if self.qh_at.is_some() { nb } else { 0 };
        (nb * self.quant_bytes as u64 / 4, scales, qh)
    }

    /// Repacks one row of `nb` file blocks (`src`) into `dst` (the row's GPU words).
    fn repack_row(&self, ty: GgmlType, src: &[u8], dst: &mut [u8]) {
        let (bb, qb, qa) = (
            ty.block_bytes(),
            self.quant_bytes as usize,
            self.quant_at as usize,
        );
        let nb = src.len() / bb;
        let (quants, scales, _) = self.planes(nb as u64);
        let (s0, h0) = (4 * quants as usize, 4 * (quants + scales) as usize);
        dst.fill(0);
        for (b, blk) in src.chunks_exact(bb).enumerate() {
            dst[b * qb..(b + 1) * qb].copy_from_slice(&blk[qa..qa + qb]);
            let (scale, d) = (
                if self.dm {
                    4
                } else if self.e8m0 {
                    1
                } else {
                    2
                },
                self.d_at as usize,
            );
            dst[s0 + b * scale..s0 + (b + 1) * scale].copy_from_slice(&blk[d..d + scale]);
            if let Some(at) = self.qh_at {
                let at = at as usize;
                dst[h0 + 4 * b..h0 + 4 * b + 4].copy_from_slice(&blk[at..at + 4]);
            }
        }
    }
}

/// The GPU layout of `ty`, or `None` for types without a GPU decoder (Q8_K).
pub fn gpu_layout(ty: GgmlType) -> Option<GpuLayout> {
    use GgmlType::*;
    if let Some(split) = Split::of(ty) {
        return Some(GpuLayout {
            block_elems: ty.block_elems() as u32,
            block_words: 0,
            pad_front: 0,
            split: Some(split),
        });
    }
    let (pad_front, pad_back) = match ty {
        Q3_K => (0, 2),
        Q8_K => return None,
        _ => (0, 0),
    };
    if ty.is_float() {
        let words = (4 * ty.block_bytes() / 4) as u32;
        return Some(GpuLayout {
            block_elems: 4,
            block_words: words,
            pad_front: 0,
            split: None,
        });
    }
    let bytes = ty.block_bytes() + pad_front + pad_back;
    debug_assert_eq!(bytes % 4, 0, "{ty} GPU block not word-aligned");
    Some(GpuLayout {
        block_elems: ty.block_elems() as u32,
        block_words: (bytes / 4) as u32,
        pad_front: pad_front as u32,
        split: None,
    })
}

impl GpuLayout {
    /// u32 words per row of `cols` elements.
    pub fn row_words(&self, cols: u64) -> u64 {
        let nb = cols.div_ceil(self.block_elems as u64);
        match self.split {
            Some(s) => {
                let (q, sc, qh) = s.planes(nb);
                (q + sc + qh).next_multiple_of(4)
            }
            None => nb * self.block_words as u64,
        }
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
    if let Some(split) = layout.split {
        for (s, d) in src
            .chunks_exact(src_row.max(1))
            .zip(dst.chunks_exact_mut(dst_row.max(1)))
        {
            split.repack_row(ty, s, d);
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

/// One buffer range holding a contiguous range of a tensor's rows.
#[derive(Clone)]
pub struct Shard {
    /// The GPU buffer (storage, read-only for kernels).
    pub buffer: wgpu::Buffer,
    /// Byte offset of the first row in `buffer` (0, or the second of a stacked pair).
    pub offset: u64,
    /// First row of the tensor held here.
    pub row_start: u64,
    /// Rows held here.
    pub rows: u64,
}

/// A 2-D weight on the GPU as raw (repacked) blocks, split into row shards when one
/// binding cannot hold it. Higher-rank tensors are viewed as `rows = product(dims[1..])`.
/// A clone shares the buffers.
#[derive(Clone)]
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
                offset: 0,
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

    /// Bytes of the weights in the file's layout of `ty` (what a kernel must read; a
    /// stack part widened to Q8_0 at load counts as Q8_0).
    pub fn file_bytes(&self) -> u64 {
        self.ty.bytes_for(self.cols).unwrap_or(0) * self.rows
    }

    /// Uploads tensors of one type and row length (a gated FFN's gate and up, or an
    /// attention's q, k and v) into one buffer, each right after the one before, and
    /// returns a view of each; `None` when they do not fit one binding or a part could
    /// not be bound at its offset (the caller then uploads them apart). A kernel may read
    /// neighbours as one tensor through [`GpuTensor::joined`]. `parts` are (name, rows,
    /// file bytes).
    pub fn upload_stack(
        gpu: &Gpu,
        ty: GgmlType,
        cols: u64,
        parts: &[(&str, u64, &[u8])],
    ) -> Result<Option<Vec<Self>>, GpuError> {
        let Some(layout) = gpu_layout(ty) else {
            return Ok(None);
        };
        let (Some(row_bytes), Some(first)) = (ty.bytes_for(cols), parts.first()) else {
            return Ok(None);
        };
        let align = u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(1);
        let gpu_row = layout.row_words(cols) * 4;
        let mut total_rows = 0u64;
        for (i, (_, rows, data)) in parts.iter().enumerate() {
            let fits = row_bytes.checked_mul(*rows) == Some(data.len() as u64);
            // Every part but the last must end on a bindable offset.
            let aligned = i + 1 == parts.len() || (gpu_row * rows).is_multiple_of(align);
            if !fits || !aligned {
                return Ok(None);
            }
            total_rows += rows;
        }
        if gpu_row.saturating_mul(total_rows) > gpu.max_binding {
            return Ok(None);
        }
        let data = parts.iter().map(|p| p.2).collect::<Vec<_>>().concat();
        let all = GpuTensor::upload(gpu, first.0, ty, cols, total_rows, &data)?;
        let Some(shard) = all.shards.first().filter(|_| all.shards.len() == 1) else {
            return Ok(None);
        };
        let mut offset = 0;
        let mut views = Vec::with_capacity(parts.len());
        for (name, rows, _) in parts {
            views.push(Self {
                name: name.to_string(),
                ty,
                cols,
                rows: *rows,
                row_words: all.row_words,
                shards: vec![Shard {
                    buffer: shard.buffer.clone(),
                    offset,
                    row_start: 0,
                    rows: *rows,
                }],
            });
            offset += gpu_row * rows;
        }
        Ok(Some(views))
    }

    /// `self` and `next` as one tensor of both row ranges, when `next`'s rows follow
    /// `self`'s in the same buffer (an [`upload_stack`](Self::upload_stack)).
    pub fn joined(&self, next: &GpuTensor) -> Option<GpuTensor> {
        let (a, b) = match (&self.shards[..], &next.shards[..]) {
            ([a], [b]) => (a, b),
            _ => return None,
        };
        let bytes = self.row_words * 4 * self.rows;
        let same = self.ty == next.ty && self.cols == next.cols && self.row_words == next.row_words;
        (same && a.buffer == b.buffer && b.offset == a.offset + bytes).then(|| Self {
            name: format!("{}+{}", self.name, next.name),
            ty: self.ty,
            cols: self.cols,
            rows: self.rows + next.rows,
            row_words: self.row_words,
            shards: vec![Shard {
                buffer: a.buffer.clone(),
                offset: a.offset,
                row_start: 0,
                rows: self.rows + next.rows,
            }],
        })
    }

    /// The binding of shard `i` (its byte range of the buffer).
    pub fn binding(&self, i: usize) -> wgpu::BindingResource<'_> {
        let s = &self.shards[i];
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &s.buffer,
            offset: s.offset,
            size: std::num::NonZeroU64::new(s.rows * self.row_words * 4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_rows_add_at_most_two_bytes_per_block_and_split_rows_none() {
        for ty in GgmlType::ALL {
            let Some(l) = gpu_layout(ty) else { continue };
            let block_bytes = if ty.is_float() {
                4 * ty.block_bytes() as u64
            } else {
                ty.block_bytes() as u64
            };
            // 64 blocks per row: split rows end on a 16-byte boundary with no padding.
            let cols = 64 * l.block_elems as u64;
            let pad = l.row_words(cols) * 4 - 64 * block_bytes;
            let allowed = if l.split.is_some() { 0 } else { 2 * 64 };
            assert!(pad <= allowed, "{ty}: {pad} bytes of padding per row");
            assert_eq!(l.row_words(cols) % 4, 0, "{ty}: rows not 16-byte aligned");
        }
    }

    #[test]
    fn split_rows_put_quants_scales_and_high_bits_in_planes() {
        // Two Q5_1 blocks: [d d][m m][qh x4][qs x16], bytes numbered by block.
        let block = |b: u8| -> Vec<u8> { (0..24).map(|i| b * 100 + i).collect() };
        let src = [block(0), block(1)].concat();
        let mut dst = vec![0xAA; 4 * gpu_layout(GgmlType::Q5_1).unwrap().row_words(64) as usize];
        repack_rows(GgmlType::Q5_1, &src, 64, 1, &mut dst).unwrap();
        assert_eq!(dst.len(), 48);
        assert_eq!(&dst[..16], &block(0)[8..]);
        assert_eq!(&dst[16..32], &block(1)[8..]);
        assert_eq!(&dst[32..40], &[0, 1, 2, 3, 100, 101, 102, 103]);
        assert_eq!(&dst[40..48], &[4, 5, 6, 7, 104, 105, 106, 107]);
        // Three Q8_0 blocks: two f16 d per scale word, the row padded to 16 bytes.
        let q8 = |b: u8| -> Vec<u8> { (0..34).map(|i| b * 50 + i).collect() };
        let src = [q8(0), q8(1), q8(2)].concat();
        let mut dst = vec![0xAA; 4 * gpu_layout(GgmlType::Q8_0).unwrap().row_words(96) as usize];
        repack_rows(GgmlType::Q8_0, &src, 96, 1, &mut dst).unwrap();
        assert_eq!(dst.len(), 112);
        assert_eq!(&dst[64..96], &q8(2)[2..]);
        assert_eq!(&dst[96..102], &[0, 1, 50, 51, 100, 101]);
        assert!(dst[102..].iter().all(|b| *b == 0));
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
