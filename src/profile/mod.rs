//! Profile reports: the timed steps of one or more runs (one per adapter) summarized per
//! phase into one row per kernel kind (kernel, shape), with bandwidth against the
//! adapter's measured peak and the step's roofline floor; printed as a table, as JSON,
//! side by side across backends, as a Chrome trace and as an SVG chart.
//!
//! Definitions. A row's *total* is the sum of its dispatches' GPU times over every step
//! of the phase; *mean* is per call; *share* is total over the phase's GPU time (the sum
//! of `StepProfile::gpu_ns`). *Bytes* is the compulsory traffic of one call (each tensor
//! touched read or written once), *GB/s* bytes over mean time. The *floor* of a step is
//! its bytes over the peak bandwidth: no kernel schedule can beat it.

mod chart;
mod collect;
mod trace;

pub use chart::svg;
pub use collect::{profile_model, ProfileOptions};
pub use trace::chrome_trace;

use crate::gpu::{Peak, Phase, StepProfile, Timing, DISPATCH_PROBE};
use std::collections::HashMap;
use std::fmt::Write;

/// The profile of one adapter.
#[derive(Clone, Debug)]
pub struct Run {
    /// Backend name (`Vulkan`, `Gl`, ...).
    pub backend: String,
    /// Adapter name.
    pub adapter: String,
    /// How dispatches were timed.
    pub timing: Timing,
    /// The measured bandwidth, when probed.
    pub peak: Option<Peak>,
    /// Every profiled step, in order.
    pub steps: Vec<StepProfile>,
}

/// One kernel kind of a phase.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelRow {
    /// Pipeline name, e.g. `matvec_q4_k_sg_wg32`.
    pub kind: String,
    /// Problem shape.
    pub shape: String,
    /// Dispatches over all steps of the phase.
    pub calls: usize,
    /// Sum of their GPU times, ns.
    pub total_ns: f64,
    /// Bytes moved over all calls.
    pub bytes: f64,
    /// FLOPs over all calls.
    pub flops: f64,
}

impl KernelRow {
    /// Mean time per call, ns.
    pub fn mean_ns(&self) -> f64 {
        self.total_ns / self.calls.max(1) as f64
    }

    /// Effective bandwidth, GB/s (bytes per ns).
    pub fn gbps(&self) -> f64 {
        ratio(self.bytes, self.total_ns)
    }

