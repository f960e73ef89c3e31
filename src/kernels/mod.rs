//! Host side of each shader: its parameter struct, bindings and dispatch geometry. An op
//! is built once (pipelines and bind groups created up front) and then only encoded.

// First, so that `params!` is in scope in the kernel modules below.
#[macro_use]
pub mod params;

pub mod add;
pub mod argmax;
pub mod attention_decode;
pub mod attention_prefill;
pub mod gated_act;
pub mod get_rows;
pub mod kv_append;
pub mod kv_cache;
pub mod layer_norm;
pub mod matmul;
pub mod matvec;
pub mod matvec_batch;
pub mod moe;
pub mod penalties;
pub mod pool;
pub mod residual_norm;
pub mod rmsnorm;
pub mod rope;
pub mod rope_kv;
pub mod stream_read;
pub mod topk;

pub use add::{Add, Scale};
pub use argmax::Argmax;
pub use attention_decode::{AttentionDecode, AttnSpec};
pub use attention_prefill::AttentionPrefill;
pub use gated_act::GatedAct;
pub use get_rows::GetRows;
pub use kv_append::KvAppend;
pub use kv_cache::{KvCache, KvType};
pub use layer_norm::{LayerNorm, LayerNormIo};
pub use matmul::MatMul;
pub use matvec::MatVec;
pub use matvec_batch::MatVecBatch;
pub use moe::{ExpertIo, ExpertProj, Gating, MatVecId, MoeGroup, MoeRoute, MoeSum};
pub use penalties::Penalties;
pub use pool::{Pool, PoolStep};
pub use residual_norm::{ResidualNorm, ResidualNormIo};
pub use rmsnorm::{NormOut, RmsNorm};
pub use rope::{Rope, RopeSpec};
pub use rope_kv::{RopeKv, RopeKvIo};
pub use stream_read::StreamRead;
pub use topk::TopK;

use crate::gpu::{Gpu, GpuError, GpuTensor, PipelineKey, ShaderVariant};
use crate::quant::GgmlType;
use params::ShaderParams;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// An amount of work as a function of the step: `c + t·n + k·L + tk·n·L` for a step of
/// `n` tokens leaving `L` positions in the KV cache. Bytes and FLOPs of a dispatch are
/// given this way, so one plan reports right for any chunk length and position.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    /// Fixed part (weights read once per dispatch).
    pub c: f64,
    /// Per token of the step.
    pub t: f64,
    /// Per cached position (K/V read once per dispatch).
    pub k: f64,
    /// Per token and cached position (attention scores).
    pub tk: f64,
    /// The tokens (first, count) of the step the dispatch takes, if not all: `n` is
    /// then those of them the step has (the batched matvec's per-block dispatches).
    pub tokens: Option<(u32, u32)>,
}

impl Work {
    /// The work of a step of `n_tokens` tokens leaving `kv_len` cached positions.
    pub fn at(&self, n_tokens: u32, kv_len: u32) -> f64 {
        let n = match self.tokens {
            Some((first, count)) => n_tokens.saturating_sub(first).min(count),
            None => n_tokens,
        };
        let (n, l) = (n as f64, kv_len as f64);
        self.c + self.t * n + self.k * l + self.tk * n * l
    }

    /// Only a per-token part.
    pub fn per_token(t: f64) -> Self {
        Self {
            t,
            ..Self::default()
        }
    }
}

/// One recorded dispatch: pipeline, bind group and workgroup counts (a clone records
/// the same work: both share the GPU objects).
#[derive(Clone)]
pub struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    /// The op's uniform parameters, kept with the bind group that reads them.
    _params: wgpu::Buffer,
    workgroups: (u32, u32, u32),
    /// Label for profiles, e.g. `matvec_q4_k_sg_wg64 [shard 1/2]`.
    pub label: String,
    /// The kernel: the pipeline's name, e.g. `matvec_q4_k_sg_wg64`.
    pub kind: String,
    /// The problem shape profiles group by, e.g. `1024x640` (rows x cols).
    pub shape: String,
    /// Compulsory memory traffic: each tensor the kernel touches read or written once.
    pub bytes: Work,
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: Work,
}

