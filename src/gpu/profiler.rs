//! Per-dispatch GPU timing for `hearth profile`. Each timed dispatch gets a begin and an
//! end timestamp: written inside the compute pass around the dispatch when the device
//! has `TIMESTAMP_QUERY_INSIDE_PASSES`, else by giving every dispatch its own pass with
//! `timestamp_writes`. The queries of a whole step are resolved into one buffer and read
//! back once, at the end of the step. Without timestamp queries the profiler submits each
//! dispatch alone and times submit-to-completion on the CPU (native only), which adds the
//! submission overhead to every kernel. The executor only touches a profiler when asked
//! to: an unprofiled forward pass encodes no query.
//!
//! Also here: the bandwidth probe (`measure_peak`), a large buffer copy and a streaming
//! read, each timed around a device sync.

use super::{map_read, Gpu, GpuError};
use crate::kernels::{Copies, Dispatch, Op, StreamRead, Submit};
use web_time::Instant;

/// How a profiler times dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Timestamps written inside one compute pass, around each dispatch.
    InsidePasses,
    /// One compute pass per dispatch, timestamps at the pass boundaries.
    PassPerDispatch,
    /// No timestamp queries: each dispatch submitted alone and waited for, timed on the CPU.
    CpuSubmit,
}

impl Timing {
    /// A short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::InsidePasses => "GPU timestamps inside compute passes",
            Self::PassPerDispatch => "GPU timestamps, one compute pass per dispatch",
            Self::CpuSubmit => {
                "CPU timing of one submission per dispatch (no timestamp queries; includes submit overhead)"
            }
        }
    }
}

/// Which forward pass a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A prefill chunk (matrix-matrix kernels).
    Prefill,
    /// One decoded token (matrix-vector kernels).
    Decode,
}

impl Phase {
    /// `prefill` or `decode`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prefill => "prefill",
            Self::Decode => "decode",
        }
    }
}

/// One timed dispatch of a step.
#[derive(Clone, Debug)]
pub struct DispatchTime {
    /// The dispatch's label (kernel and tensor).
    pub label: String,
    /// The kernel (pipeline name).
    pub kind: String,
    /// The problem shape.
    pub shape: String,
    /// Bytes moved at this step's token count and cache length.
    pub bytes: f64,
    /// FLOPs at this step's token count and cache length.
    pub flops: f64,
    /// Start, in ns since the profiler's first timestamp.
    pub start_ns: f64,
    /// Duration in ns.
    pub dur_ns: f64,
    /// Index of the command buffer it was submitted in, within the step.
    pub submission: usize,
}

/// The timed dispatches of one step.
#[derive(Clone, Debug)]
pub struct StepProfile {
    /// Prefill chunk or decode step.
    pub phase: Phase,
    /// Tokens in the step.
    pub n_tokens: u32,
    /// Cached positions after the step.
    pub kv_len: u32,
    /// Every dispatch, in submission order.
    pub dispatches: Vec<DispatchTime>,
    /// GPU time of the step: for each command buffer, from the start of its first
    /// dispatch to the end of its last, summed. Idle time between command buffers (the
    /// GPU waiting for the CPU to submit) is not GPU time and is left out; it shows in
    /// `span_ns`. With CPU timing: the sum of the per-submission times.
    pub gpu_ns: f64,
    /// From the start of the first dispatch to the end of the last.
    pub span_ns: f64,
}

impl StepProfile {
    /// Sum of the dispatches' own times.
    pub fn kernel_ns(&self) -> f64 {
        self.dispatches.iter().map(|d| d.dur_ns).sum()
    }
}

/// What a dispatch was when it was recorded, before its time is known.
struct Pending {
    label: String,
    kind: String,
    shape: String,
    bytes: f64,
    flops: f64,
    submission: usize,
    /// CPU mode: start and duration, in ns since the profiler's origin.
    cpu: Option<(f64, f64)>,
}

/// Times every dispatch of the steps it is handed (see the module docs).
pub struct Profiler {
    timing: Timing,
    sets: Vec<wgpu::QuerySet>,
    resolve: Option<wgpu::Buffer>,
    staging: Option<wgpu::Buffer>,
    period_ns: f64,
    origin_ticks: Option<u64>,
    origin: Instant,
    pending: Vec<Pending>,
    step: Option<(Phase, u32, u32)>,
    submissions: usize,
}

const SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;