    /// Effective compute, GFLOP/s.
    pub fn gflops(&self) -> f64 {
        ratio(self.flops, self.total_ns)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// One phase of a run, summarized.
#[derive(Clone, Debug)]
pub struct PhaseSummary {
    /// Prefill or decode.
    pub phase: Phase,
    /// Steps profiled.
    pub steps: usize,
    /// Tokens over those steps.
    pub tokens: u64,
    /// Dispatches per step (of the last step).
    pub dispatches_per_step: usize,
    /// Command buffers submitted per step (of the last step).
    pub submits_per_step: usize,
    /// Sum of the steps' GPU times (`StepProfile::gpu_ns`), ns.
    pub gpu_ns: f64,
    /// Sum of the steps' spans (first dispatch start to last end), ns.
    pub span_ns: f64,
    /// Sum of all dispatch times, ns.
    pub kernel_ns: f64,
    /// Bytes moved over all steps.
    pub bytes: f64,
    /// Kernel kinds, most time first.
    pub rows: Vec<KernelRow>,
}

impl PhaseSummary {
    /// Mean GPU time per step, ns.
    pub fn step_ns(&self) -> f64 {
        self.gpu_ns / self.steps.max(1) as f64
    }

    /// Bandwidth floor per step at `peak` GB/s, ns.
    pub fn floor_ns(&self, peak_gbps: f64) -> f64 {
        ratio(self.bytes / self.steps.max(1) as f64, peak_gbps)
    }

    /// What the step's dispatches cost to launch alone, at `dispatch_us` each (the
    /// adapter's measured cost of a minimal dispatch), in ns.
    pub fn launch_ns(&self, dispatch_us: f64) -> f64 {
        self.dispatches_per_step as f64 * dispatch_us * 1e3
    }
}

/// Groups the steps of `run` per phase (prefill first) and per kernel kind.
pub fn summarize(run: &Run) -> Vec<PhaseSummary> {
    let mut out = Vec::new();
    for phase in [Phase::Prefill, Phase::Decode] {
        let steps: Vec<&StepProfile> = run.steps.iter().filter(|s| s.phase == phase).collect();
        if steps.is_empty() {
            continue;
        }
        let mut rows: Vec<KernelRow> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for d in steps.iter().flat_map(|s| &s.dispatches) {
            let key = (d.kind.clone(), d.shape.clone());
            let i = *index.entry(key).or_insert_with(|| {
                rows.push(KernelRow {
                    kind: d.kind.clone(),
                    shape: d.shape.clone(),
                    calls: 0,
                    total_ns: 0.0,
                    bytes: 0.0,
                    flops: 0.0,
                });
                rows.len() - 1
            });
            let r = &mut rows[i];
            r.calls += 1;
            r.total_ns += d.dur_ns;
            r.bytes += d.bytes;
            r.flops += d.flops;
        }
        rows.sort_by(|a, b| b.total_ns.total_cmp(&a.total_ns));
        out.push(PhaseSummary {
            phase,
            steps: steps.len(),
            tokens: steps.iter().map(|s| s.n_tokens as u64).sum(),
            dispatches_per_step: steps.last().map_or(0, |s| s.dispatches.len()),
            submits_per_step: steps.last().map_or(0, |s| {
                let mut subs: Vec<usize> = s.dispatches.iter().map(|d| d.submission).collect();
                subs.dedup();
                subs.len()
            }),
            gpu_ns: steps.iter().map(|s| s.gpu_ns).sum(),
            span_ns: steps.iter().map(|s| s.span_ns).sum(),
            kernel_ns: steps.iter().map(|s| s.kernel_ns()).sum(),
            bytes: rows.iter().map(|r| r.bytes).sum(),
            rows,
        });
    }
    out
}

/// Bytes with a binary unit.
fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The run as text: a header (adapter, timing, peak) and a table per phase.
pub fn table(run: &Run) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "adapter: {} ({})", run.adapter, run.backend);
    let _ = writeln!(s, "timing:  {}", run.timing.describe());
    let peak = run.peak.map(|p| p.gbps());
    // Kernels that only read (matvecs) compare most directly with the streaming read.
    let read = run.peak.map(|p| p.read_gbps);
    let launch = run.peak.map(|p| p.dispatch_us);
    if let Some(p) = run.peak {
        let _ = writeln!(
            s,
            "peak:    {:.1} GB/s (copy {:.1} GB/s read+write, streaming read {:.1} GB/s in {}, {} buffers)",
            p.gbps(),
            p.copy_gbps,
            p.read_gbps,
            p.read_pattern,
            human_bytes(p.bytes as f64)
        );
        let _ = writeln!(
            s,
            "launch:  {:.1} µs per dispatch (a one-workgroup kernel, {DISPATCH_PROBE} back to back)",
            p.dispatch_us
        );
    }
    for ph in summarize(run) {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{}: {} step(s), {} token(s), {} dispatches and {} command buffer(s) per step; GPU time per step {:.1} µs (kernels {:.1} µs, span {:.1} µs)",
            ph.phase.name(),
            ph.steps,
            ph.tokens,
            ph.dispatches_per_step,
            ph.submits_per_step,
            ph.step_ns() / 1e3,
            ph.kernel_ns / ph.steps.max(1) as f64 / 1e3,
            ph.span_ns / ph.steps.max(1) as f64 / 1e3,
        );
        let per_step = ph.bytes / ph.steps.max(1) as f64;
        match peak {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "  bytes per step {}; bandwidth floor {:.1} µs at {:.1} GB/s = {:.1}% of the measured step",
                    human_bytes(per_step),
                    ph.floor_ns(p) / 1e3,
                    p,
                    100.0 * ratio(ph.floor_ns(p), ph.step_ns())
                );
                if let Some(l) = launch {
                    let _ = writeln!(
                        s,
                        "  launch floor {:.1} µs ({} dispatches at {:.1} µs) = {:.1}% of the measured step",
                        ph.launch_ns(l) / 1e3,
                        ph.dispatches_per_step,
                        l,
                        100.0 * ratio(ph.launch_ns(l), ph.step_ns())
                    );
                }
            }
            None => {
                let _ = writeln!(s, "  bytes per step {}", human_bytes(per_step));
            }
        }
        let _ = writeln!(
            s,
            "| kernel | shape | calls | total µs | mean µs | share | bytes/call | GB/s | % peak | % read | GFLOP/s |"
        );
        let _ = writeln!(
            s,
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in &ph.rows {
            let pct = |p: Option<f64>| {
                p.map_or("-".to_string(), |p| {
                    format!("{:.1}", 100.0 * ratio(r.gbps(), p))
                })
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.2} | {:.1}% | {} | {:.2} | {} | {} | {:.2} |",
                r.kind,
                r.shape,
                r.calls,
                r.total_ns / 1e3,
                r.mean_ns() / 1e3,
                100.0 * ratio(r.total_ns, ph.gpu_ns),
                human_bytes(r.bytes / r.calls.max(1) as f64),
                r.gbps(),
                pct(peak),
                pct(read),
                r.gflops()
            );
        }
    }
    s
}