impl Dispatch {
    /// Records this dispatch into a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let (x, y, z) = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// Sets the shape and the work that profiles report for this dispatch.
    pub(crate) fn costed(mut self, shape: String, bytes: Work, flops: Work) -> Self {
        self.shape = shape;
        self.bytes = bytes;
        self.flops = flops;
        self
    }

    /// This dispatch costed for `count` tokens of the step from `first` (its per-token
    /// work for those only).
    pub(crate) fn for_tokens(mut self, first: u32, count: u32) -> Self {
        self.bytes.tokens = Some((first, count));
        self.flops.tokens = Some((first, count));
        self
    }
}

/// A built op: the dispatches it records, in order.
pub trait Op {
    /// The op's dispatches (one per weight shard, or per pass).
    fn dispatches(&self) -> &[Dispatch];

    /// The dispatches of a step that ends with `kv_len` cached positions (ops that pick a
    /// form by context length override this).
    fn dispatches_at(&self, kv_len: u32) -> &[Dispatch] {
        let _ = kv_len;
        self.dispatches()
    }

    /// The dispatches of a step of `n_tokens` tokens that ends with `kv_len` cached
    /// positions (ops that pick a build by token count override this).
    fn dispatches_for(&self, n_tokens: u32, kv_len: u32) -> &[Dispatch] {
        let _ = n_tokens;
        self.dispatches_at(kv_len)
    }

    /// The dispatches of a batched step of `n_tokens` rows ending at `kv_len`; `apart`
    /// when every row is a different sequence's (its only token in the step), so that no
    /// row depends on another's work within a dispatch (ops that join per-row work then
    /// override this).
    fn dispatches_batch(&self, n_tokens: u32, kv_len: u32, apart: bool) -> &[Dispatch] {
        let _ = apart;
        self.dispatches_for(n_tokens, kv_len)
    }

    /// Records the op's dispatches into a compute pass.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in self.dispatches() {
            d.encode(pass);
        }
    }
}

/// Copies a step records outside its compute pass (before or after it).
pub type Copies<'a> = Option<&'a dyn Fn(&mut wgpu::CommandEncoder)>;

/// How a step's command buffers reach the queue: `Plain` records and submits each; the
/// profiler (`gpu::Profiler`) also times every dispatch.
pub trait Submit {
    /// Records `dispatches` into one command buffer (between the copies `before` and
    /// `after`, if given) and submits it; returns the index of the last submission, to
    /// wait for it alone.
    fn submit(
        &mut self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        before: Copies,
        after: Copies,
    ) -> Result<wgpu::SubmissionIndex, GpuError>;
}

/// Unprofiled submission: one compute pass in one command buffer.
pub struct Plain;

impl Submit for Plain {
    fn submit(
        &mut self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        before: Copies,
        after: Copies,
    ) -> Result<wgpu::SubmissionIndex, GpuError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        if let Some(f) = before {
            f(&mut enc);
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.encode(&mut pass);
            }
        }
        if let Some(f) = after {
            f(&mut enc);
        }
        Ok(gpu.submit([enc.finish()]))
    }
}

/// Records `dispatches` into one compute pass of a new encoder and submits it.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    // Plain submission records and submits; it has no error of its own to report.
    let _ = Plain.submit(gpu, dispatches, None, None);
}

/// The workgroup of the one-workgroup-per-row ops (the norms, rope_kv) on a CPU
/// adapter: one subgroup of lavapipe's 8 lanes. There every workgroup barrier switches
/// between the workgroup's subgroups (coroutines), so a row op in workgroups of 128 or 64
/// spent most of its time switching: Gemma 3's residual + post-norm took 3.84 ms per
/// 512-token prefill step and 38 us per decoded token in workgroups of 128, 1.66 ms and
/// 27 us in workgroups of 8; rope_kv 8.06 ms and 48 us in 64, 4.33 ms and 37 us in 8
/// (`hearth profile MODEL -p 512 -n 16`, 2026-12-03).
pub const CPU_ROW_WORKGROUP: u32 = 8;

