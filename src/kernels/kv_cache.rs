//! The per-layer KV cache: two GPU buffers (K and V) of `rows` positions by `kv_dim`
//! values, each stored as one [`KvType`]: f16 by default when the device has shader-f16
//! (half the memory and bandwidth of decode attention), f32 otherwise, or q8_0 (`--kv-type
//! q8_0`, about half of f16 again). Written by `RopeKv` (and `KvAppend`), read by the
//! attention ops.

use crate::gpu::{Gpu, GpuError};

/// How the cache stores K and V (llama.cpp's `--cache-type-k/v`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// 4 bytes a value.
    F32,
    /// 2 bytes a value (needs shader-f16).
    F16,
    /// llama.cpp's Q8_0 per 32 values of a head: 32 signed bytes `q` and one f16 scale
    /// `d`, the value being `q * d` (34 bytes per 32 values). On the GPU each head of a
    /// row is `head_dim / 4` words of four bytes (value `4w + i` in byte `i` of word
    /// `w`), then its scales, two f16 to a word (block `b` in half `b % 2` of word
    /// `b / 2`). Needs `head_dim` a multiple of 32.
    Q8_0,
}

impl KvType {
    /// The type a cache takes when none is asked for: f16 where the device has
    /// shader-f16, else f32.
    pub fn default_for(shader_f16: bool) -> Self {
        if shader_f16 {
            KvType::F16
        } else {
            KvType::F32
        }
    }

