//! Keeping a CPU adapter's cores awake while it runs hearth's work.
//!
//! A CPU rasterizer (lavapipe) runs each dispatch on worker threads that sleep between
//! dispatches: its queue thread wakes them for every dispatch and they wake it when the
//! dispatch is done. A core that went idle meanwhile has halted, and waking a halted core
//! costs tens of microseconds (a deep C-state on bare metal, an exit to the hypervisor in
//! a VM) several times per dispatch, while a small model's decode step is 100-160 short
//! dispatches. On a 2-vCPU VM (Firecracker, Xeon with AVX-512, 2026-12-06) the workers
//! were busy only about 40% of a SmolLM2 decode step each, the rest of it waiting.
//! llama.cpp's CPU backend avoids the same cost by spinning its threads between ops.
//!
//! Here one thread per allowed core, pinned to it, spins at `SCHED_IDLE` priority while
//! the process waits for the adapter (`Gpu::wait_for`) and for `LINGER` after the last
//! wait ends (the CPU's work between steps), then parks. A `SCHED_IDLE` thread runs only
//! when its core has nothing else to run and yields it the moment another thread wakes,
//! so the spinners take no time from the rasterizer's threads or the caller: they only
//! keep the cores from halting. Linux only (elsewhere `hold` does nothing), and not
//! under a CPU quota smaller than the cores the process may run on (a container's
//! `--cpus`: the spinners would spend the quota the work needs and get the group
//! throttled); off with `HEARTH_CPU_SPIN=0`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the spinners keep spinning after the last wait ends: the CPU's own work
/// between two steps (sampling, recording the next step) is well under this.
pub const LINGER: Duration = Duration::from_millis(20);

/// Most spinners: lavapipe's most worker threads (32) and its queue thread.
pub const MAX_SPINNERS: usize = 33;

/// The process's spinners, started by the first `hold`.
struct Pool {
    /// Waits in progress.
    waiting: AtomicUsize,
    /// When the last wait ended, in nanoseconds since `start`.
    last_end: AtomicU64,
    start: Instant,
    /// Spinners spinning now (`status`).
    spinning: AtomicUsize,
    /// Spinners started (those that could not lower their priority exit at once).
    started: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

impl Pool {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether spinners should spin: a wait is in progress or ended within `LINGER`.
    fn busy(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
            || self
                .now_ns()
                .saturating_sub(self.last_end.load(Ordering::Acquire))
                < LINGER.as_nanos() as u64
    }
}

static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

/// While held, the spinners spin (and for `LINGER` after). Dropping it ends the wait.
pub struct Hold(&'static Pool);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.last_end.store(self.0.now_ns(), Ordering::Release);
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether spinning is enabled for this process: Linux, no CPU quota below the cores
/// it may run on, and not turned off with `HEARTH_CPU_SPIN=0`.
pub fn enabled() -> bool {
    let off = matches!(
        std::env::var("HEARTH_CPU_SPIN").as_deref().map(str::trim),
        Ok("0")
    );
    // available_parallelism counts a cgroup quota; the affinity mask does not.
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    cfg!(target_os = "linux") && !off && usable >= os::allowed_cores().len()
}

/// Starts a wait: the spinners (started on the first call) spin until the returned
/// `Hold` is dropped and for `LINGER` after. `None` where spinning is off.
pub fn hold() -> Option<Hold> {
    let pool = (*POOL.get_or_init(start))?;
    if pool.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
        // Under the lock, so a spinner between its check and its wait cannot miss it.
        let _g = pool.park.lock().unwrap_or_else(|e| e.into_inner());
        pool.wake.notify_all();
    }
    Some(Hold(pool))
}

/// Spinners spinning now and spinners running (0, 0 where spinning is off or has not
/// started).
pub fn status() -> (usize, usize) {
    match POOL.get().copied().flatten() {
        Some(p) => (
            p.spinning.load(Ordering::Acquire),
            p.started.load(Ordering::Acquire),
        ),
        None => (0, 0),
    }
}

fn start() -> Option<&'static Pool> {
    if !enabled() {
        return None;
    }
    let mut cores = os::allowed_cores();
    // lavapipe runs at most 32 worker threads and its queue thread: more spinners would
    // only keep cores awake that none of its threads runs on.
    cores.truncate(MAX_SPINNERS);
    if cores.is_empty() {
        return None;
    }
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        waiting: AtomicUsize::new(0),
        last_end: AtomicU64::new(0),
        start: Instant::now(),
        spinning: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        park: Mutex::new(()),
        wake: Condvar::new(),
    }));
    for core in cores {
        let spawned = std::thread::Builder::new()
            .name(format!("hearth-spin-{core}"))
            .spawn(move || spin(pool, core));
        if spawned.is_err() {
            break;
        }
    }
    Some(pool)
}

/// A spinner's life: lower its priority (or exit: a spinner at normal priority would
/// compete with the work), then spin while the pool is busy and park while it is not.
fn spin(pool: &'static Pool, core: usize) {
    if !os::idle_priority_on(core) {
        return;
    }
    pool.started.fetch_add(1, Ordering::AcqRel);
    loop {
        if pool.busy() {
            pool.spinning.fetch_add(1, Ordering::AcqRel);
            while pool.busy() {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            pool.spinning.fetch_sub(1, Ordering::AcqRel);
        }
        let g = pool.park.lock().unwrap_or_else(|e| e.into_inner());
        // Parked until a wait starts (the timeout only guards against a lost wake-up).
        let _ = pool
            .wake
            .wait_timeout_while(g, Duration::from_secs(1), |_| {
                pool.waiting.load(Ordering::Acquire) == 0
            });
    }
}

/// Whether this process may put a thread at `SCHED_IDLE` (a container's seccomp
/// profile may refuse it): tried on a throwaway thread.
pub fn idle_priority_allowed() -> bool {
    std::thread::spawn(os::idle_priority_allowed)
        .join()
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
mod os {
    /// The cores this process may run on (its affinity mask).
    pub fn allowed_cores() -> Vec<usize> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    /// Puts the calling thread at `SCHED_IDLE` and, where allowed, on `core` only.
    /// Whether the priority was lowered (pinning is best effort).
    pub fn idle_priority_on(core: usize) -> bool {
        if !idle_priority_allowed() {
            return false;
        }
        // SAFETY: acts on the calling thread (pid 0) with an initialized set of the size
        // it is given.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        true
    }

    /// Lowers the calling thread to `SCHED_IDLE`: whether that was allowed.
    pub fn idle_priority_allowed() -> bool {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: acts on the calling thread with an initialized argument.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    pub fn allowed_cores() -> Vec<usize> {
        Vec::new()
    }

    pub fn idle_priority_on(_core: usize) -> bool {
        false
    }

    pub fn idle_priority_allowed() -> bool {
        false
    }
}