thread_local! {
    /// `with_cpu_rows`'s override of `cpu_rows` on this thread.
    static CPU_ROWS: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the row ops built on `gpu` take `CPU_ROW_WORKGROUP`: on CPU adapters (or
/// as `with_cpu_rows` says on this thread).
pub fn cpu_rows(gpu: &Gpu) -> bool {
    CPU_ROWS
        .with(|c| c.get())
        .unwrap_or_else(|| matvec::AdapterClass::of(&gpu.info) == matvec::AdapterClass::Cpu)
}

/// Runs `f` with the row ops built on this thread in their CPU form or not, whatever
/// the adapter (the tests build both forms on one adapter).
pub fn with_cpu_rows<R>(cpu: bool, f: impl FnOnce() -> R) -> R {
    let old = CPU_ROWS.with(|c| c.replace(Some(cpu)));
    let r = f();
    CPU_ROWS.with(|c| c.set(old));
    r
}

/// `CPU_ROW_WORKGROUP` where `cpu_rows`, else `other` (the op's GPU workgroup).
pub fn row_workgroup(gpu: &Gpu, other: u32) -> u32 {
    if cpu_rows(gpu) {
        CPU_ROW_WORKGROUP
    } else {
        other
    }
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

/// The grid for `per_token` workgroups per token over `max_tokens` tokens, flattened
/// token-major; kernels recover (token, group) from `wg_index`.
fn token_grid(
    gpu: &Gpu,
    what: &str,
    per_token: u64,
    max_tokens: u32,
) -> Result<(u32, u32, u32), GpuError> {
    let n = per_token * max_tokens as u64;
    let max = gpu.limits.max_compute_workgroups_per_dimension.max(1) as u64;
    if n == 0 || n > max * max {
        return Err(GpuError::Runtime(format!(
            "{what}: {per_token} workgroups x {max_tokens} tokens do not fit one dispatch"
        )));
    }
    let (x, y) = grid(gpu, n as u32);
    Ok((x, y, 1))
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

    /// Checks that `tokens` rows of `len` elements, `stride` apart, fit the buffer and the
    /// kernels' 32-bit indices; returns the offset as the kernels take it.
    fn check_tokens(
        &self,
        what: &str,
        tokens: u32,
        stride: u64,
        len: u64,
    ) -> Result<u32, GpuError> {
        if tokens == 0 || len == 0 {
            return Err(GpuError::Runtime(format!(
                "{what}: {tokens} tokens of {len} elements (both must be at least 1)"
            )));
        }
        let span = (tokens as u64 - 1) * stride + len;
        self.check(what, span)?;
        to_u32(what, self.offset + span)?;
        Ok(self.offset as u32)
    }
}

/// Token rows of f32 activations, the layout token-parallel ops read and write: each of
/// the step's tokens holds `rows` rows of `width` elements (heads of q, say), and token
/// `t` starts `t * stride` elements after the view's offset. A stride of 0 broadcasts one
/// token's rows to every token (a bias).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// Where token 0 starts.
    pub view: View<'a>,
    /// Elements per row.
    pub width: u32,
    /// Rows per token.
    pub rows: u32,
    /// Elements from one token to the next (0: broadcast).
    pub stride: u32,
}

impl<'a> Rows<'a> {
    /// One row of `width` per token, packed (`[token][width]`).
    pub fn packed(buffer: &'a wgpu::Buffer, width: u32) -> Self {
        Self::heads(buffer, 1, width)
    }

    /// `n` heads of `dim` per token, packed (`[token][n][dim]`).
    pub fn heads(buffer: &'a wgpu::Buffer, n: u32, dim: u32) -> Self {
        Self {
            view: View::of(buffer),
            width: dim,
            rows: n,
            stride: n * dim,
        }
    }

    /// One row of `width`, the same for every token.
    pub fn broadcast(buffer: &'a wgpu::Buffer, width: u32) -> Self {
        Self {
            stride: 0,
            ..Self::packed(buffer, width)
        }
    }

    /// Elements of one token.
    pub fn per_token(&self) -> u64 {
        self.width as u64 * self.rows as u64
    }

    /// Checks that the rows of `tokens` tokens fit the buffer and the kernels' 32-bit
    /// indices, and that tokens do not overlap (unless broadcast); returns the offset as
    /// kernels take it.
    fn check(&self, what: &str, tokens: u32) -> Result<u32, GpuError> {
        let per_token = self.per_token();
        if self.width == 0 || self.rows == 0 {
            return Err(GpuError::Runtime(format!(
                "{what}: width {} x {} rows per token (both must be at least 1)",
                self.width, self.rows
            )));
        }
        if self.stride != 0 && (self.stride as u64) < per_token {
            return Err(GpuError::Runtime(format!(
                "{what}: {} rows of {} per token overlap at token stride {}",
                self.rows, self.width, self.stride
            )));
        }
        let tokens = if self.stride == 0 { 1 } else { tokens };
        self.view
            .check_tokens(what, tokens, self.stride as u64, per_token)
    }
}

/// The step context of a token-parallel op: the uniform it reads the step's token count
/// and position from, and the most tokens a step may hold (its grid is sized for them).
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    /// Most tokens per step.
    pub max: u32,
    /// The step uniform.
    pub step: &'a StepBuffer,
}

/// Binding of the shared per-step uniform (`lib/step.wgsl`) in every kernel that reads it.
pub const STEP_BINDING: u32 = <Step as params::ShaderParams>::BINDING;

/// Most tokens one step may hold: the rows of the `Step` uniform (16 bytes each).
pub const MAX_ROWS: usize = 1024;
/// Page-table entries the `Step` uniform holds (all slots together; 4 bytes each).
pub const MAX_PAGES: usize = 8192;
/// Bytes of the `Step` header before the rows.
const STEP_HEADER: usize = 32;

params! {
    /// What changes between forward passes, written once per step into one uniform that
    /// every position-dependent kernel reads (see `lib/step.wgsl`): the token count and,
    /// per token, its position and the KV-cache slot of its sequence.
    #[derive(Debug, PartialEq, Eq)]
    @binding(8)
    pub struct Step {
        /// Position of the first token of this step (single-sequence steps).
        pub pos: u32,
        /// Tokens in this step (1 for decode; up to the batch size for prefill).
        pub n_tokens: u32,
        /// The longest KV length a token of this step attends (its position + 1).
        pub kv_len: u32,
        /// log2 of the KV page size in positions (paged caches).
        pub page_shift: u32,
        /// Page-table entries per slot; 0: the cache is unpaged (slot after slot).
        pub pages_per_slot: u32,
        /// Padding to 16 bytes.
        pub _pad: [u32; 3],
        /// Per token: (position, KV slot, 0, 0); only the first `n_tokens` are written.
        pub rows: [[u32; 4]; MAX_ROWS],
        /// Page tables, slot after slot, four entries per element (`StepBuffer::write_pages`).
        pub pages: [[u32; 4]; MAX_PAGES / 4],
    }
}

impl Step {
    /// The step processing `n_tokens` tokens of the sequence in slot 0 starting at
    /// position `pos` (rows past [`MAX_ROWS`] are not representable and left out).
    pub fn new(pos: u32, n_tokens: u32) -> Self {
        Self::at(0, pos, n_tokens)
    }

    /// The step processing `n_tokens` tokens of the sequence in KV slot `slot` starting
    /// at position `pos`.
    pub fn at(slot: u32, pos: u32, n_tokens: u32) -> Self {
        let mut s = Self::zeroed(n_tokens);
        s.pos = pos;
        s.kv_len = pos + n_tokens;
        for (t, r) in s.rows.iter_mut().take(n_tokens as usize).enumerate() {
            *r = [pos + t as u32, slot, 0, 0];
        }
        s
    }

    /// A step over `(slot, position)` rows, one per token, each sequence at its own
    /// position (a batched decode step); at most [`MAX_ROWS`] rows are kept.
    pub fn batch(rows: &[(u32, u32)]) -> Self {
        let mut s = Self::zeroed(rows.len() as u32);
        s.pos = rows.first().map_or(0, |r| r.1);
        s.kv_len = rows.iter().map(|r| r.1 + 1).max().unwrap_or(0);
        for (r, &(slot, pos)) in s.rows.iter_mut().zip(rows) {
            *r = [pos, slot, 0, 0];
        }
        s
    }

    fn zeroed(n_tokens: u32) -> Self {
        Self {
            pos: 0,
            n_tokens,
            kv_len: 0,
            page_shift: 0,
            pages_per_slot: 0,
            _pad: [0; 3],
            rows: [[0; 4]; MAX_ROWS],
            pages: [[0; 4]; MAX_PAGES / 4],
        }
    }

    /// The bytes a write must cover: the header and the rows in use.
    fn used_bytes(&self) -> &[u8] {
        let n = (self.n_tokens as usize).min(MAX_ROWS);
        &bytemuck::bytes_of(self)[..STEP_HEADER + 16 * n]
    }
}

/// Refuses an op built for more tokens per step than the `Step` uniform has rows.
pub(crate) fn check_rows(what: &str, tokens: u32) -> Result<(), GpuError> {
    if tokens as usize > MAX_ROWS {
        return Err(GpuError::Runtime(format!(
            "{what}: {tokens} tokens per step exceed the {MAX_ROWS} rows of the step uniform"
        )));
    }
    Ok(())
}

/// The GPU buffer holding the current `Step`.
pub struct StepBuffer {
    /// Uniform buffer of one `Step`.
    pub buffer: wgpu::Buffer,
    /// (page_shift, pages_per_slot) every write carries: (0, 0) for an unpaged cache.
    pub paging: (u32, u32),
}

impl StepBuffer {
    /// Creates the buffer, initialised to `step`.
    pub fn new(gpu: &Gpu, step: Step) -> Self {
        let buffer = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("step"),
                contents: bytemuck::bytes_of(&step),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        Self {
            buffer,
            paging: (0, 0),
        }
    }

    /// Queues a write of `step` (its header, with this buffer's paging, and used rows);
    /// it takes effect for work submitted after it.
    pub fn write(&self, gpu: &Gpu, mut step: Step) {
        (step.page_shift, step.pages_per_slot) = self.paging;
        gpu.queue.write_buffer(&self.buffer, 0, step.used_bytes());
    }

    /// Queues a write of page-table entries `first..first + entries.len()` (indices
    /// past [`MAX_PAGES`] are the caller's bug and left out).
    pub fn write_pages(&self, gpu: &Gpu, first: usize, entries: &[u32]) {
        let n = entries.len().min(MAX_PAGES.saturating_sub(first));
        if n == 0 {
            return;
        }
        let offset = STEP_HEADER + 16 * MAX_ROWS + 4 * first;
        gpu.queue.write_buffer(
            &self.buffer,
            offset as u64,
            bytemuck::cast_slice(&entries[..n]),
        );
    }
}

/// Builds one dispatch: the pipeline of `key`, a bind group over `buffers` (binding,
/// buffer bound whole) plus a fresh uniform holding `params` at its `ShaderParams::BINDING`.
pub fn build_dispatch<P: ShaderParams>(
    gpu: &Gpu,
    key: &PipelineKey,
    label: String,
    buffers: &[(u32, &wgpu::Buffer)],
    params: &P,
    workgroups: (u32, u32, u32),
) -> Result<Dispatch, GpuError> {
    let entries = buffers
        .iter()
        .map(|(binding, b)| (*binding, b.as_entire_binding()))
        .collect();
    build_dispatch_with(gpu, key, label, entries, params, workgroups)
}

/// `build_dispatch` over resources given as bindings (a weight shard's byte range).
fn build_dispatch_with<P: ShaderParams>(
    gpu: &Gpu,
    key: &PipelineKey,
    label: String,
    resources: Vec<(u32, wgpu::BindingResource<'_>)>,
    params: &P,
    workgroups: (u32, u32, u32),
) -> Result<Dispatch, GpuError> {
    let pipeline = gpu.pipeline(key)?;
    let layout = pipeline.get_bind_group_layout(0);
    let params_buf = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(key.op),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
    let mut entries: Vec<wgpu::BindGroupEntry> = resources
        .into_iter()
        .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
        .collect();
    entries.push(wgpu::BindGroupEntry {
        binding: P::BINDING,
        resource: params_buf.as_entire_binding(),
    });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(key.op),
        layout: &layout,
        entries: &entries,
    });
    Ok(Dispatch {
        pipeline,
        bind_group,
        _params: params_buf,
        workgroups,
        label,
        kind: key.label(),
        shape: String::new(),
        bytes: Work::default(),
        flops: Work::default(),
    })
}

