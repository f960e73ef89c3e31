//! Chrome trace JSON (the Trace Event Format Perfetto and chrome://tracing load): one
//! complete event (`"ph": "X"`) per dispatch, a process per run and a thread per phase,
//! placed at the dispatch's GPU timestamp.

use super::Run;
use crate::gpu::Phase;

/// The runs as a Chrome trace.
pub fn chrome_trace(runs: &[Run]) -> serde_json::Value {
    let mut events = Vec::new();
    for (pid, run) in runs.iter().enumerate() {
        events.push(serde_json::json!({
            "ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": { "name": format!("{} {} ({})", run.backend, run.adapter, run.timing.describe()) },
        }));
        for phase in [Phase::Prefill, Phase::Decode] {
            events.push(serde_json::json!({
                "ph": "M", "name": "thread_name", "pid": pid, "tid": tid(phase),
                "args": { "name": phase.name() },
            }));
        }
        for (step, s) in run.steps.iter().enumerate() {
            for d in &s.dispatches {
                events.push(serde_json::json!({
                    "ph": "X", "name": d.label, "cat": d.kind,
                    "pid": pid, "tid": tid(s.phase),
                    "ts": d.start_ns / 1e3, "dur": d.dur_ns / 1e3,
                    "args": {
                        "shape": d.shape, "bytes": d.bytes, "flops": d.flops, "step": step,
                        "n_tokens": s.n_tokens, "kv_len": s.kv_len,
                    },
                }));
            }
        }
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ns" })
}

fn tid(p: Phase) -> u32 {
    match p {
        Phase::Prefill => 1,
        Phase::Decode => 2,
    }
}
