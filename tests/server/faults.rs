//! Failures inside a running generation (robustness case 28): a panic on the generation
//! thread and a GPU device lost mid-stream, forced through `HEARTH_FAULT_INJECT`. Each
//! request ends with a JSON error (an error line or SSE error event once streaming began),
//! its slot frees, and the server goes on serving; a lost device shows in `/health` and
//! the next request reloads the model on a new device.

use super::client::*;
use super::wait_metric;
use serde_json::json;

fn long(stream: bool) -> serde_json::Value {
    json!({"model": MODEL, "prompt": "go", "stream": stream,
        "options": {"num_predict": 20, "temperature": 0}})
}

/// Asserts a streamed ollama reply that ended in an error line after some tokens.
fn assert_error_line(r: &Reply, needle: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    let lines = r.lines();
    let last = lines.last().expect("no lines");
    let err = last["error"]
        .as_str()
        .unwrap_or_else(|| panic!("last line {last}"));
    assert!(err.contains(needle), "{err}");
    assert!(
        lines.len() >= 2,
        "the error came before any token: {}",
        r.body
    );
}

#[test]
fn a_panic_during_generation_ends_the_request_and_frees_the_slot() {
    let srv = serve_with_env(
        "panic",
        &["--parallel", "1"],
        &[("HEARTH_FAULT_INJECT", "panic:2")],
    );
    let a = srv.addr.as_str();
    // Streamed ollama: tokens, then an error line, then the end of the body.
    assert_error_line(&post(a, "/api/generate", long(true)), "internal error");
    wait_metric(a, "hearth_active_requests 0");
    // Whole response: a 500 JSON error.
    let r = post(a, "/api/generate", long(false));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.error().contains("internal error"), "{}", r.body);
    // OpenAI streamed: an SSE error event and [DONE].
    let r = post(
        a,
        "/v1/chat/completions",
        json!({"model": MODEL, "stream": true, "max_tokens": 20,
            "messages": [{"role": "user", "content": "go"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (events, done) = r.events();
    assert!(done, "{}", r.body);
    let last = events.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal error"),
        "{last}"
    );
    // The only slot is free again and requests that stay short of the fault succeed.
    wait_metric(a, "hearth_active_requests 0");
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "stream": false, "options": {"num_predict": 1}}),
    ));
    assert_eq!(r.json()["done"], true);
    assert_eq!(get(a, "/health").status, 200);
}

#[test]
fn a_lost_device_fails_its_request_reports_unhealthy_and_reloads() {
    let srv = serve_with_env("lost", &[], &[("HEARTH_FAULT_INJECT", "lose-device:3")]);
    let a = srv.addr.as_str();
    assert_eq!(get(a, "/health").status, 200);
    assert_error_line(&post(a, "/api/generate", long(true)), "lost");
    wait_metric(a, "hearth_active_requests 0");
    let h = get(a, "/health");
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.json()["status"], "unhealthy", "{}", h.body);
    // The next request reloads the model on a new device and is served.
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "stream": false, "options": {"num_predict": 2}}),
    ));
    assert_eq!(r.json()["done"], true, "{}", r.body);
    assert_eq!(get(a, "/health").status, 200);
}

#[test]
fn a_model_that_fails_to_load_is_a_json_error_and_others_still_serve() {
    let srv = serve("loadfail", &[]);
    let a = srv.addr.as_str();
    // A model that cannot load (a negative final-logit soft-cap) next to the good one.
    let spec = hearth::model::TinySpec::new(hearth::model::Arch::Gemma3);
    let mut meta = spec.metadata();
    meta.push((
        "gemma3.final_logit_softcapping".into(),
        hearth::gguf::Value::F32(-30.0),
    ));
    let file = srv._dir.0.join("capped.gguf");
    std::fs::write(&file, hearth::model::tiny::assemble(meta, spec.tensors())).unwrap();
    import(&srv._dir, &file, "capped:test", false);
    for _ in 0..2 {
        let r = post(
            a,
            "/api/generate",
            json!({"model": "capped:test", "prompt": "x"}),
        );
        assert_eq!(r.status, 500, "{}", r.body);
        assert!(r.error().contains("final_logit_softcapping"), "{}", r.body);
    }
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "stream": false, "options": {"num_predict": 2}}),
    ));
    assert_eq!(r.json()["done"], true);
    assert_eq!(get(a, "/health").status, 200);
}
