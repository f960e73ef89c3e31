//! Adapter selection and device creation.

use super::shaders::PipelineCache;
use super::GpuError;
use std::sync::Arc;

/// A graphics API wgpu can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
    WebGpu,
}

impl BackendChoice {
    /// Parses `vulkan|metal|dx12|gl|webgpu` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, GpuError> {
        match s.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(Self::Vulkan),
            "metal" | "mtl" => Ok(Self::Metal),
            "dx12" | "d3d12" => Ok(Self::Dx12),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            "webgpu" | "browser" => Ok(Self::WebGpu),
            _ => Err(GpuError::UnknownBackend(s.to_string())),
        }
    }

    fn backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
            Self::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
        }
    }
}

/// Optional device features hearth uses when present and works without.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalFeatures {
    /// `shader-f16`: f16 arithmetic and storage in WGSL.
    pub shader_f16: bool,
    /// Subgroup operations (`subgroupAdd`): faster reductions.
    pub subgroups: bool,
    /// Timestamp queries: per-kernel GPU time.
    pub timestamps: bool,
}

impl OptionalFeatures {
    /// Every optional feature on (the default request).
    pub const ALL: Self = Self {
        shader_f16: true,
        subgroups: true,
        timestamps: true,
    };
    /// No optional feature (the most portable device).
    pub const NONE: Self = Self {
        shader_f16: false,
        subgroups: false,
        timestamps: false,
    };

    fn wgpu_features(self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        if self.shader_f16 {
            f |= wgpu::Features::SHADER_F16;
        }
        if self.subgroups {
            f |= wgpu::Features::SUBGROUP;
        }
        if self.timestamps {
            f |= wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        }
        f
    }

    fn from_wgpu(f: wgpu::Features) -> Self {
        Self {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

/// How to pick and configure the device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Restrict to one backend (`--backend`, `HEARTH_BACKEND`).
    pub backend: Option<BackendChoice>,
    /// Pick the N-th adapter of `list_adapters` (`--adapter`, `HEARTH_ADAPTER`).
    pub adapter: Option<usize>,
    /// Optional features to request when the adapter has them.
    pub features: OptionalFeatures,
    /// Lower the storage-binding size used for sharding (tests force the shard path).
    pub max_binding_override: Option<u64>,
    /// Run prompts' matmul on cooperative matrices (wgpu's experimental feature) where
    /// the adapter has them (`HEARTH_COOP_MATRIX=1`). Off by default until measured on a
    /// real GPU; lavapipe emulates them slower than the portable kernel.
    pub coop_matrix: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backend: None,
            adapter: None,
            features: OptionalFeatures::ALL,
            max_binding_override: None,
            coop_matrix: false,
        }
    }
}

impl GpuOptions {
    /// `HEARTH_COOP_MATRIX=1`: cooperative matrices where the adapter has them.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn coop_from_env(&mut self) {
        if std::env::var("HEARTH_COOP_MATRIX").is_ok_and(|v| v == "1") {
            self.coop_matrix = true;
        }
    }

    /// Options from `HEARTH_BACKEND` / `HEARTH_ADAPTER` / `HEARTH_COOP_MATRIX`, on top of
    /// the defaults.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_env() -> Result<Self, GpuError> {
        let mut o = Self::default();
        if let Ok(b) = std::env::var("HEARTH_BACKEND") {
            if !b.is_empty() {
                o.backend = Some(BackendChoice::parse(&b)?);
            }
        }
        o.coop_from_env();
        if let Ok(a) = std::env::var("HEARTH_ADAPTER") {
            if !a.is_empty() {
                o.adapter = Some(a.parse().map_err(|_| {
                    GpuError::NoAdapter(format!(": HEARTH_ADAPTER='{a}' is not a number"))
                })?);
            }
        }
        Ok(o)
    }
}

/// What `hearth devices` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Index usable with `--adapter`.
    pub index: usize,
    /// Adapter info as wgpu reports it.
    pub info: wgpu::AdapterInfo,
    /// The adapter's limits.
    pub limits: wgpu::Limits,
    /// The adapter's features.
    pub features: wgpu::Features,
    /// The cooperative-matrix shapes it offers (empty without the feature).
    pub coop_shapes: Vec<wgpu::CooperativeMatrixProperties>,
}