impl Profiler {
    /// A profiler for `gpu`, with the best timing the device allows.
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let f = gpu.device.features();
        let timing = if !f.contains(wgpu::Features::TIMESTAMP_QUERY) {
            Timing::CpuSubmit
        } else if f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            Timing::InsidePasses
        } else {
            Timing::PassPerDispatch
        };
        Self::with_timing(gpu, timing)
    }

    /// A profiler using `timing` (which the device must support).
    pub fn with_timing(gpu: &Gpu, timing: Timing) -> Result<Self, GpuError> {
        let f = gpu.device.features();
        let ok = match timing {
            Timing::InsidePasses => f.contains(
                wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            ),
            Timing::PassPerDispatch => f.contains(wgpu::Features::TIMESTAMP_QUERY),
            // Waiting for one submission needs a blocking poll.
            Timing::CpuSubmit => cfg!(not(target_arch = "wasm32")),
        };
        if !ok {
            let why = if timing == Timing::CpuSubmit {
                "the device has no timestamp queries (timestamp-query), and a browser cannot wait for single submissions"
            } else {
                "the device does not offer the timestamp feature it needs"
            };
            return Err(GpuError::Runtime(format!(
                "profiling: {timing:?} timing is not available on {}: {why}",
                gpu.describe()
            )));
        }
        Ok(Self {
            timing,
            sets: Vec::new(),
            resolve: None,
            staging: None,
            period_ns: gpu.queue.get_timestamp_period() as f64,
            origin_ticks: None,
            origin: Instant::now(),
            pending: Vec::new(),
            step: None,
            submissions: 0,
        })
    }

    /// How this profiler times dispatches.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Starts a step of `n_tokens` tokens that leaves `kv_len` positions cached.
    pub fn begin_step(&mut self, phase: Phase, n_tokens: u32, kv_len: u32) {
        self.pending.clear();
        self.submissions = 0;
        self.step = Some((phase, n_tokens, kv_len));
    }

    /// Makes room for `queries` timestamp queries (more query sets, bigger buffers).
    fn reserve(&mut self, gpu: &Gpu, queries: u32) {
        let have = self.sets.len() as u32 * SET;
        if queries <= have || self.timing == Timing::CpuSubmit {
            return;
        }
        while (self.sets.len() as u32 * SET) < queries {
            self.sets
                .push(gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profiler timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: SET,
                }));
        }
        let size = self.sets.len() as u64 * SET as u64 * wgpu::QUERY_SIZE as u64;
        let buffer = |label, usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        self.resolve = Some(buffer("profiler resolve", U::QUERY_RESOLVE | U::COPY_SRC));
        self.staging = Some(buffer("profiler staging", U::MAP_READ | U::COPY_DST));
    }

    /// The query set and index of query `i`.
    fn query(&self, i: usize) -> (&wgpu::QuerySet, u32) {
        (&self.sets[i / SET as usize], (i % SET as usize) as u32)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn cpu_sync(&self, gpu: &Gpu) -> Result<(), GpuError> {
        gpu.wait()
    }

    #[cfg(target_arch = "wasm32")]
    fn cpu_sync(&self, _gpu: &Gpu) -> Result<(), GpuError> {
        Err(GpuError::Runtime(
            "profiling: CPU timing cannot wait for the GPU in a browser".into(),
        ))
    }

    /// Ends the step: resolves its queries, reads them back (the one wait of the step)
    /// and returns every dispatch's time. Never blocks in a browser: it awaits the map.
    pub async fn finish_step(&mut self, gpu: &Gpu) -> Result<StepProfile, GpuError> {
        let (phase, n_tokens, kv_len) = self
            .step
            .take()
            .ok_or_else(|| GpuError::Runtime("profiler: finish_step before begin_step".into()))?;
        let n = self.pending.len();
        let times: Vec<(f64, f64)> = if self.timing == Timing::CpuSubmit {
            self.pending
                .iter()
                .map(|p| p.cpu.unwrap_or((0.0, 0.0)))
                .collect()
        } else if n == 0 {
            Vec::new()
        } else {
            let ticks = self.read_ticks(gpu, 2 * n).await?;
            let origin = *self.origin_ticks.get_or_insert(ticks[0]);
            let ns = |t: u64| t.wrapping_sub(origin) as i64 as f64 * self.period_ns;
            ticks
                .chunks_exact(2)
                .map(|c| (ns(c[0]), (ns(c[1]) - ns(c[0])).max(0.0)))
                .collect()
        };
        let dispatches: Vec<DispatchTime> = self
            .pending
            .drain(..)
            .zip(times)
            .map(|(p, (start_ns, dur_ns))| DispatchTime {
                label: p.label,
                kind: p.kind,
                shape: p.shape,
                bytes: p.bytes,
                flops: p.flops,
                start_ns,
                dur_ns,
                submission: p.submission,
            })
            .collect();
        let (gpu_ns, span_ns) = step_times(&dispatches, self.timing);
        Ok(StepProfile {
            phase,
            n_tokens,
            kv_len,
            dispatches,
            gpu_ns,
            span_ns,
        })
    }

    /// Resolves the first `queries` timestamps and maps them back.
    async fn read_ticks(&self, gpu: &Gpu, queries: usize) -> Result<Vec<u64>, GpuError> {
        let (resolve, staging) = match (&self.resolve, &self.staging) {
            (Some(r), Some(s)) => (r, s),
            _ => return Err(GpuError::Runtime("profiler: no queries recorded".into())),
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (i, set) in self.sets.iter().enumerate() {
            let lo = i * SET as usize;
            if lo >= queries {
                break;
            }
            let count = (queries - lo).min(SET as usize) as u32;
            let offset = lo as u64 * wgpu::QUERY_SIZE as u64;
            enc.resolve_query_set(set, 0..count, resolve, offset);
        }
        let bytes = queries as u64 * wgpu::QUERY_SIZE as u64;
        enc.copy_buffer_to_buffer(resolve, 0, staging, 0, bytes);
        // On lavapipe this submit blocks until the step just submitted is done
        // (`Gpu::submit` keeps the cores awake meanwhile).
        gpu.submit([enc.finish()]);
        let data = map_read(gpu, staging, bytes).await?;
        Ok(bytemuck::cast_slice::<u8, u64>(&data).to_vec())
    }
}

/// The step's GPU time and span (see `StepProfile::gpu_ns`).
fn step_times(d: &[DispatchTime], timing: Timing) -> (f64, f64) {
    if d.is_empty() {
        return (0.0, 0.0);
    }
    let end = |x: &DispatchTime| x.start_ns + x.dur_ns;
    let span = d.iter().map(end).fold(f64::MIN, f64::max)
        - d.iter().map(|x| x.start_ns).fold(f64::MAX, f64::min);
    if timing == Timing::CpuSubmit {
        return (d.iter().map(|x| x.dur_ns).sum(), span);
    }
    let mut busy = 0.0;
    let mut i = 0;
    while i < d.len() {
        let s = d[i].submission;
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        while i < d.len() && d[i].submission == s {
            lo = lo.min(d[i].start_ns);
            hi = hi.max(end(&d[i]));
            i += 1;
        }
        busy += hi - lo;
    }
    (busy, span)
}

/// The adapter's measured memory bandwidth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// Buffer-to-buffer copy: bytes read plus bytes written per second, in GB/s.
    pub copy_gbps: f64,
    /// The streaming-read kernel: bytes read per second, in GB/s, in the faster of its
    /// two access patterns (`read_pattern`).
    pub read_gbps: f64,
    /// Which pattern that was: `grid stride` (consecutive invocations read consecutive
    /// words: GPUs) or `runs` (each invocation a contiguous run: a CPU rasterizer, whose
    /// lanes stream rows as the matvecs read them).
    pub read_pattern: &'static str,
    /// Bytes per probe buffer.
    pub bytes: u64,
    /// The cost of one dispatch of a minimal kernel (one workgroup reading 16 bytes),
    /// [`DISPATCH_PROBE`] of them back to back in one compute pass, in µs: the launch
    /// cost every dispatch of a step pays however little it does.
    pub dispatch_us: f64,
}

