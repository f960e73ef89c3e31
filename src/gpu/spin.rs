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
//!
//! Whether spinning pays depends on the host, and on a VM on the hour: on the 2-vCPU
//! Xeon VM above it doubled SmolLM2's decode, while on a 2-vCPU AMD EPYC (Zen 4) VM of
//! the same kind (2026-12-07) every alternated pair ran faster without it for an hour
//! (SmolLM2 tg128 33.0 -> 36.6 tokens/s, Gemma 3 19.7 -> 20.8, pp512 171 -> 185: a
//! worker that wakes on a core where a spinner runs must preempt it first), and alike or
//! slower in the slower spell after it. So by
//! default the process finds out (`Tuner`): the intervals between the ends of
//! back-to-back waits (`hold_wait`, a decode step's period once the loop runs) are timed
//! in alternating blocks with and without spinning, the faster is kept, and the trial is
//! repeated now and then. `HEARTH_CPU_SPIN=1` spins in every wait without trials.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Whether waits are spun through now (`Tuner`'s pick, or always).
    spin_on: AtomicBool,
    /// The trials, where they run (not with `HEARTH_CPU_SPIN=1`).
    tuner: Option<Mutex<Timed>>,
    park: Mutex<()>,
    wake: Condvar,
}

/// The tuner and the end of the last timed wait (ns since the pool's start, 0: none).
struct Timed {
    tuner: Tuner,
    last_end: u64,
}

impl Pool {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether spinners should spin: spinning is on and a wait is in progress or ended
    /// within `LINGER`.
    fn busy(&self) -> bool {
        self.spin_on.load(Ordering::Acquire)
            && (self.waiting.load(Ordering::Acquire) > 0
                || self
                    .now_ns()
                    .saturating_sub(self.last_end.load(Ordering::Acquire))
                    < LINGER.as_nanos() as u64)
    }

    /// Whether a parked spinner should wake: spinning is on and a wait is in progress.
    fn wanted(&self) -> bool {
        self.spin_on.load(Ordering::Acquire) && self.waiting.load(Ordering::Acquire) > 0
    }

    /// A timed wait that started at `start` ended at `end`: where it followed the last
    /// one back to back (started within `LINGER` of its end), the interval between their
    /// ends goes to the tuner.
    fn timed(&self, start: u64, end: u64) {
        let Some(t) = &self.tuner else { return };
        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
        let prev = std::mem::replace(&mut t.last_end, end);
        if prev == 0 || start < prev || start - prev > LINGER.as_nanos() as u64 {
            return;
        }
        let trying = t.tuner.trying();
        let on = t.tuner.observe(end - prev);
        self.spin_on.store(on, Ordering::Release);
        if trying && !t.tuner.trying() {
            log::debug!(
                "cpu spin trial: intervals with spinning {:.3}x those without; spinning {}",
                t.tuner.ratio().unwrap_or(f64::NAN),
                if on { "on" } else { "off" }
            );
        }
    }
}

/// Picks between spinning and not from the intervals between the ends of back-to-back
/// waits (a decode step's period). A trial takes `PAIRS` pairs of blocks of `BLOCK`
/// intervals, one block of each pair with spinning and one without, in the order a, b,
/// b, a from the mode in force when it starts (a steady drift, as a growing context's,
/// weighs on both alike); each pair's ratio of the blocks' medians says which ran
/// faster, and the median of the ratios decides (a pair that straddles a change of
/// work, from one sequence to eight, say, is one outlier of five). The pick holds for
/// `RECHECK` intervals, then a new trial runs.
#[derive(Clone, Debug)]
pub struct Tuner {
    /// Intervals of the block in progress (ns).
    block: Vec<u64>,
    /// The trial's finished blocks' medians, in order.
    medians: Vec<u64>,
    /// Intervals left before the next trial (0: a trial is running).
    holding: usize,
    /// The mode now.
    spin: bool,
    /// The mode of the trial's first block.
    first: bool,
    /// The last trial's median ratio (spinning's interval over not spinning's).
    ratio: Option<f64>,
}

impl Default for Tuner {
    fn default() -> Self {
        Self::new()
    }
}

impl Tuner {
    /// Intervals per block of a trial.
    pub const BLOCK: usize = 6;
    /// Pairs of blocks per trial.
    pub const PAIRS: usize = 5;
    /// Intervals between trials: on a VM the better mode can change within minutes
    /// (the Zen 4 host of 2026-12-07 ran decode faster without spinning at 17:45 and
    /// alike or faster with it at 18:35), and a trial costs about half its 60 intervals
    /// in the slower mode.
    pub const RECHECK: usize = 1000;
    /// Intervals longer than this are not a step's (a pause, a long prompt) and are
    /// left out.
    pub const LONGEST_NS: u64 = 2_000_000_000;

    /// A tuner starting a trial, spinning first.
    pub fn new() -> Self {
        Self::starting(true)
    }

    /// A tuner starting a trial in mode `spin`.
    pub fn starting(spin: bool) -> Self {
        Self {
            block: Vec::with_capacity(Self::BLOCK),
            medians: Vec::with_capacity(2 * Self::PAIRS),
            holding: 0,
            spin,
            first: spin,
            ratio: None,
        }
    }

    /// Whether to spin now.
    pub fn spinning(&self) -> bool {
        self.spin
    }

    /// Whether a trial is running.
    pub fn trying(&self) -> bool {
        self.holding == 0
    }