#[cfg(not(target_arch = "wasm32"))]
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 1,
        _ => 2,
    }
}

fn instance(backend: Option<BackendChoice>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backend {
        desc.backends = b.backends();
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu sees, best first (discrete > integrated > virtual > CPU; native
/// APIs before GL), the order `--adapter N` indexes.
#[cfg(not(target_arch = "wasm32"))]
pub async fn list_adapters(backend: Option<BackendChoice>) -> Vec<(wgpu::Adapter, AdapterSummary)> {
    let inst = instance(backend);
    let mut adapters = inst.enumerate_adapters(wgpu::Backends::all()).await;
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type), backend_rank(i.backend))
    });
    adapters
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            let s = AdapterSummary {
                index,
                info: a.get_info(),
                limits: a.limits(),
                features: a.features(),
                coop_shapes: a.cooperative_matrix_properties(),
            };
            (a, s)
        })
        .collect()
}

/// In the browser there is one adapter: the one the page is given.
#[cfg(target_arch = "wasm32")]
pub async fn list_adapters(backend: Option<BackendChoice>) -> Vec<(wgpu::Adapter, AdapterSummary)> {
    let inst = instance(backend);
    let opts = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    match inst.request_adapter(&opts).await {
        Ok(a) => {
            let s = AdapterSummary {
                index: 0,
                info: a.get_info(),
                limits: a.limits(),
                features: a.features(),
                coop_shapes: a.cooperative_matrix_properties(),
            };
            vec![(a, s)]
        }
        Err(_) => Vec::new(),
    }
}

/// The cooperative-matrix shape the prefill matmul (`matmul_coop.wgsl`) is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopMatrix {
    /// Side of the square matrices: 8 or 16.
    pub size: u32,
    /// f16 inputs (the accumulators are f32 either way).
    pub f16_inputs: bool,
    /// Invocations per workgroup: four of the adapter's smallest subgroups.
    pub workgroup: u32,
}

/// The shape to use among the adapter's: square 8 or 16 with f32 accumulators, inputs
/// in f16 (with shader-f16) or f32, larger and f16 first (the matrix units' fast path).
/// None unless subgroups are on (the kernel splits its tile by subgroup) and four of the
/// smallest subgroups cover the largest one in a workgroup the device allows.
pub fn pick_coop(
    props: &[wgpu::CooperativeMatrixProperties],
    f16: bool,
    subgroups: bool,
    info: &wgpu::AdapterInfo,
    limits: &wgpu::Limits,
) -> Option<CoopMatrix> {
    let (min, max) = (info.subgroup_min_size, info.subgroup_max_size);
    let workgroup = min.checked_mul(4)?;
    if !subgroups
        || min == 0
        || !min.is_power_of_two()
        || !max.is_power_of_two()
        || max > workgroup
        || workgroup > limits.max_compute_invocations_per_workgroup
        || workgroup > limits.max_compute_workgroup_size_x
    {
        return None;
    }
    use wgpu::CooperativeScalarType as S;
    let usable = |p: &&wgpu::CooperativeMatrixProperties| {
        p.m_size == p.n_size
            && p.n_size == p.k_size
            && matches!(p.m_size, 8 | 16)
            && p.cr_type == S::F32
            && (p.ab_type == S::F32 || (f16 && p.ab_type == S::F16))
    };
    props
        .iter()
        .filter(usable)
        .max_by_key(|p| (p.m_size, p.ab_type == S::F16))
        .map(|p| CoopMatrix {
            size: p.m_size,
            f16_inputs: p.ab_type == S::F16,
            workgroup,
        })
}

/// A device and queue with what hearth learned about them.
pub struct Gpu {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter this device came from.
    pub info: wgpu::AdapterInfo,
    /// Limits the device was created with (the adapter's real ones).
    pub limits: wgpu::Limits,
    /// Optional features that are enabled on this device.
    pub features: OptionalFeatures,
    /// Largest storage binding hearth will create; tensors above it are sharded.
    pub max_binding: u64,
    /// The cooperative matrices the prefill matmul uses, when the device has them.
    pub coop: Option<CoopMatrix>,
    pub(crate) pipelines: PipelineCache,
    /// Faults the device reported outside any error scope, and its loss.
    faults: Arc<Faults>,
    /// A CPU adapter: waits keep the cores awake (`spin`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    cpu: bool,
    /// The counters of the matvecs that claim their rows at run time (`CLAIM`, see
    /// shaders/lib/claim.wgsl): zero between dispatches (each one's last subgroup resets
    /// them).
    pub(crate) claims: wgpu::Buffer,
}