    /// The type named `s` (`f32`, `f16`, `q8_0`), as `--kv-type` takes it.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(format!(
                "unknown KV cache type {s:?} (expected f32, f16 or q8_0)"
            )),
        }
    }

    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Why a cache of this type cannot hold heads of `head_dim` on a device with (or
    /// without) shader-f16; None when it can.
    pub fn unsupported(self, head_dim: usize, shader_f16: bool) -> Option<String> {
        match self {
            KvType::F16 if !shader_f16 => Some(
                "an f16 KV cache needs the shader-f16 feature, which this adapter lacks (use \
                 --kv-type f32 or q8_0)"
                    .into(),
            ),
            KvType::Q8_0 if head_dim == 0 || !head_dim.is_multiple_of(32) => Some(format!(
                "a q8_0 KV cache needs a head width that is a multiple of 32, not {head_dim}"
            )),
            _ => None,
        }
    }

    /// 32-bit words of one q8_0 head of `head_dim` values: the quants, then the scales.
    pub fn q8_head_words(head_dim: usize) -> usize {
        head_dim / 4 + (head_dim / 32).div_ceil(2)
    }

    /// Bytes of one cached row (position) of `kv_dim` values in heads of `head_dim`.
    pub fn row_bytes(self, kv_dim: usize, head_dim: usize) -> u64 {
        match self {
            KvType::F32 => 4 * kv_dim as u64,
            KvType::F16 => 2 * kv_dim as u64,
            KvType::Q8_0 => {
                let heads = kv_dim / head_dim.max(1);
                4 * (heads * Self::q8_head_words(head_dim)) as u64
            }
        }
    }

    /// `row` (a cached row's values, whole heads) as the cache stores them, read back:
    /// f16-rounded, q8_0-quantized per 32 values, or unchanged.
    pub fn round(self, row: &mut [f32]) {
        match self {
            KvType::F32 => {}
            KvType::F16 => {
                for x in row.iter_mut() {
                    *x = half::f16::from_f32(*x).to_f32();
                }
            }
            KvType::Q8_0 => {
                for block in row.chunks_mut(32) {
                    let (d, q) = q8_block(block);
                    for (x, q) in block.iter_mut().zip(q) {
                        *x = q as f32 * d;
                    }
                }
            }
        }
    }

    /// The bytes of `rows` (whole rows of `kv_dim` values in heads of `head_dim`) in the
    /// GPU layout, padded to 4 bytes: what the kernels write, for tests that fill a cache.
    pub fn encode(self, rows: &[f32], kv_dim: usize, head_dim: usize) -> Vec<u8> {
        let mut out: Vec<u8> = match self {
            KvType::F32 => bytemuck::cast_slice(rows).to_vec(),
            KvType::F16 => rows
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            KvType::Q8_0 => {
                let mut out = Vec::new();
                for row in rows.chunks(kv_dim) {
                    for head in row.chunks(head_dim) {
                        let blocks: Vec<(f32, [i8; 32])> = head.chunks(32).map(q8_block).collect();
                        for (_, q) in &blocks {
                            out.extend(q.iter().map(|b| *b as u8));
                        }
                        for pair in blocks.chunks(2) {
                            for i in 0..2 {
                                let d = pair.get(i).map_or(0.0, |b| b.0);
                                out.extend(half::f16::from_f32(d).to_le_bytes());
                            }
                        }
                    }
                }
                out
            }
        };
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// The values of `rows` rows stored in `bytes` (the GPU layout), read back as f32.
    pub fn decode(self, bytes: &[u8], rows: usize, kv_dim: usize, head_dim: usize) -> Vec<f32> {
        match self {
            KvType::F32 => bytemuck::cast_slice::<u8, f32>(&bytes[..rows * kv_dim * 4]).to_vec(),
            KvType::F16 => bytes[..rows * kv_dim * 2]
                .chunks(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            KvType::Q8_0 => {
                let hw = 4 * Self::q8_head_words(head_dim);
                let mut out = Vec::with_capacity(rows * kv_dim);
                for head in bytes.chunks(hw).take(rows * (kv_dim / head_dim)) {
                    let (q, s) = head.split_at(head_dim);
                    for (i, &b) in q.iter().enumerate() {
                        let d = &s[2 * (i / 32)..];
                        let d = half::f16::from_le_bytes([d[0], d[1]]).to_f32();
                        out.push(b as i8 as f32 * d);
                    }
                }
                out
            }
        }
    }
}

/// llama.cpp's Q8_0 rounding of up to 32 values: the scale `amax / 127` (stored as f16)
/// and each value times its inverse rounded half away from zero.
fn q8_block(x: &[f32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; 32];
    for (q, v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    (half::f16::from_f32(d).to_f32(), q)
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// K and V of one layer: `rows` rows of `kv_dim` values (heads side by side). Unpaged,
/// `slots` sequences of `capacity` positions each lie slot after slot (row
/// `s * capacity + p` is position `p` of slot `s`); paged, the rows are a pool of pages
/// that the step's page tables map positions to (`lib/step.wgsl`, `cache_row`).
pub struct KvCache {
    /// Keys, `rows * kv_dim` elements.
    pub k: wgpu::Buffer,
    /// Values, same layout as `k`.
    pub v: wgpu::Buffer,
    /// Positions one sequence may hold.
    pub capacity: u32,
    /// Rows in the buffers.
    pub rows: u32,
    /// Values per position: `n_kv_heads * head_dim`.
    pub kv_dim: u32,
    /// Values per head (q8_0 blocks never straddle heads).
    pub head_dim: u32,
    /// How K and V are stored.
    pub kind: KvType,
}

impl KvCache {
    /// Allocates a zeroed cache of the device's default type. Fails when one buffer
    /// would exceed the device's largest storage binding.
    pub fn new(gpu: &Gpu, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        Self::with_slots(gpu, 1, capacity, kv_dim)
    }

    /// A cache of `slots` sequences of `capacity` positions each (batched decoding).
    pub fn with_slots(gpu: &Gpu, slots: u32, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        Self::paged(gpu, slots as u64 * capacity as u64, capacity, kv_dim)
    }

    /// A cache of `rows` rows (a pool of pages) for sequences of at most `capacity`
    /// positions, of the device's default type.
    pub fn paged(gpu: &Gpu, rows: u64, capacity: u32, kv_dim: u32) -> Result<Self, GpuError> {
        let kind = KvType::default_for(gpu.features.shader_f16);
        Self::typed(gpu, kind, rows, capacity, (kv_dim, kv_dim))
    }

    /// A cache of `kind` of `rows` rows for sequences of at most `capacity` positions,
    /// rows of `kv_dim` values in heads of `head_dim` (`dims`).
    pub fn typed(
        gpu: &Gpu,
        kind: KvType,
        rows: u64,
        capacity: u32,
        (kv_dim, head_dim): (u32, u32),
    ) -> Result<Self, GpuError> {
        if capacity == 0 || kv_dim == 0 || rows == 0 || head_dim == 0 {
            return Err(GpuError::Runtime(format!(
                "KV cache: capacity {capacity}, kv_dim {kv_dim}, head_dim {head_dim} and rows \
                 {rows} must all be positive"
            )));
        }
        if !kv_dim.is_multiple_of(head_dim) {
            return Err(GpuError::Runtime(format!(
                "KV cache: kv_dim {kv_dim} is not whole heads of {head_dim}"
            )));
        }
        if let Some(why) = kind.unsupported(head_dim as usize, gpu.features.shader_f16) {
            return Err(GpuError::Runtime(why));
        }
        let row_bytes = kind.row_bytes(kv_dim as usize, head_dim as usize);
        let each = (rows * row_bytes).next_multiple_of(4);
        if each > gpu.max_binding {
            return Err(GpuError::Runtime(format!(
                "KV cache of {rows} positions x {kv_dim} values needs {each} bytes \
                 per K/V buffer, above this device's largest storage binding ({} bytes); use \
                 at most {} positions in all",
                gpu.max_binding,
                gpu.max_binding / row_bytes
            )));
        }
        // Kernels index elements with u32.
        if rows * kv_dim as u64 > u32::MAX as u64 {
            return Err(GpuError::Runtime(format!(
                "KV cache of {rows} positions x {kv_dim} values exceeds the 32-bit index range"
            )));
        }
        let buffer = |label| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: each,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        Ok(Self {
            k: buffer("kv cache k"),
            v: buffer("kv cache v"),
            capacity,
            rows: rows as u32,
            kv_dim,
            head_dim,
            kind,
        })
    }

    /// Bytes of K and V together for an f16 (else f32) cache (each rounded up to 4 bytes,
    /// as storage bindings need).
    pub fn bytes(capacity: u32, kv_dim: u32, f16: bool) -> u64 {
        let elem = if f16 { 2 } else { 4 };
        2 * (capacity as u64 * kv_dim as u64 * elem).next_multiple_of(4)
    }

    /// Whether K and V are `array<f16>`.
    pub fn f16(&self) -> bool {
        self.kind == KvType::F16
    }

    /// Bytes of one row of K (or V).
    pub fn row_bytes(&self) -> u64 {
        self.kind
            .row_bytes(self.kv_dim as usize, self.head_dim as usize)
    }

    /// A row's length in the units the kernels index the buffers by: values, or 32-bit
    /// words for q8_0.
    pub fn row_units(&self) -> u32 {
        match self.kind {
            KvType::Q8_0 => (self.row_bytes() / 4) as u32,
            _ => self.kv_dim,
        }
    }

    /// The cache's shader switches: `F16` for an f16 cache (the variant's `f16` flag),
    /// the define `Q8` for q8_0.
    pub fn q8(&self) -> bool {
        self.kind == KvType::Q8_0
    }

    /// Checks that `n_kv_heads * head_dim` is this cache's row width.
    pub(crate) fn check_dim(
        &self,
        what: &str,
        n_kv_heads: u32,
        head_dim: u32,
    ) -> Result<(), GpuError> {
        if self.q8() && head_dim != self.head_dim {
            return Err(GpuError::Runtime(format!(
                "{what}: head_dim {head_dim} != the q8_0 cache's head width {}",
                self.head_dim
            )));
        }
        if n_kv_heads as u64 * head_dim as u64 != self.kv_dim as u64 {
            return Err(GpuError::Runtime(format!(
                "{what}: {n_kv_heads} kv heads x head_dim {head_dim} != the cache's kv_dim {}",
                self.kv_dim
            )));
        }
        Ok(())
    }
}
