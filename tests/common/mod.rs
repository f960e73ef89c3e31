//! Shared helpers for GPU tests: one device per configuration and test thread, buffers,
//! error metrics.
#![allow(dead_code)]

pub mod schema;

use hearth::gpu::{Gpu, GpuOptions, OptionalFeatures};
use std::cell::OnceCell;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Device configurations every kernel is checked under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// All optional features the adapter offers.
    Full,
    /// No optional feature (no subgroups, no f16, no timestamps).
    Bare,
    /// A 64 KiB binding limit: every tensor above it is sharded.
    SmallBinding,
}

pub const SMALL_BINDING: u64 = 64 << 10;

/// The weight types the GPU kernels take (those with a GPU layout), in `GgmlType::ALL`'s
/// order.
pub fn gpu_types() -> Vec<hearth::quant::GgmlType> {
    hearth::quant::GgmlType::ALL
        .into_iter()
        .filter(|t| hearth::gpu::gpu_layout(*t).is_some())
        .collect()
}

/// Devices no running test holds, per configuration (`Lease`).
static POOL: [Mutex<Vec<Arc<Gpu>>>; 3] = [const { Mutex::new(Vec::new()) }; 3];

/// The devices one test thread holds; its end returns them to `POOL` (a device must not
/// be dropped in a thread-local destructor: wgpu's debug lock tracing reads thread-locals
/// already gone there).
struct Lease([OnceCell<Arc<Gpu>>; 3]);

impl Drop for Lease {
    fn drop(&mut self) {
        for (cell, pool) in self.0.iter_mut().zip(&POOL) {
            if let Some(g) = cell.take() {
                pool.lock().unwrap_or_else(|e| e.into_inner()).push(g);
            }
        }
    }
}

thread_local! {
    static LEASE: Lease = const { Lease([const { OnceCell::new() }; 3]) };
}

/// The device of configuration `c` for this test thread: tests running at once hold
/// devices of their own (libtest runs each test on a thread of its own), reused by later
/// tests. lavapipe compiles a pipeline when it is first dispatched, on the device's one
/// queue thread: tests sharing one device compiled one at a time however many test
/// threads ran them.
pub fn gpu(c: Config) -> Arc<Gpu> {
    compile_fast_in_kernel_twins();
    LEASE.with(|lease| {
        lease.0[c as usize]
            .get_or_init(|| {
                let pooled = POOL[c as usize]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                pooled.unwrap_or_else(|| {
                    let mut o = GpuOptions::from_env().expect("HEARTH_BACKEND / HEARTH_ADAPTER");
                    match c {
                        Config::Full => {}
                        Config::Bare => o.features = OptionalFeatures::NONE,
                        Config::SmallBinding => o.max_binding_override = Some(SMALL_BINDING),
                    }
                    Gpu::new_blocking(&o)
                        .expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
                })
            })
            .clone()
    })
}

/// The kernel twin binaries (`tests/kernels*.rs`) build hundreds of shader variants each
/// and run them on a few kilobytes, so with a cold Mesa cache nearly all their time is
/// lavapipe's LLVM compiling (`matvec_every_table_geometry`: 232 s cold, 7 s warm). In
/// them, and where `GALLIVM_PERF` is unset, lavapipe skips LLVM's optimization passes
/// (`nopt`): kernels_attention took 316 instead of 397 s of CPU with a cold cache, the
/// results are the same code's (no bound changes). Not for the rest: a real model's
/// forward passes run about 3x slower unoptimized (feed_ahead 142 against 52 s of CPU,
/// cache warm). Set before this process's first device (the `Once` holds other test
/// threads here), so no thread reads the environment in Mesa meanwhile.
fn compile_fast_in_kernel_twins() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exe = std::env::current_exe().ok();
        let name = exe
            .as_deref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        if name.is_some_and(|n| n.starts_with("kernels"))
            && std::env::var_os("GALLIVM_PERF").is_none()
        {
            std::env::set_var("GALLIVM_PERF", "nopt");
        }
    });
}