/// Dispatches in one run of the dispatch-cost probe.
pub const DISPATCH_PROBE: u32 = 200;

impl Peak {
    /// The bandwidth kernels are compared with: the better of the two probes.
    pub fn gbps(&self) -> f64 {
        self.copy_gbps.max(self.read_gbps)
    }
}

/// Measures copy and streaming-read bandwidth over a buffer of up to 256 MiB (capped by
/// the device's limits), and the cost of a minimal dispatch: one warm-up, then the best
/// of three runs, each timed on the CPU from submission to the completed map of a 4-byte
/// marker copied after the work.
pub async fn measure_peak(gpu: &Gpu) -> Result<Peak, GpuError> {
    let cap = (256u64 << 20)
        .min(gpu.limits.max_buffer_size)
        .min(gpu.max_binding);
    let bytes = cap / 16 * 16;
    use wgpu::BufferUsages as U;
    let buffer = |label, size, usage| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = buffer("peak src", bytes, U::STORAGE | U::COPY_SRC | U::COPY_DST);
    let dst = buffer("peak dst", bytes, U::COPY_DST);
    let out = buffer("peak out", 16, U::STORAGE | U::COPY_SRC);
    let marker = buffer("peak marker", 16, U::MAP_READ | U::COPY_DST);
    // The dispatch-cost probe's 16 bytes.
    let small = buffer("dispatch probe", 16, U::STORAGE | U::COPY_DST);
    // Touch both sources so they are resident before timing.
    {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.clear_buffer(&src, 0, None);
        enc.clear_buffer(&small, 0, None);
        gpu.submit([enc.finish()]);
    }
    let grid = StreamRead::new(gpu, &src, &out)?;
    let runs = StreamRead::runs(gpu, &src, &out)?;
    let copy_s = best_of(gpu, &out, &marker, &|enc| {
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes)
    })
    .await?;
    let mut read = (f64::MAX, "");
    for (op, pattern) in [(&grid, "grid stride"), (&runs, "runs")] {
        let s = best_of(gpu, &out, &marker, &|enc| {
            let mut pass = enc.begin_compute_pass(&Default::default());
            op.encode(&mut pass);
        })
        .await?;
        if s < read.0 {
            read = (s, pattern);
        }
    }
    // Each dispatch writes (at most) the same `out` the next one may write, so they run
    // in order, as a step's dependent dispatches do.
    let minimal = StreamRead::minimal(gpu, &small, &out)?;
    let launch_s = best_of(gpu, &out, &marker, &|enc| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..DISPATCH_PROBE {
            minimal.encode(&mut pass);
        }
    })
    .await?;
    Ok(Peak {
        copy_gbps: 2.0 * bytes as f64 / copy_s / 1e9,
        read_gbps: bytes as f64 / read.0 / 1e9,
        read_pattern: read.1,
        bytes,
        dispatch_us: launch_s / DISPATCH_PROBE as f64 * 1e6,
    })
}

