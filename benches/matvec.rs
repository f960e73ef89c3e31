//! Matvec throughput per block type on the current adapter: effective GB/s = bytes of
//! weights (as stored in GGUF) read per second, timed over many dispatches with a device
//! sync. Run: `cargo bench --bench matvec [-- TYPE...]`; size with HEARTH_BENCH_ROWS /
//! HEARTH_BENCH_COLS (default 4096 x 4096), adapter with HEARTH_BACKEND / HEARTH_ADAPTER.
//! The batched-decode matvec runs HEARTH_BENCH_SEQS (default 8) token columns; its
//! speedup is that many single matvecs' time over its own. Prefill (HEARTH_BENCH_TOKENS,
//! default 64) runs the kernel prompts use: the tiled matmul, or on CPU adapters with
//! subgroups the batched matvec over every token; `HEARTH_BENCH_PREFILL=matmul` times the
//! matmul there too (the portable tiles, or with `HEARTH_COOP_MATRIX=1` the
//! cooperative-matrix one where the device has them).

use hearth::gpu::{gpu_layout, Gpu, GpuOptions, GpuTensor};
use hearth::kernels::{MatMul, MatVec, MatVecBatch, Op, Rows, Step, StepBuffer, Tokens, View};
use hearth::quant::{random_blocks, GgmlType};
use std::time::Instant;
use wgpu::util::DeviceExt;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn buffer(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    let data: Vec<f32> = (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&data),
            // UNIFORM as the model's activations (the matvecs' x windows).
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        })
}

/// Seconds per run of `encode`, averaged over enough runs to take ~0.5 s.
fn time(gpu: &Gpu, encode: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> f64 {
    let run = |n: usize| {
        let t0 = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..n {
            let mut pass = enc.begin_compute_pass(&Default::default());
            encode(&mut pass);
        }
        gpu.submit([enc.finish()]);
        gpu.wait().expect("device sync");
        t0.elapsed().as_secs_f64()
    };
    run(2); // warm up: pipeline compilation, first-touch of memory
    let once = run(1).max(1e-6);
    let n = ((0.5 / once) as usize).clamp(3, 2000);
    run(n) / n as f64
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_uppercase())
        .collect();
    let rows = env_usize("HEARTH_BENCH_ROWS", 4096);
    let cols = env_usize("HEARTH_BENCH_COLS", 4096);
    let tokens = env_usize("HEARTH_BENCH_TOKENS", 64);
    let seqs = env_usize("HEARTH_BENCH_SEQS", 8).clamp(1, tokens);
    let gpu = Gpu::new_blocking(&GpuOptions::from_env().expect("options")).expect("GPU adapter");
    println!("adapter: {}", gpu.describe());
    println!("features: {:?}", gpu.features);
    let force_matmul = std::env::var("HEARTH_BENCH_PREFILL").is_ok_and(|v| v == "matmul");
    println!("matvec {rows} x {cols} (decode), prefill with {tokens} tokens\n");
    println!("batched matvec with {seqs} sequences\n");
    println!("| type   | weights MB | matvec us | matvec GB/s | batch us | batch speedup | prefill ms | prefill GFLOP/s |");
    println!("|--------|-----------:|----------:|------------:|---------:|--------------:|----------:|---------------:|");
    let x = buffer(&gpu, cols * tokens);
    let y = buffer(&gpu, rows * tokens);
    let step = StepBuffer::new(&gpu, Step::new(0, tokens as u32));
    for ty in GgmlType::ALL {
        if gpu_layout(ty).is_none()
            || (!filter.is_empty() && !filter.iter().any(|f| f == ty.name()))
        {
            continue;
        }
        let cols = cols.div_ceil(ty.block_elems()) * ty.block_elems();
        let raw = random_blocks(ty, rows * cols / ty.block_elems(), 1);
        let w =
            GpuTensor::upload(&gpu, ty.name(), ty, cols as u64, rows as u64, &raw).expect("upload");
        let mv = MatVec::new(&gpu, &w, View::of(&x), View::of(&y)).expect("matvec");
        let tok = Tokens {
            max: tokens as u32,
            step: &step,
        };
        let (xr, yr) = (Rows::packed(&x, cols as u32), Rows::packed(&y, rows as u32));
        let mm = MatMul::new(&gpu, &w, xr, yr, tok).expect("matmul");
        let tok_b = Tokens {
            max: seqs as u32,
            step: &step,
        };
        let mb = MatVecBatch::new(&gpu, &w, xr, yr, tok_b, None).expect("matvec_batch");
        let t_mv = time(&gpu, &|p| mv.encode(p));
        let t_b = time(&gpu, &|p| {
            for d in mb.for_tokens(seqs as u32) {
                d.encode(p)
            }
        });
        // Prefill's kernel: the batched matvec over every token where it shares x (CPU
        // adapters with subgroups), else the tiled matmul.
        let t_mm = if hearth::kernels::matvec_batch::shares_x_on(&gpu, &w) && !force_matmul {
            let tok_p = Tokens {
                max: tokens as u32,
                step: &step,
            };
            let pre = MatVecBatch::new(&gpu, &w, xr, yr, tok_p, None).expect("prefill");
            time(&gpu, &|p| {
                for d in pre.for_tokens(tokens as u32) {
                    d.encode(p)
                }
            })
        } else {
            time(&gpu, &|p| mm.encode(p))
        };
        let bytes = w.file_bytes() as f64;
        let flops = 2.0 * rows as f64 * cols as f64 * tokens as f64;
        println!(
            "| {:<6} | {:>10.1} | {:>9.0} | {:>11.2} | {:>8.0} | {:>13.2} | {:>9.2} | {:>14.1} |",
            ty.name(),
            bytes / 1e6,
            t_mv * 1e6,
            bytes / t_mv / 1e9,
            t_b * 1e6,
            seqs as f64 * t_mv / t_b,
            t_mm * 1e3,
            flops / t_mm / 1e9
        );
    }
}