/// The two dispatches of a chunked reduction (argmax) over `rows` rows (grid z). The
/// first reads `x` at binding 1 and writes one partial per chunk to `scratch` at binding
/// 2, over a grid of `n_chunks` workgroups per row; the last, one workgroup per row,
/// reads the partials and writes `out` at binding 3. Both read `params` at binding 4.
pub(crate) fn two_pass<P: ShaderParams>(
    gpu: &Gpu,
    (first, last): (&PipelineKey, &PipelineKey),
    x: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
    out: &wgpu::Buffer,
    params: &P,
    (rows, n_chunks): (u32, u32),
) -> Result<Vec<Dispatch>, GpuError> {
    let (gx, gy) = grid(gpu, n_chunks);
    let d1 = build_dispatch(
        gpu,
        first,
        first.label(),
        &[(1, x), (2, scratch)],
        params,
        (gx, gy, rows),
    )?;
    let d2 = build_dispatch(
        gpu,
        last,
        last.label(),
        &[(2, scratch), (3, out)],
        params,
        (1, 1, rows),
    )?;
    Ok(vec![d1, d2])
}

/// A kernel over a weight matrix: which shader and variant, what it reads and writes
/// besides the weights, and its cost per shard.
struct WeightKernel<'a> {
    /// The shader.
    op: &'static str,
    /// Whether to build the subgroup variant.
    subgroups: bool,
    /// Workgroup size.
    workgroup: u32,
    /// Op-specific shader switches.
    defines: &'static [&'static str],
    /// Bindings 1 and 2.
    inputs: [&'a wgpu::Buffer; 2],
    /// Binding 1 as a window of its buffer (byte offset, size) instead of the whole.
    x_range: Option<(u64, u64)>,
    /// More buffers, by binding: the whole buffer, or its first `n` bytes (`Some(n)`).
    extra: &'a [(u32, &'a wgpu::Buffer, Option<u64>)],
    /// The step uniform, for kernels that read it.
    step: Option<&'a StepBuffer>,
    /// Bytes and FLOPs of a shard of `rows` rows of `w`.
    cost: fn(w: &GpuTensor, rows: f64) -> (Work, Work),
}

