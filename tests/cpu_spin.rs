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
    // Untimed holds run no trial: spinning stays on, the first trial still to come.
    let said = spin::describe().expect("the pool has started");
    assert!(
        said.starts_with("on") && (said.contains("no trial") || said.contains("=1")),
        "{said}"
    );
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

/// Feeds `n` intervals to `t`, each `on` ns where the tuner spins and `off` where it
/// does not, times `drift(i)` for the i-th; the modes it asked for, one per interval.
fn feed(
    t: &mut spin::Tuner,
    n: usize,
    on: f64,
    off: f64,
    drift: impl Fn(usize) -> f64,
) -> Vec<bool> {
    (0..n)
        .map(|i| {
            let spinning = t.spinning();
            let base = if spinning { on } else { off };
            t.observe((base * drift(i)) as u64);
            spinning
        })
        .collect()
}

#[test]
fn the_tuner_keeps_whichever_runs_the_faster_steps() {
    let trial = 2 * spin::Tuner::PAIRS * spin::Tuner::BLOCK;
    let flat = |_| 1.0;
    // Spinning 10% faster: kept on. The trial spins on, off, off, on, block by block.
    let mut t = spin::Tuner::new();
    assert!(t.spinning() && t.trying());
    let modes = feed(&mut t, trial, 30e6, 33e6, flat);
    let blocks: Vec<bool> = modes.chunks(spin::Tuner::BLOCK).map(|b| b[0]).collect();
    assert_eq!(
        blocks,
        [true, false, false, true, true, false, false, true, true, false]
    );
    assert!(modes
        .chunks(spin::Tuner::BLOCK)
        .all(|b| b.iter().all(|&m| m == b[0])));
    assert!(!t.trying());
    assert!(t.spinning());
    assert!((t.ratio().unwrap() - 30.0 / 33.0).abs() < 1e-3);
    // Spinning 10% slower: turned off, and held off until the next trial.
    let mut t = spin::Tuner::new();
    feed(&mut t, trial, 33e6, 30e6, flat);
    assert!(!t.spinning() && !t.trying());
    let held = feed(&mut t, spin::Tuner::RECHECK - 1, 33e6, 30e6, flat);
    assert!(held.iter().all(|&m| !m));
    // The next trial starts in the mode in force (off, then on, on, off), and finds
    // spinning faster now.
    feed(&mut t, 1, 33e6, 30e6, flat);
    assert!(t.trying() && !t.spinning());
    let modes = feed(&mut t, trial, 20e6, 30e6, flat);
    let blocks: Vec<bool> = modes.chunks(spin::Tuner::BLOCK).map(|b| b[0]).collect();
    assert_eq!(
        blocks,
        [false, true, true, false, false, true, true, false, false, true]
    );
    assert!(!t.trying() && t.spinning());
    // A tuner starting off begins there and still finds the faster.
    let mut t = spin::Tuner::starting(false);
    assert!(t.trying() && !t.spinning());
    feed(&mut t, trial, 30e6, 33e6, flat);
    assert!(!t.trying() && t.spinning());
    let mut t = spin::Tuner::starting(false);
    feed(&mut t, trial, 33e6, 30e6, flat);
    assert!(!t.trying() && !t.spinning());
}

#[test]
fn the_tuner_sees_through_drift_and_outliers() {
    let trial = 2 * spin::Tuner::PAIRS * spin::Tuner::BLOCK;
    // A context growing the step by 1% per step, spinning 5% slower: still off.
    let mut t = spin::Tuner::new();
    feed(&mut t, trial, 31.5e6, 30e6, |i| 1.0 + 0.01 * i as f64);
    assert!(!t.trying());
    assert!(!t.spinning(), "ratio {:?}", t.ratio());
    // The same with spinning 5% faster: on.
    let mut t = spin::Tuner::new();
    feed(&mut t, trial, 28.5e6, 30e6, |i| 1.0 + 0.01 * i as f64);
    assert!(t.spinning(), "ratio {:?}", t.ratio());
    // The work changing within the trial (one sequence, then a batched step 2.7x as
    // long), spinning 8% slower: off.
    let mut t = spin::Tuner::new();
    feed(
        &mut t,
        trial,
        32.4e6,
        30e6,
        |i| if i < 31 { 1.0 } else { 2.7 },
    );
    assert!(!t.spinning() && !t.trying(), "ratio {:?}", t.ratio());
    // One long interval in every block (a prompt chunk between steps) moves no median,
    // and intervals of 0 or past LONGEST_NS are not counted at all.
    let mut t = spin::Tuner::new();
    feed(&mut t, trial, 33e6, 30e6, |i| {
        if i % spin::Tuner::BLOCK == 2 {
            20.0
        } else {
            1.0
        }
    });
    assert!(!t.spinning() && !t.trying(), "ratio {:?}", t.ratio());
    let mut t = spin::Tuner::new();
    for _ in 0..100 {
        t.observe(0);
        t.observe(spin::Tuner::LONGEST_NS + 1);
    }
    assert!(t.trying() && t.spinning());
}