/// What the device reported through its callbacks: hearth never lets wgpu's default
/// handler panic; a fault is recorded here and surfaces as a `GpuError` at the next check.
#[derive(Default)]
struct Faults {
    /// Why the device was lost, once it is.
    lost: std::sync::Mutex<Option<String>>,
    /// The first error no scope captured, not yet reported.
    uncaptured: std::sync::Mutex<Option<String>>,
}

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Picks an adapter per `opts` and creates the device.
    pub async fn new(opts: &GpuOptions) -> Result<Arc<Self>, GpuError> {
        let mut adapters = list_adapters(opts.backend).await;
        if adapters.is_empty() {
            let hint = match opts.backend {
                Some(b) => format!(" for backend {b:?}"),
                None => {
                    " (on Linux without a GPU, install Mesa's lavapipe: mesa-vulkan-drivers)".into()
                }
            };
            return Err(GpuError::NoAdapter(hint));
        }
        let idx = opts.adapter.unwrap_or(0);
        if idx >= adapters.len() {
            return Err(GpuError::NoAdapter(format!(
                ": adapter {idx} requested but only {} found (see `hearth devices`)",
                adapters.len()
            )));
        }
        let (adapter, summary) = adapters.swap_remove(idx);
        Self::from_adapter(adapter, summary.info, opts).await
    }

    /// Blocking `new` for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Arc<Self>, GpuError> {
        pollster::block_on(Self::new(opts))
    }

    // wgpu handles are not Send/Sync on wasm; there is one thread there anyway.
    #[allow(clippy::arc_with_non_send_sync)]
    async fn from_adapter(
        adapter: wgpu::Adapter,
        info: wgpu::AdapterInfo,
        opts: &GpuOptions,
    ) -> Result<Arc<Self>, GpuError> {
        let wanted = opts.features.wgpu_features();
        let mut features = adapter.features() & wanted;
        // Timestamps inside passes are only useful together with basic timestamps.
        if !features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            features.remove(
                wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                    | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            );
        }
        let limits = adapter.limits();
        if opts.coop_matrix {
            features |= adapter.features() & wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let coop = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            pick_coop(
                &adapter.cooperative_matrix_properties(),
                features.contains(wgpu::Features::SHADER_F16),
                features.contains(wgpu::Features::SUBGROUP),
                &info,
                &limits,
            )
        } else {
            None
        };
        if coop.is_none() {
            features.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        let experimental_features = if coop.is_some() {
            // SAFETY: wgpu's experimental features may have bugs of their own; hearth
            // uses this one in one kernel (`matmul_coop.wgsl`), tested against its CPU
            // twin, and only where the adapter reports a matrix shape it builds for.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("hearth"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| GpuError::Device {
                    adapter: info.name.clone(),
                    reason: e.to_string(),
                })?;
        let hw_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = match opts.max_binding_override {
            Some(o) => o.min(hw_binding),
            None => hw_binding,
        };
        let faults = Arc::new(Faults::default());
        {
            let faults = faults.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("GPU error: {e}");
                locked(&faults.uncaptured).get_or_insert_with(|| e.to_string());
            }));
        }
        {
            let faults = faults.clone();
            device.set_device_lost_callback(move |reason, msg| {
                log::error!("GPU device lost ({reason:?}): {msg}");
                let why = if msg.is_empty() {
                    format!("{reason:?}")
                } else {
                    format!("{reason:?}: {msg}")
                };
                locked(&faults.lost).get_or_insert(why);
            });
        }
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        // Created zeroed.
        let claims = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("claims"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Arc::new(Self {
            device,
            queue,
            info,
            limits,
            features: OptionalFeatures::from_wgpu(features),
            max_binding,
            coop,
            pipelines: PipelineCache::default(),
            faults,
            cpu,
            claims,
        }))
    }

    /// Why the device was lost, once it has been (a driver reset, `destroy`, an unplugged
    /// GPU). Nothing more can run on it; a new `Gpu` is needed.
    pub fn lost(&self) -> Option<String> {
        locked(&self.faults.lost).clone()
    }

    /// `Err` when the device is lost or reported an error no scope captured since the
    /// last check (the error is then consumed).
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(why) = self.lost() {
            return Err(GpuError::Lost(why));
        }
        match locked(&self.faults.uncaptured).take() {
            Some(e) => Err(GpuError::Runtime(e)),
            None => Ok(()),
        }
    }

    /// Runs `f` (which creates GPU resources) with out-of-memory and validation errors
    /// captured: a device that cannot give what `f` asks for gives an `Err` naming `what`
    /// rather than a panic or a later fault. Native only captures by scope (the scope
    /// stack is per thread there); in a browser the same errors arrive through the
    /// uncaptured-error handler and are checked here.
    pub fn catch<T, E: From<GpuError>>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        // wgpu panics on some calls on a lost device (a buffer mapped at creation).
        if let Some(why) = self.lost() {
            return Err(GpuError::Lost(why).into());
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let out = f();
            let invalid = pollster::block_on(invalid.pop());
            let oom = pollster::block_on(oom.pop());
            if let Some(e) = oom {
                return Err(GpuError::OutOfMemory {
                    what: what.to_string(),
                    reason: e.to_string(),
                }
                .into());
            }
            if let Some(e) = invalid {
                return Err(GpuError::Runtime(format!("{what}: {e}")).into());
            }
            self.check()?;
            out
        }
        #[cfg(target_arch = "wasm32")]
        {
            let out = f();
            self.check().map_err(|e| match e {
                GpuError::Runtime(r) => GpuError::Runtime(format!("{what}: {r}")),
                e => e,
            })?;
            out
        }
    }

    /// One line naming the adapter: name, backend, type, driver.
    pub fn describe(&self) -> String {
        describe_info(&self.info)
    }

    /// Submits `cmds` to the queue. On a CPU adapter the cores are kept awake during the
    /// call (`awake`): lavapipe's submit blocks until the work submitted before it is
    /// done when that still runs (a prefill's second command buffer waited 5.5-6.5 s in
    /// the call for its first, 2026-12-06), and the spinners would park 20 ms into it.
    pub fn submit(
        &self,
        cmds: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> wgpu::SubmissionIndex {
        #[cfg(not(target_arch = "wasm32"))]
        let _awake = self.awake();
        self.queue.submit(cmds)
    }

    /// On a CPU adapter, keeps its cores awake until the guard drops (`spin::hold`): for
    /// a caller that blocks on the adapter other than in `wait_for`. `None` elsewhere.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn awake(&self) -> Option<super::spin::Hold> {
        if self.cpu {
            super::spin::hold()
        } else {
            None
        }
    }

    /// Blocks until all submitted work is done (native) — the sync every timing needs.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.wait_for(None)
    }

    /// Blocks until submission `index` is done (`None`: all submitted work), native.
    pub fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<(), GpuError> {
        self.check()?;
        // On a CPU adapter its cores stay awake while it works (see `spin`), the wait
        // timed for spin's tuner.
        #[cfg(not(target_arch = "wasm32"))]
        let _awake = if self.cpu {
            super::spin::hold_wait()
        } else {
            None
        };
        let poll = |submission_index| {
            self.device.poll(wgpu::PollType::Wait {
                submission_index,
                timeout: None,
            })
        };
        if let Err(e) = poll(index.clone()) {
            // A submission that failed (a lost device refuses them) cannot be waited
            // for: wait for everything instead, and report the loss if that is why.
            let all = if index.is_some() { poll(None) } else { Err(e) };
            self.check()?;
            all.map_err(|e| GpuError::Runtime(e.to_string()))?;
        }
        self.check()
    }
}

/// One line naming an adapter.
pub fn describe_info(info: &wgpu::AdapterInfo) -> String {
    let driver = if info.driver.is_empty() {
        String::new()
    } else {
        format!(", {} {}", info.driver, info.driver_info)
    };
    format!(
        "{} ({:?}, {:?}{})",
        info.name, info.backend, info.device_type, driver
    )
}