/// The kernel without the variant axes that differ between adapters (`_sg`, `_f16`,
/// `_wgN`), so rows of different backends line up.
pub fn base_kind(kind: &str) -> String {
    kind.split('_')
        .filter(|t| {
            *t != "sg"
                && *t != "f16"
                && !(t.starts_with("wg")
                    && t.len() > 2
                    && t[2..].bytes().all(|b| b.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// Per kernel (base kernel and shape), its µs per step on each run.
pub type KernelTimes = Vec<(String, Vec<f64>)>;

/// Mean µs per step of each (base kernel, shape) per run, for each phase: the rows of the
/// side-by-side table and of the chart, ordered by the first run's time.
pub fn per_step_by_kernel(runs: &[Run]) -> Vec<(Phase, KernelTimes)> {
    let mut out = Vec::new();
    for phase in [Phase::Prefill, Phase::Decode] {
        let mut names: Vec<String> = Vec::new();
        let mut vals: HashMap<String, Vec<f64>> = HashMap::new();
        for (i, run) in runs.iter().enumerate() {
            let Some(ph) = summarize(run).into_iter().find(|p| p.phase == phase) else {
                continue;
            };
            for r in &ph.rows {
                let name = format!("{} {}", base_kind(&r.kind), r.shape);
                let v = vals.entry(name.clone()).or_insert_with(|| {
                    names.push(name);
                    vec![0.0; runs.len()]
                });
                v[i] += r.total_ns / ph.steps.max(1) as f64 / 1e3;
            }
        }
        if !names.is_empty() {
            let rows = names
                .into_iter()
                .map(|n| {
                    let v = vals.remove(&n).unwrap_or_default();
                    (n, v)
                })
                .collect();
            out.push((phase, rows));
        }
    }
    out
}

/// Per-kernel µs per step of several runs side by side, one table per phase.
pub fn side_by_side(runs: &[Run]) -> String {
    let mut s = String::new();
    for (phase, rows) in per_step_by_kernel(runs) {
        let _ = writeln!(s, "\n{} (µs per step)", phase.name());
        let heads: Vec<String> = runs
            .iter()
            .map(|r| format!("{} {}", r.backend, r.adapter))
            .collect();
        let _ = writeln!(s, "| kernel | {} |", heads.join(" | "));
        let _ = writeln!(s, "| --- |{}", " ---: |".repeat(runs.len()));
        for (name, v) in &rows {
            let cells: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
            let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
        }
        let totals: Vec<String> = runs
            .iter()
            .map(|r| {
                summarize(r)
                    .into_iter()
                    .find(|p| p.phase == phase)
                    .map_or("-".into(), |p| format!("{:.1}", p.step_ns() / 1e3))
            })
            .collect();
        let _ = writeln!(s, "| **step (GPU time)** | {} |", totals.join(" | "));
    }
    s
}

/// The runs as JSON: per run the adapter, timing, peak and per phase the summary rows.
pub fn json(runs: &[Run]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let peak = run.peak.map(|p| p.gbps());
            let read = run.peak.map(|p| p.read_gbps);
            let launch = run.peak.map(|p| p.dispatch_us);
            let phases: Vec<serde_json::Value> = summarize(run)
                .iter()
                .map(|ph| {
                    let rows: Vec<serde_json::Value> = ph
                        .rows
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "kernel": r.kind, "shape": r.shape, "calls": r.calls,
                                "total_us": r.total_ns / 1e3, "mean_us": r.mean_ns() / 1e3,
                                "share": ratio(r.total_ns, ph.gpu_ns),
                                "bytes_per_call": r.bytes / r.calls.max(1) as f64,
                                "gbps": r.gbps(), "gflops": r.gflops(),
                                "peak_fraction": peak.map(|p| ratio(r.gbps(), p)),
                                "read_fraction": read.map(|p| ratio(r.gbps(), p)),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "phase": ph.phase.name(), "steps": ph.steps, "tokens": ph.tokens,
                        "dispatches_per_step": ph.dispatches_per_step,
                        "submits_per_step": ph.submits_per_step,
                        "step_gpu_us": ph.step_ns() / 1e3,
                        "step_kernels_us": ph.kernel_ns / ph.steps.max(1) as f64 / 1e3,
                        "step_span_us": ph.span_ns / ph.steps.max(1) as f64 / 1e3,
                        "bytes_per_step": ph.bytes / ph.steps.max(1) as f64,
                        "floor_us": peak.map(|p| ph.floor_ns(p) / 1e3),
                        "launch_floor_us": launch.map(|l| ph.launch_ns(l) / 1e3),
                        "kernels": rows,
                    })
                })
                .collect();
            serde_json::json!({
                "backend": run.backend, "adapter": run.adapter,
                "timing": format!("{:?}", run.timing),
                "peak": run.peak.map(|p| serde_json::json!({
                    "gbps": p.gbps(), "copy_gbps": p.copy_gbps, "read_gbps": p.read_gbps,
                    "read_pattern": p.read_pattern,
                    "probe_bytes": p.bytes, "dispatch_us": p.dispatch_us,
                })),
                "phases": phases,
            })
        })
        .collect();
    serde_json::json!({ "runs": runs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::profiler::DispatchTime;

    fn d(kind: &str, shape: &str, start: f64, dur: f64) -> DispatchTime {
        DispatchTime {
            label: format!("{kind} [t]"),
            kind: kind.into(),
            shape: shape.into(),
            bytes: 1000.0,
            flops: 2000.0,
            start_ns: start,
            dur_ns: dur,
            submission: 0,
        }
    }

    #[test]
    fn base_kind_drops_adapter_axes() {
        assert_eq!(base_kind("matvec_q4_k_sg_wg64"), "matvec_q4_k");
        assert_eq!(base_kind("attention_decode_f16_wg64"), "attention_decode");
        assert_eq!(base_kind("rmsnorm_out_add_sg_wg128"), "rmsnorm_out_add");
        assert_eq!(base_kind("get_rows_q8_0_wg64"), "get_rows_q8_0");
    }

    #[test]
    fn summary_groups_by_kernel_and_shape() {
        let step = StepProfile {
            phase: Phase::Decode,
            n_tokens: 1,
            kv_len: 5,
            dispatches: vec![
                d("matvec_q8_0_wg16", "8x4", 0.0, 100.0),
                d("matvec_q8_0_wg16", "8x4", 100.0, 300.0),
                DispatchTime {
                    submission: 1,
                    ..d("matvec_q8_0_wg16", "4x8", 400.0, 50.0)
                },
            ],
            gpu_ns: 500.0,
            span_ns: 500.0,
        };
        let run = Run {
            backend: "Vulkan".into(),
            adapter: "a".into(),
            timing: Timing::InsidePasses,
            peak: None,
            steps: vec![step.clone(), step],
        };
        let s = summarize(&run);
        assert_eq!(s.len(), 1);
        let ph = &s[0];
        assert_eq!((ph.steps, ph.tokens, ph.dispatches_per_step), (2, 2, 3));
        assert_eq!(ph.submits_per_step, 2);
        assert_eq!(ph.rows.len(), 2);
        let r = &ph.rows[0];
        assert_eq!((r.shape.as_str(), r.calls), ("8x4", 4));
        assert!((r.total_ns - 800.0).abs() < 1e-9);
        assert!((r.mean_ns() - 200.0).abs() < 1e-9);
        assert!((r.gbps() - 4000.0 / 800.0).abs() < 1e-9);
        assert!((ph.step_ns() - 500.0).abs() < 1e-9);
        assert!((ph.floor_ns(10.0) - 300.0).abs() < 1e-9);
        let v = json(&[run]);
        assert_eq!(v["runs"][0]["phases"][0]["kernels"][0]["calls"], 4);
    }
}
