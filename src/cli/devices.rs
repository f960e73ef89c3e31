//! `hearth devices`: every adapter wgpu sees, in the order `--adapter N` uses.

use super::GpuArgs;
use crate::gpu::{list_adapters, AdapterSummary};

/// Prints each adapter with the limits and features hearth cares about.
pub fn run(args: &GpuArgs) -> anyhow::Result<()> {
    let backend = args.options()?.backend;
    let adapters = pollster::block_on(list_adapters(backend));
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found (on Linux without a GPU, install Mesa's lavapipe: mesa-vulkan-drivers)");
    }
    for (_, s) in &adapters {
        print_adapter(s);
    }
    Ok(())
}

/// Prints one adapter: name, backend, type, key limits, optional features.
pub fn print_adapter(s: &AdapterSummary) {
    let i = &s.info;
    println!("[{}] {}", s.index, crate::gpu::describe_info(i));
    println!("    vendor 0x{:04x} device 0x{:04x}", i.vendor, i.device);
    print_limits(&s.limits, s.features);
    let f = s.features;
    let coop = crate::gpu::pick_coop(
        &s.coop_shapes,
        f.contains(wgpu::Features::SHADER_F16),
        f.contains(wgpu::Features::SUBGROUP),
        i,
        &s.limits,
    );
    let shapes: Vec<String> = s
        .coop_shapes
        .iter()
        .map(|p| {
            format!(
                "{}x{}x{} {:?}->{:?}",
                p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
            )
        })
        .collect();
    let used = match coop {
        Some(c) => format!(
            "with HEARTH_COOP_MATRIX=1 the matmul uses {0}x{0}, {1} inputs",
            c.size,
            if c.f16_inputs { "f16" } else { "f32" }
        ),
        None => "none hearth builds for".into(),
    };
    match shapes.is_empty() {
        true => println!("    cooperative matrices: none"),
        false => println!("    cooperative matrices: {} ({used})", shapes.join(", ")),
    }
}

/// Prints the limits and features that decide how hearth runs on a device.
pub fn print_limits(l: &wgpu::Limits, f: wgpu::Features) {
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64);
    println!(
        "    max storage binding {}, max uniform binding {} KiB, max buffer {}, {} storage buffers per stage",
        mib(l.max_storage_buffer_binding_size),
        l.max_uniform_buffer_binding_size / 1024,
        mib(l.max_buffer_size),
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "    workgroup: {} invocations, {} KiB shared, {} groups per dimension",
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroup_storage_size / 1024,
        l.max_compute_workgroups_per_dimension
    );
    let has = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
    println!(
        "    shader-f16 {}, subgroups {}, timestamp queries {}",
        has(wgpu::Features::SHADER_F16),
        has(wgpu::Features::SUBGROUP),
        has(wgpu::Features::TIMESTAMP_QUERY)
    );
}