    /// The last finished trial's median ratio of the intervals with spinning to those
    /// without (below 1: spinning ran faster).
    pub fn ratio(&self) -> Option<f64> {
        self.ratio
    }

    /// Whether block `i` of the trial spins: the first mode, the other, the other, the
    /// first, repeated.
    fn block_spins(&self, i: usize) -> bool {
        matches!(i % 4, 0 | 3) == self.first
    }

    /// Takes one interval (ns); returns whether to spin from now on.
    pub fn observe(&mut self, interval_ns: u64) -> bool {
        if interval_ns == 0 || interval_ns > Self::LONGEST_NS {
            return self.spin;
        }
        if self.holding > 0 {
            self.holding -= 1;
            if self.holding == 0 {
                self.medians.clear();
                self.block.clear();
                // The next trial starts in the mode in force.
                self.first = self.spin;
            }
            return self.spin;
        }
        self.block.push(interval_ns);
        if self.block.len() < Self::BLOCK {
            return self.spin;
        }
        self.block.sort_unstable();
        self.medians.push(self.block[Self::BLOCK / 2]);
        self.block.clear();
        if self.medians.len() < 2 * Self::PAIRS {
            self.spin = self.block_spins(self.medians.len());
            return self.spin;
        }
        // Each pair's spinning block's median over its other block's.
        let mut ratios: Vec<f64> = self
            .medians
            .chunks(2)
            .enumerate()
            .map(|(p, m)| {
                let (on, off) = if self.block_spins(2 * p) {
                    (m[0], m[1])
                } else {
                    (m[1], m[0])
                };
                on as f64 / off.max(1) as f64
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
        self.spin = median < 1.0;
        self.ratio = Some(median);
        self.holding = Self::RECHECK;
        self.spin
    }
}

static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

/// While held, the spinners spin (and for `LINGER` after) where spinning is on.
/// Dropping it ends the wait.
pub struct Hold {
    pool: &'static Pool,
    /// A timed wait's start (`hold_wait`).
    start: Option<u64>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let end = self.pool.now_ns();
        if let Some(start) = self.start {
            self.pool.timed(start, end);
        }
        self.pool.last_end.store(end, Ordering::Release);
        self.pool.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn setting() -> Option<String> {
    std::env::var("HEARTH_CPU_SPIN")
        .ok()
        .map(|v| v.trim().to_string())
}

/// Whether spinning is enabled for this process: Linux, no CPU quota below the cores
/// it may run on, and not turned off with `HEARTH_CPU_SPIN=0`.
pub fn enabled() -> bool {
    let off = setting().is_some_and(|v| v == "0");
    // available_parallelism counts a cgroup quota; the affinity mask does not.
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    cfg!(target_os = "linux") && !off && usable >= os::allowed_cores().len()
}

/// Starts a wait: the spinners (started on the first call) spin until the returned
/// `Hold` is dropped and for `LINGER` after, while spinning is on. `None` where
/// spinning is disabled.
pub fn hold() -> Option<Hold> {
    hold_from(false)
}

/// `hold` for a wait on the adapter's work (`Gpu::wait_for`), timed for the tuner.
pub fn hold_wait() -> Option<Hold> {
    hold_from(true)
}

fn hold_from(timed: bool) -> Option<Hold> {
    let pool = (*POOL.get_or_init(start))?;
    let start_ns = timed.then(|| pool.now_ns());
    if pool.waiting.fetch_add(1, Ordering::AcqRel) == 0 && pool.spin_on.load(Ordering::Acquire) {
        // Under the lock, so a spinner between its check and its wait cannot miss it.
        let _g = pool.park.lock().unwrap_or_else(|e| e.into_inner());
        pool.wake.notify_all();
    }
    Some(Hold {
        pool,
        start: start_ns,
    })
}

/// Whether waits are spun through now, and why, for reports of speed (`hearth bench`):
/// `None` where spinning is disabled or has not started (no wait on a CPU adapter yet).
pub fn describe() -> Option<String> {
    let pool = POOL.get().copied().flatten()?;
    let on = if pool.spin_on.load(Ordering::Acquire) {
        "on"
    } else {
        "off"
    };
    let Some(t) = &pool.tuner else {
        return Some(format!("{on} (HEARTH_CPU_SPIN=1)"));
    };
    let t = t.lock().unwrap_or_else(|e| e.into_inner());
    Some(match t.tuner.ratio() {
        Some(r) => format!(
            "{on}, by the last trial (steps {r:.2}x as long with spinning as without{})",
            if t.tuner.trying() {
                "; another trial running"
            } else {
                ""
            }
        ),
        None => format!(
            "{on}, no trial finished yet ({} back-to-back waits make one)",
            2 * Tuner::PAIRS * Tuner::BLOCK
        ),
    })
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
    // Trials unless forced on, the first starting with spinning (as before there were
    // trials: a process that never runs one keeps spinning).
    let tuned = setting().as_deref() != Some("1");
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        waiting: AtomicUsize::new(0),
        last_end: AtomicU64::new(0),
        start: Instant::now(),
        spinning: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        spin_on: AtomicBool::new(true),
        tuner: tuned.then(|| {
            Mutex::new(Timed {
                tuner: Tuner::new(),
                last_end: 0,
            })
        }),
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
        // Parked until a wait starts with spinning on (the timeout guards against a
        // lost wake-up, and wakes it for a wait during which the tuner turned it on).
        let _ = pool
            .wake
            .wait_timeout_while(g, Duration::from_secs(1), |_| !pool.wanted());
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