/// The best of three timed runs (after one warm-up) of the work `record` encodes.
async fn best_of(
    gpu: &Gpu,
    out: &wgpu::Buffer,
    marker: &wgpu::Buffer,
    record: &dyn Fn(&mut wgpu::CommandEncoder),
) -> Result<f64, GpuError> {
    let mut best = f64::MAX;
    for run in 0..4 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        record(&mut enc);
        enc.copy_buffer_to_buffer(out, 0, marker, 0, 16);
        let t0 = Instant::now();
        gpu.submit([enc.finish()]);
        map_read(gpu, marker, 16).await?;
        if run > 0 {
            best = best.min(t0.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}

impl Submit for Profiler {
    /// Records `dispatches` into one command buffer (between the copies `before` and
    /// `after`, if given) with their timestamps and submits it; in CPU mode, submits each
    /// dispatch alone and waits.
    fn submit(
        &mut self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        before: Copies,
        after: Copies,
    ) -> Result<wgpu::SubmissionIndex, GpuError> {
        let (_, n_tokens, kv_len) = self
            .step
            .ok_or_else(|| GpuError::Runtime("profiler: submit before begin_step".into()))?;
        let first = self.pending.len();
        let submission = self.submissions;
        self.submissions += 1;
        for d in dispatches {
            self.pending.push(Pending {
                label: d.label.clone(),
                kind: d.kind.clone(),
                shape: d.shape.clone(),
                bytes: d.bytes.at(n_tokens, kv_len),
                flops: d.flops.at(n_tokens, kv_len),
                submission,
                cpu: None,
            });
        }
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        if let Some(f) = before {
            f(&mut enc);
        }
        match self.timing {
            Timing::InsidePasses => {
                self.reserve(gpu, 2 * self.pending.len() as u32);
                let mut pass = enc.begin_compute_pass(&Default::default());
                for (i, d) in dispatches.iter().enumerate() {
                    let q = 2 * (first + i);
                    let (set, idx) = self.query(q);
                    pass.write_timestamp(set, idx);
                    d.encode(&mut pass);
                    let (set, idx) = self.query(q + 1);
                    pass.write_timestamp(set, idx);
                }
            }
            Timing::PassPerDispatch => {
                self.reserve(gpu, 2 * self.pending.len() as u32);
                for (i, d) in dispatches.iter().enumerate() {
                    let q = 2 * (first + i);
                    // A pair never straddles two sets: SET is even.
                    let (set, idx) = self.query(q);
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(idx),
                            end_of_pass_write_index: Some(idx + 1),
                        }),
                    });
                    d.encode(&mut pass);
                }
            }
            Timing::CpuSubmit => {
                gpu.submit([enc.finish()]);
                self.cpu_sync(gpu)?;
                for (i, d) in dispatches.iter().enumerate() {
                    let t0 = Instant::now();
                    crate::kernels::run(gpu, &[*d]);
                    self.cpu_sync(gpu)?;
                    let start = (t0 - self.origin).as_secs_f64() * 1e9;
                    let dur = t0.elapsed().as_secs_f64() * 1e9;
                    self.pending[first + i].cpu = Some((start, dur));
                }
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                if let Some(f) = after {
                    f(&mut enc);
                }
                return Ok(gpu.submit([enc.finish()]));
            }
        }
        if let Some(f) = after {
            f(&mut enc);
        }
        Ok(gpu.submit([enc.finish()]))
    }
}