/// Bytes of x the matvecs' one-lane-per-row forms (the CPU class's) read through a
/// uniform binding (`XUNIFORM`; the shaders declare it as 4096 vec4 words) where their
/// x fits: WebGPU's and lavapipe's largest uniform binding. On a CPU rasterizer a storage
/// load at an address that differs between invocations, or inside a loop, is a per-lane
/// loop with a bounds test (about 13 instructions per lane and 32-bit word), where a
/// uniform load at such an address is a branch-free gather (Mesa 25.0's llvmpipe:
/// out-of-range lanes read offset 0, then zero): `benches/matvec` (640 x 2048,
/// 8 sequences, alternated, 2026-12-04) batched step Q4_K 2,420 / 2,849 us -> 1,085 /
/// 1,020, Q6_K 2,293 / 3,168 -> 1,407 / 1,344, Q8_0 1,464 / 1,733 -> 1,168 / 1,169, Q5_0
/// 2,141 / 2,845 -> 1,576 / 2,478.
pub const X_WINDOW: u64 = 65536;

/// Binding of the claim counters (`Gpu::claims`) in the builds that claim their rows
/// at run time (`CLAIM`, shaders/lib/claim.wgsl).
const CLAIMS_BINDING: u32 = 12;

/// Whether the CPU class's matvecs claim their rows at run time (`CLAIM`): yes, unless
/// `HEARTH_CLAIM=0` (to compare). `scripts/cpu-timeline.py` on Gemma 3's decode
/// (2026-12-06): the ticks where one core ran shader code while the other waited fell
/// from 32% to 19%.
fn claims_on() -> bool {
    !matches!(
        std::env::var("HEARTH_CLAIM").as_deref().map(str::trim),
        Ok("0")
    )
}