pub fn storage(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test input"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

pub fn storage_u32(gpu: &Gpu, data: &[u32]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test ids"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

/// An output buffer pre-filled with NaN, so anything the kernel fails to write shows.
pub fn output(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    storage(gpu, &vec![f32::NAN; len])
}

pub fn read(gpu: &Gpu, buf: &wgpu::Buffer, len: usize) -> Vec<f32> {
    pollster::block_on(hearth::gpu::read_f32(gpu, buf, 0, len as u64)).expect("readback")
}

/// Normalized mean squared error: mse(got, want) / mse(want, 0). NaN anywhere gives +inf.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let (mut err, mut norm) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        err += (*g as f64 - *w as f64).powi(2);
        norm += (*w as f64).powi(2);
    }
    if norm == 0.0 {
        return if err == 0.0 { 0.0 } else { f64::INFINITY };
    }
    err / norm
}

/// Asserts NMSE below `bound` with a message naming the case and the worst element.
pub fn assert_close(case: &str, got: &[f32], want: &[f32], bound: f64) {
    let e = nmse(got, want);
    if e > bound || e.is_nan() {
        let (i, d) = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .enumerate()
            .fold(
                (0, 0f32),
                |a, (i, d)| if d > a.1 || d.is_nan() { (i, d) } else { a },
            );
        panic!(
            "{case}: NMSE {e:.3e} > {bound:.0e}; worst element {i}: got {} want {} (diff {d})",
            got[i], want[i]
        );
    }
}

/// Uniform random values in [-1, 1).
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = hearth::quant::Rng::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// A test fixture found through the environment variable `var`, else at `default` (a path
/// under `$HOME`). `None` (the test skips, with a note) only on a developer's machine:
/// when `var` is set, or when `CI` is set, a missing fixture fails the test instead, so
/// nothing in CI passes without running. `fetch` names the script that provides it.
pub fn fixture(var: &str, default: &str, fetch: &str) -> Option<std::path::PathBuf> {
    let explicit = std::env::var_os(var);
    let p = match &explicit {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(default)
        }
    };
    if p.exists() {
        return Some(p);
    }
    if explicit.is_some() {
        panic!("{var}={} does not exist; run {fetch}", p.display());
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set and {} is missing: set {var} or run {fetch} (tests never skip in CI)",
            p.display()
        );
    }
    eprintln!(
        "note: {} not found; run {fetch} (CI always has it); skipping",
        p.display()
    );
    None
}

/// Path of the real Gemma 3 270M model (`HEARTH_TEST_MODEL`), if present.
pub fn real_model() -> Option<std::path::PathBuf> {
    fixture(
        "HEARTH_TEST_MODEL",
        ".cache/hearth/gemma-3-270m-q4_k_m.gguf",
        "scripts/fetch-model.sh",
    )
}

/// Path of SmolLM2-135M-Instruct Q4_1 (`HEARTH_TEST_CHAT_MODEL`), if present.
pub fn chat_model() -> Option<std::path::PathBuf> {
    fixture(
        "HEARTH_TEST_CHAT_MODEL",
        ".cache/hearth/SmolLM2-135M-Instruct.Q4_1.gguf",
        "scripts/fetch-model.sh",
    )
}

/// llama.cpp's vocabularies and chat templates (`HEARTH_LLAMA_MODELS`), if present.
pub fn llama_models() -> Option<std::path::PathBuf> {
    fixture(
        "HEARTH_LLAMA_MODELS",
        ".cache/hearth/llama-models-0.3.36",
        "scripts/fetch-llama-src.sh",
    )
}

/// llama.cpp's goldens for the real model (tests/fixtures/llama_goldens.json, written by
/// scripts/gen-llama-goldens.py).
pub fn llama_goldens() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llama_goldens.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// llama.cpp's goldens for the chat model SmolLM2-135M-Instruct
/// (tests/fixtures/llama_goldens_smollm2.json, `scripts/gen-llama-goldens.py --prompts
/// chat`): logits as for Gemma, plus llama.cpp's token ids under "tokenize".
pub fn llama_goldens_smollm2() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llama_goldens_smollm2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The index of the largest value (the last of equal ones), as the CPU twin of a GPU
/// argmax over exact logits.
pub fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("a non-empty vector")
        .0 as u32
}
