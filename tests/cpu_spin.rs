//! The spinners that keep a CPU adapter's cores awake during waits (`gpu::spin`): they
//! spin while a wait is held and park once it has ended, in a process of their own (no
//! other test's waits).
use hearth::gpu::spin;
use std::time::{Duration, Instant};

fn until(what: impl Fn() -> bool, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[test]
fn spinners_spin_while_a_wait_is_held_then_park() {
    if !spin::enabled() {
        // Not Linux, a CPU quota, or HEARTH_CPU_SPIN=0: holding a wait starts nothing.
        assert!(spin::hold().is_none());
        assert_eq!(spin::status(), (0, 0));
        return;
    }
    let held = spin::hold().expect("spinning is enabled");
    if !spin::idle_priority_allowed() {
        // A sandbox that refuses SCHED_IDLE: no spinner may run at normal priority.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(spin::status(), (0, 0));
        return;
    }
    assert!(
        until(|| spin::status().0 >= 1, 5),
        "no spinner spun during a held wait: {:?}",
        spin::status()
    );
    assert!(spin::status().1 <= spin::MAX_SPINNERS);
    drop(held);
    // They linger for spin::LINGER after the wait, then park.
    assert!(
        until(|| spin::status().0 == 0, 5),
        "spinners kept spinning after the wait ended: {:?}",
        spin::status()
    );
    // A new wait wakes them again.
    let again = spin::hold().expect("enabled");
    assert!(
        until(|| spin::status().0 >= 1, 5),
        "parked spinners did not wake"
    );
    drop(again);
    assert!(until(|| spin::status().0 == 0, 5));
    // A CPU adapter's `awake` guard (taken where a caller blocks on it outside a wait,
    // as the profiler's readback submit) holds them the same way; other adapters' none.
    let gpu = hearth::gpu::Gpu::new_blocking(&hearth::gpu::GpuOptions::from_env().unwrap())
        .expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let awake = gpu.awake();
    assert_eq!(
        awake.is_some(),
        gpu.info.device_type == wgpu::DeviceType::Cpu,
        "{:?}",
        gpu.info
    );
    if awake.is_some() {
        assert!(
            until(|| spin::status().0 >= 1, 5),
            "no spinner spun while a CPU adapter was held awake"
        );
        drop(awake);
        assert!(until(|| spin::status().0 == 0, 5));
    }
}