/// Workgroups to launch for a claiming build (`CLAIM`) that would otherwise take
/// `items` workgroups: two per thread of the CPU rasterizer (lavapipe runs
/// `LP_NUM_THREADS` threads, else one per core).
fn claim_launches(items: u32) -> u32 {
    let threads = std::env::var("LP_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get().min(64) as u32)
        });
    launches_for(items, threads)
}

/// `claim_launches` for `threads` threads (unknown: `None`). Each thread's fixed share
/// of the launches loops over items until none are left, so more launches than threads
/// only add ones that find nothing left, and fewer would leave threads idle; where the
/// threads are unknown, one per item (as without claims).
fn launches_for(items: u32, threads: Option<u32>) -> u32 {
    match threads {
        Some(t) => items.min(t.clamp(1, 64) * 2),
        None => items,
    }
    .max(1)
}

/// The byte offset in `buf` of the uniform window (`X_WINDOW` bytes) through which a
/// kernel reads `span` elements from element `offset`, if the adapter binds uniform
/// windows that large, `buf` may be bound as uniform and holds the whole window, and
/// the span fits in it (the kernel then indexes from the window's start).
fn uniform_window(gpu: &Gpu, buf: &wgpu::Buffer, offset: u32, span: u64) -> Option<u64> {
    if gpu.limits.max_uniform_buffer_binding_size < X_WINDOW
        || !buf.usage().contains(wgpu::BufferUsages::UNIFORM)
    {
        return None;
    }
    let align = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(16);
    let first = offset as u64 * 4;
    let start = first / align * align;
    let end = (offset as u64 + span) * 4;
    (end - start <= X_WINDOW && start + X_WINDOW <= buf.size()).then_some(start)
}

/// x's offset (elements) as a kernel bound at `window` (`uniform_window`'s start, if
/// any) indexes it: from the window's start.
fn windowed_offset(x_offset: u32, window: Option<u64>) -> u32 {
    x_offset - window.map_or(0, |o| (o / 4) as u32)
}

/// Bytes of `rows` rows of `w` as stored on the GPU.
fn weight_bytes(w: &GpuTensor, rows: f64) -> f64 {
    rows * w.row_words as f64 * 4.0
}

/// Common per-shard setup of weight kernels: binding 0 = the shard's weights, 1 and 2 =
/// `k.inputs`, 3 = params, and the step uniform when given; one dispatch per shard.
fn weight_dispatches<P: ShaderParams>(
    gpu: &Gpu,
    k: &WeightKernel,
    w: &GpuTensor,
    params: impl FnMut(u64, u64) -> (P, (u32, u32, u32)),
) -> Result<Vec<Dispatch>, GpuError> {
    let key = weight_key(k.op, w.ty, k.subgroups, k.workgroup, k.defines);
    weight_dispatches_keyed(gpu, k, key, w, params)
}

/// `weight_dispatches` with its pipeline key given (a variant beyond `weight_key`'s,
/// such as f16).
fn weight_dispatches_keyed<P: ShaderParams>(
    gpu: &Gpu,
    k: &WeightKernel,
    key: PipelineKey,
    w: &GpuTensor,
    mut params: impl FnMut(u64, u64) -> (P, (u32, u32, u32)),
) -> Result<Vec<Dispatch>, GpuError> {
    let n = w.shards.len();
    let mut out = Vec::with_capacity(n);
    for (i, shard) in w.shards.iter().enumerate() {
        let (p, workgroups) = params(shard.row_start, shard.rows);
        let label = if n > 1 {
            format!("{} [{} shard {}/{n}]", key.label(), w.name, i + 1)
        } else {
            format!("{} [{}]", key.label(), w.name)
        };
        let mut entries = vec![
            (0, w.binding(i)),
            (
                1,
                match k.x_range {
                    Some((offset, size)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: k.inputs[0],
                        offset,
                        size: wgpu::BufferSize::new(size),
                    }),
                    None => k.inputs[0].as_entire_binding(),
                },
            ),
            (2, k.inputs[1].as_entire_binding()),
        ];
        if let Some(s) = k.step {
            entries.push((STEP_BINDING, s.buffer.as_entire_binding()));
        }
        entries.extend(k.extra.iter().map(|&(b, buffer, n)| {
            let r = match n {
                Some(n) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(n),
                }),
                None => buffer.as_entire_binding(),
            };
            (b, r)
        }));
        let d = build_dispatch_with(gpu, &key, label, entries, &p, workgroups)?;
        let (bytes, flops) = (k.cost)(w, shard.rows as f64);
        out.push(d.costed(format!("{}x{}", shard.rows, w.cols), bytes, flops));
    }
    Ok(out)
}

fn weight_key(
    op: &'static str,
    ty: GgmlType,
    subgroups: bool,
    workgroup: u32,
    defines: &'static [&'static str],
) -> PipelineKey {
    PipelineKey {
        op,
        variant: ShaderVariant {
            dtype: Some(ty),
            subgroups,
            defines,
            ..ShaderVariant::new(workgroup)
        },
    }
}

/// Every pipeline variant hearth can build, for validation tests.
pub fn all_variants() -> Vec<PipelineKey> {
    let mut v = Vec::new();
    for ty in GgmlType::ALL
        .into_iter()
        .filter(|t| crate::gpu::gpu_layout(*t).is_some())
    {
        v.extend(matvec::variants(ty));
        v.extend(matvec_batch::variants(ty));
        v.push(weight_key("matmul", ty, false, 64, &[]));
        v.push(weight_key("matmul", ty, false, 64, &["WIDE"]));
        for (size, f16_inputs) in [(8, false), (8, true), (16, true), (16, false)] {
            let c = crate::gpu::CoopMatrix {
                size,
                f16_inputs,
                workgroup: 4 * 32,
            };
            v.push(matmul::coop_key(ty, c));
        }
        v.push(weight_key("get_rows", ty, false, get_rows::WORKGROUP, &[]));
        v.push(weight_key(
            "get_rows",
            ty,
            false,
            get_rows::WORKGROUP,
            get_rows::ADD_POSITIONS,
        ));
        v.push(weight_key(
            "get_rows",
            ty,
            false,
            get_rows::WORKGROUP,
            get_rows::NORM,
        ));
        v.extend(moe::id_variants(ty));
    }
    v.extend(moe::variants());
    v.extend(kv_append::variants());
    v.extend(attention_decode::variants());
    v.extend(attention_prefill::variants());
    v.extend(rmsnorm::variants());
    v.extend(residual_norm::variants());
    v.extend(layer_norm::variants());
    v.extend(rope::variants());
    v.extend(rope_kv::variants());
    v.extend(add::variants());
    v.extend(gated_act::variants());
    v.extend(argmax::variants());
    v.extend(penalties::variants());
    v.extend(pool::variants());
    v.extend(topk::variants());
    v.extend(stream_read::variants());
    v
}

/// `defines` as a `'static` list, as pipeline keys hold them: each distinct list is
/// leaked once for the process and reused (a handful per kernel).
fn static_defines(defines: &[String]) -> Result<&'static [&'static str], GpuError> {
    type Cache = std::sync::Mutex<Vec<&'static [&'static str]>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| GpuError::Runtime("shader define cache poisoned".into()))?;
    let same = |d: &&&[&str]| d.iter().copied().eq(defines.iter().map(String::as_str));
    if let Some(d) = cache.iter().find(same) {
        return Ok(d);
    }
    let d: Vec<&'static str> = defines
        .iter()
        .map(|s| &*Box::leak(s.clone().into_boxed_str()))
        .collect();
    let d: &'static [&'static str] = Box::leak(d.into_boxed_slice());
    cache.push(d);
    Ok(d)
}

/// The defines of a gated activation epilogue (`GATED` and the activation), if any.
fn act_defines(act: Option<crate::model::Activation>) -> &'static [&'static str] {
    use crate::model::Activation;
    match act {
        Some(Activation::Silu) => &["GATED", "SILU"],
        Some(Activation::GeluTanh) => &["GATED", "GELU_TANH"],
        Some(Activation::SwigluOai) => &["GATED", "SWIGLU_OAI"],
        None => &[],
    }
}

fn to_u32(what: &str, v: u64) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| {
        GpuError::Runtime(format!(
            "{what} = {v} exceeds the 32-bit index range of the kernels"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::launches_for;

    #[test]
    fn claiming_builds_launch_two_workgroups_per_thread() {
        // Two per thread where there are more items than that; never more than items,
        // never none; one per item where the threads are unknown.
        assert_eq!(launches_for(382, Some(2)), 4);
        assert_eq!(launches_for(3, Some(2)), 3);
        assert_eq!(launches_for(0, Some(2)), 1);
        assert_eq!(launches_for(382, Some(0)), 2);
        assert_eq!(launches_for(1000, Some(500)), 128);
        assert_eq!(launches_for(382, None), 382);
    }
}
