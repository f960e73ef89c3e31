//! `hearth serve` end to end: the binary on 127.0.0.1 with an ephemeral port over a temp
//! store holding a tiny random Gemma 3 model, driven by a plain HTTP/1.1 client written
//! here (so disconnects are exact). Every endpoint streamed and not, bad requests, the
//! API key and CORS, a full queue answering 503, and disconnects freeing the slot.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod embed;
mod external;
mod faults;
#[path = "../common/external.rs"]
mod layout;

use client::*;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn every_endpoint_streamed_and_not() {
    let srv = serve("endpoints", &["--parallel", "2"]);
    let a = srv.addr.as_str();
    assert_eq!(ok(get(a, "/health")).json()["status"], "ok");
    assert_eq!(
        ok(get(a, "/api/version")).json()["version"],
        env!("CARGO_PKG_VERSION")
    );
    let tags = ok(get(a, "/api/tags")).json();
    assert_eq!(tags["models"][0]["name"], MODEL);
    assert_eq!(tags["models"][0]["details"]["family"], "gemma3");
    assert!(ok(get(a, "/api/ps")).json()["models"]
        .as_array()
        .unwrap()
        .is_empty());
    let show = ok(post(a, "/api/show", json!({"model": MODEL}))).json();
    assert_eq!(show["model_info"]["general.architecture"], "gemma3");

    // ollama generate, one object.
    let opts = json!({"num_predict": 4, "temperature": 0, "seed": 1});
    let g = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "hello there", "stream": false, "options": opts}),
    ))
    .json();
    assert_eq!(g["done"], true);
    assert!(["stop", "length"].contains(&g["done_reason"].as_str().unwrap()));
    assert!(g["eval_count"].as_u64().unwrap() <= 4);
    assert!(g["prompt_eval_count"].as_u64().unwrap() > 0);
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(g[k].is_u64(), "{k} missing in {g}");
    }
    assert!(!g["context"].as_array().unwrap().is_empty());
    // Streamed: NDJSON, the same greedy text.
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "hello there", "options": opts}),
    ));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines = r.lines();
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    let text: String = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, g["response"].as_str().unwrap());
    assert_eq!(last["eval_count"], g["eval_count"]);

    // format "json" (ollama) and response_format json_object (OpenAI): the text is a
    // valid JSON prefix, and a whole object when generation stopped on its own.
    let is_json = |text: &str, reason: &str| {
        let mut g = hearth::grammar::JsonGrammar::new();
        assert!(g.advance(text.as_bytes()), "not a JSON prefix: {text:?}");
        if reason == "stop" {
            assert!(
                serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()),
                "{text:?}"
            );
        }
    };
    let j = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "hello", "format": "json", "stream": false,
               "options": {"num_predict": 12, "temperature": 0}}),
    ))
    .json();
    is_json(
        j["response"].as_str().unwrap(),
        j["done_reason"].as_str().unwrap(),
    );
    let j = ok(post(
        a,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12,
               "response_format": {"type": "json_object"}}),
    ))
    .json();
    let choice = &j["choices"][0];
    is_json(
        choice["message"]["content"].as_str().unwrap(),
        choice["finish_reason"].as_str().unwrap(),
    );

    // A JSON schema (ollama `format`, OpenAI `json_schema`), a GBNF grammar and a
    // regular expression: what comes back matches, sampled at temperature 1.
    let schema = json!({"type": "object", "properties": {
        "colour": {"enum": ["red", "green"]}, "n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["colour", "n"], "additionalProperties": false});
    let sampled = json!({"num_predict": 200, "temperature": 1, "seed": 3});
    let j = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "hello", "format": schema, "stream": false, "options": sampled}),
    ))
    .json();
    let v: Value = serde_json::from_str(j["response"].as_str().unwrap()).unwrap();
    common::schema::validate(&schema, &v).unwrap();
    let j = ok(post(
        a,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
               "temperature": 1, "seed": 4, "response_format": {"type": "json_schema",
               "json_schema": {"name": "t", "strict": true, "schema": schema}}}),
    ))
    .json();
    let v: Value =
        serde_json::from_str(j["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    common::schema::validate(&schema, &v).unwrap();
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    let j = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "hello", "stream": false, "options": sampled,
               "grammar": "root ::= (\"cat\" | \"dog\") \" \" [0-9]"}),
    ))
    .json();
    let r = j["response"].as_str().unwrap();
    assert!(
        r.len() == 5 && (r.starts_with("cat ") || r.starts_with("dog ")),
        "{r:?}"
    );
    let j = ok(post(
        a,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "hello", "max_tokens": 20, "temperature": 1,
               "regex": "[A-C]{2}-[0-9]{2}"}),
    ))
    .json();
    let r = j["choices"][0]["text"].as_str().unwrap();
    assert!(r.len() == 5 && r.as_bytes()[2] == b'-', "{r:?}");

    // ollama chat.
    let msgs =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    let c = ok(post(
        a,
        "/api/chat",
        json!({"model": MODEL, "messages": msgs, "stream": false, "options": opts}),
    ))
    .json();
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["done"], true);
    let lines = ok(post(
        a,
        "/api/chat",
        json!({"model": MODEL, "messages": msgs, "options": opts}),
    ))
    .lines();
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, c["message"]["content"].as_str().unwrap());

    // OpenAI chat and completions.
    let body = json!({"model": MODEL, "messages": msgs, "max_tokens": 3, "temperature": 0});
    let oc = ok(post(a, "/v1/chat/completions", body.clone())).json();
    assert_eq!(oc["object"], "chat.completion");
    assert_eq!(oc["choices"][0]["message"]["role"], "assistant");
    let u = &oc["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = ok(post(a, "/v1/chat/completions", sbody));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let (events, done) = r.events();
    assert!(done, "no [DONE] in {}", r.body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        oc["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(events.last().unwrap()["usage"], oc["usage"]);
    let cbody = json!({"model": MODEL, "prompt": "abc", "max_tokens": 3, "temperature": 0});
    let oc = ok(post(a, "/v1/completions", cbody.clone())).json();
    assert_eq!(oc["object"], "text_completion");
    assert!(oc["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    let mut sbody = cbody;
    sbody["stream"] = json!(true);
    let (events, done) = ok(post(a, "/v1/completions", sbody)).events();
    assert!(done);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, oc["choices"][0]["text"].as_str().unwrap());
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    let models = ok(get(a, "/v1/models")).json();
    assert_eq!(models["data"][0]["id"], MODEL);

    // Loaded now; metrics count the work; no CORS headers by default.
    let ps = ok(get(a, "/api/ps")).json();
    assert_eq!(ps["models"][0]["name"], MODEL);
    let m = ok(get(a, "/metrics"));
    assert!(m.body.contains("hearth_generated_tokens_total"));
    assert!(m.body.contains("hearth_queue_depth 0"));
    // --parallel 2: the requests above ran through the batch worker.
    let counter = |name: &str| -> u64 {
        let line = m
            .body
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (steps, rows) = (
        counter("hearth_batch_steps_total"),
        counter("hearth_batch_rows_total"),
    );
    assert!(
        steps > 0 && rows >= steps,
        "batch steps {steps}, rows {rows}"
    );
    // Ended requests hold no KV page; a long prompt sent again takes its whole pages
    // from the prefix cache (reported as cached prompt tokens by both APIs' counters).
    let long = "The quick brown fox jumps over the lazy dog while the cat sleeps. ".repeat(6);
    let body = json!({"model": MODEL, "prompt": long, "stream": false, "options": opts});
    ok(post(a, "/api/generate", body.clone()));
    ok(post(a, "/api/generate", body));
    let read = |m: &Reply, name: &str| -> u64 {
        let line = m
            .body
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The worker releases a finished request's pages just after its last token.
    let mut m = ok(get(a, "/metrics"));
    for _ in 0..40 {
        if read(&m, "hearth_kv_pages_held") == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        m = ok(get(a, "/metrics"));
    }
    let counter = |name: &str| read(&m, name);
    assert!(
        counter("hearth_prefix_cache_hits_total") >= 16,
        "{}",
        m.body
    );
    assert_eq!(counter("hearth_kv_pages_held"), 0, "{}", m.body);
    assert!(counter("hearth_kv_pages_cached") > 0, "{}", m.body);
    assert!(counter("hearth_kv_pages_total") >= counter("hearth_kv_pages_cached"));
    let r = read_reply(send(
        a,
        "GET",
        "/api/tags",
        &[("Origin", "http://evil.example")],
        b"",
    ));
    assert!(r.header("access-control-allow-origin").is_none());

    // Store management.
    ok(post(
        a,
        "/api/copy",
        json!({"source": MODEL, "destination": "tiny:copy"}),
    ));
    assert_eq!(
        ok(get(a, "/api/tags")).json()["models"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(call(
        a,
        "DELETE",
        "/api/delete",
        Some(json!({"model": "tiny:copy"})),
    ));
    assert_eq!(
        call(
            a,
            "DELETE",
            "/api/delete",
            Some(json!({"model": "tiny:copy"}))
        )
        .status,
        404
    );
    assert_eq!(
        post(a, "/api/pull", json!({"model": "../../x"})).status,
        400
    );
    assert_eq!(
        post(
            a,
            "/api/pull",
            json!({"model": "https://example.com/x.gguf"})
        )
        .status,
        400
    );
    // keep_alive 0 with no prompt unloads.
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "keep_alive": 0}),
    ))
    .json();
    assert_eq!(r["done_reason"], "unload");
    let t = Instant::now();
    while !ok(get(a, "/api/ps")).json()["models"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "model never unloaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_requests_are_4xx_json() {
    let srv = serve("bad", &["--ctx", "64", "--max-body", "100000"]);
    let a = srv.addr.as_str();
    let gen = |body: Value| post(a, "/api/generate", body);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"prompt": "x"}), 400, "model"),
        (
            json!({"model": "../../etc/passwd", "prompt": "x"}),
            400,
            "invalid model name",
        ),
        (
            json!({"model": "/etc/passwd", "prompt": "x"}),
            400,
            "invalid model name",
        ),
        (
            json!({"model": "x.gguf", "prompt": "x"}),
            400,
            "invalid model name",
        ),
        (
            json!({"model": "a b", "prompt": "x"}),
            400,
            "invalid model name",
        ),
        (
            json!({"model": "nope:1", "prompt": "x"}),
            404,
            "not installed",
        ),
        (json!({"model": MODEL, "prompt": 5}), 400, "invalid type"),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"temperature": -1}}),
            400,
            "temperature",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}}),
            400,
            "invalid type",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"top_p": 2}}),
            400,
            "top_p",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"top_k": -1}}),
            400,
            "top_k",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"num_predict": -5}}),
            400,
            "num_predict",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "options": {"num_ctx": 0}}),
            400,
            "num_ctx",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "format": {"type": "frobnicate"}}),
            400,
            "JSON schema",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "grammar": "root ::= undefined-rule"}),
            400,
            "never defined",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "format": "json", "regex": "a+"}),
            400,
            "at most one",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "format": 7}),
            400,
            "format",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "keep_alive": "soon"}),
            400,
            "keep_alive",
        ),
        (
            json!({"model": MODEL, "prompt": "a ".repeat(200)}),
            400,
            "context window",
        ),
    ];
    for (body, status, needle) in cases {
        let r = gen(body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.error().contains(needle), "{body}: {}", r.body);
    }
    let chat = |body: Value| post(a, "/api/chat", body);
    assert_eq!(
        chat(json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]})).status,
        400
    );
    assert_eq!(chat(json!({"model": MODEL, "messages": "hi"})).status, 400);
    let v1 = |body: Value| post(a, "/v1/chat/completions", body);
    let m = json!([{"role": "user", "content": "x"}]);
    for extra in [
        json!({"max_tokens": 0}),
        json!({"temperature": 3}),
        json!({"n": 2}),
        json!({"response_format": {"type": "json_schema"}}),
        json!({"response_format": {"type": "xml"}}),
        json!({"grammar": "start: (\"x\""}),
    ] {
        let mut body = json!({"model": MODEL, "messages": m});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = v1(body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        r.error();
    }
    assert_eq!(v1(json!({"model": "nope", "messages": m})).status, 404);
    // Raw malformed bodies, an empty body, a body over the limit, unknown routes.
    for raw in [&b"{"[..], b"not json", b"", b"[1,2]"] {
        let r = read_reply(send(a, "POST", "/api/generate", &[], raw));
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.body
        );
        r.error();
    }
    let big = format!(
        "{{\"model\":\"{MODEL}\",\"prompt\":\"{}\"}}",
        "a".repeat(200_000)
    );
    let r = read_reply(send(a, "POST", "/api/generate", &[], big.as_bytes()));
    assert_eq!(r.status, 413, "{}", r.body);
    r.error();
    assert_eq!(get(a, "/api/nothing").status, 404);
    assert_eq!(get(a, "/api/generate").status, 405);
    // A huge num_predict is clamped to the context and still ends.
    let r = ok(gen(json!({"model": MODEL, "prompt": "x", "stream": false,
        "options": {"num_predict": 1_000_000_000u64, "temperature": 0}})));
    assert!(r.json()["eval_count"].as_u64().unwrap() < 64);
}

#[test]
fn api_key_and_cors() {
    let srv = serve(
        "auth",
        &["--api-key", "sesame", "--cors-origin", "http://app.example"],
    );
    let a = srv.addr.as_str();
    assert_eq!(get(a, "/health").status, 200);
    let r = get(a, "/api/tags");
    assert_eq!(r.status, 401);
    r.error();
    let wrong = read_reply(send(
        a,
        "GET",
        "/api/tags",
        &[("Authorization", "Bearer sesam")],
        b"",
    ));
    assert_eq!(wrong.status, 401);
    let r = read_reply(send(
        a,
        "GET",
        "/api/tags",
        &[
            ("Authorization", "Bearer sesame"),
            ("Origin", "http://app.example"),
        ],
        b"",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let pre = read_reply(send(
        a,
        "OPTIONS",
        "/api/chat",
        &[("Origin", "http://app.example")],
        b"",
    ));
    assert_eq!(pre.status, 204);
    assert!(pre.header("access-control-allow-methods").is_some());
    let other = read_reply(send(
        a,
        "OPTIONS",
        "/api/chat",
        &[("Origin", "http://evil.example")],
        b"",
    ));
    assert!(other.header("access-control-allow-origin").is_none());
}

/// Reads a streamed response up to the end of its headers and first body line.
fn read_first_line(s: &TcpStream) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    // Status, headers, the blank line, a chunk size, then the first NDJSON line.
    let mut blank = false;
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "connection closed early"
        );
        if blank && line.trim_start().starts_with('{') {
            return;
        }
        if line == "\r\n" {
            blank = true;
        }
    }
}

/// Polls `/metrics` until it shows `line`, for at most 5 s (cancellation is between
/// two tokens, milliseconds on the tiny model).
pub(crate) fn wait_metric(addr: &str, line: &str) {
    let t = Instant::now();
    loop {
        let m = get(addr, "/metrics").body;
        if m.lines().any(|l| l == line) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no {line:?} after 5 s:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn queue_full_is_503_and_disconnects_free_the_slot() {
    let srv = serve("queue", &["--parallel", "1", "--queue", "1"]);
    let a = srv.addr.as_str();
    // Load first, so that timing below is generation only.
    ok(post(a, "/api/generate", json!({"model": MODEL})));
    let long = json!({"model": MODEL, "prompt": "go", "options": {"num_predict": 100000, "temperature": 0}})
        .to_string();
    // A takes the only slot and streams; B waits in the queue; C finds it full.
    let running = send(a, "POST", "/api/generate", &[], long.as_bytes());
    read_first_line(&running);
    let queued = send(a, "POST", "/api/generate", &[], long.as_bytes());
    wait_metric(a, "hearth_queue_depth 1");
    let t = Instant::now();
    let full = post(a, "/api/generate", json!({"model": MODEL, "prompt": "x"}));
    assert_eq!(full.status, 503, "{}", full.body);
    assert!(full.error().contains("busy"));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "503 was not immediate"
    );
    let v1 = post(
        a,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(v1.status, 503);
    // The queued client leaves, then the streaming one: both places come back at once.
    drop(queued);
    wait_metric(a, "hearth_queue_depth 0");
    assert!(get(a, "/metrics").body.contains("hearth_active_requests 1"));
    drop(running);
    wait_metric(a, "hearth_active_requests 0");
    let t = Instant::now();
    let r = ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "stream": false,
        "options": {"num_predict": 2}}),
    ));
    assert_eq!(r.json()["done"], true);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the slot was not freed"
    );
    // The answer can arrive a moment before its thread hands the slot back.
    wait_metric(a, "hearth_active_requests 0");
    wait_metric(a, "hearth_queue_depth 0");
    // A client that leaves while its non-streamed request runs frees the slot too.
    let body = json!({"model": MODEL, "prompt": "go", "stream": false,
        "options": {"num_predict": 100000, "temperature": 0}})
    .to_string();
    let s = send(a, "POST", "/api/generate", &[], body.as_bytes());
    wait_metric(a, "hearth_active_requests 1");
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    wait_metric(a, "hearth_active_requests 0");
    ok(post(
        a,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "stream": false,
        "options": {"num_predict": 2}}),
    ));
}

#[test]
fn real_model_generates() {
    let Some(path) = common::real_model() else {
        return;
    };
    let srv = serve_file("real", &path, "gemma3:270m-base", &["--ctx", "512"]);
    let r = ok(post(
        &srv.addr,
        "/api/generate",
        json!({"model": "gemma3:270m-base",
        "prompt": "Question: What is the capital of France?\nAnswer:", "stream": false,
        "options": {"num_predict": 2, "temperature": 0}}),
    ));
    assert!(
        r.json()["response"].as_str().unwrap().contains("Paris"),
        "{}",
        r.body
    );
}

/// The chat model through its own template on both chat APIs, greedy with no repeat
/// penalty: the exact (f64 reference) answer, ended by `<|im_end|>` ("stop"), streamed
/// (ollama) and whole (OpenAI).
#[test]
fn chat_model_answers_on_both_chat_apis() {
    let Some(path) = common::chat_model() else {
        return;
    };
    let srv = serve_file("chat", &path, "smollm2:135m", &["--ctx", "256"]);
    let a = srv.addr.as_str();
    let question = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let r = ok(post(
        a,
        "/api/chat",
        json!({"model": "smollm2:135m", "messages": question,
               "options": {"temperature": 0, "repeat_penalty": 1}}),
    ));
    let lines = r.lines();
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The capital of France is Paris.", "{}", r.body);
    let last = lines.last().unwrap();
    assert_eq!(last["done_reason"], "stop", "{last}");
    assert_eq!(last["message"]["role"], "assistant");
    let r = ok(post(
        a,
        "/v1/chat/completions",
        json!({"model": "smollm2:135m", "messages": question,
               "temperature": 0, "frequency_penalty": 0, "presence_penalty": 0}),
    ))
    .json();
    let choice = &r["choices"][0];
    assert_eq!(
        choice["message"]["content"], "The capital of France is Paris.",
        "{r}"
    );
    assert_eq!(choice["finish_reason"], "stop", "{r}");
}

/// Tools through both APIs on the tiny model (its built-in Gemma template knows no
/// tools: the generic format): a required or named call comes back as `tool_calls`
/// with arguments valid under the function's schema, streamed (one delta per call) and
/// not; the round trip (the call, the tool's result, then an answer) is accepted; bad
/// tool definitions and choices are 400s.
#[test]
fn tool_calls_on_both_apis() {
    let srv = serve("tools", &["--ctx", "2048"]);
    let a = srv.addr.as_str();
    let params = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": false});
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather now", "parameters": params}}]);
    let user = json!({"role": "user", "content": "Weather in Oslo?"});
    let body = |stream: bool, choice: Value| {
        json!({"model": MODEL, "messages": [user], "tools": tools, "tool_choice": choice,
               "max_tokens": 600, "temperature": 0.7, "seed": 5, "stream": stream})
    };
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let j = ok(post(a, "/v1/chat/completions", body(false, named.clone()))).json();
    let choice = &j["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{j}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    common::schema::validate(&params, &args).unwrap();
    // Streamed: the same call as a delta, then the finish.
    let (events, done) = ok(post(a, "/v1/chat/completions", body(true, named))).events();
    assert!(done);
    let delta_call = events
        .iter()
        .find_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .expect("a tool_calls delta");
    assert_eq!(delta_call["index"], 0);
    assert_eq!(delta_call["function"]["name"], "get_weather");
    assert_eq!(
        delta_call["function"]["arguments"],
        call["function"]["arguments"]
    );
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));
    // The round trip: the call and its result go back in; the answer is text or calls.
    let back = json!({"model": MODEL, "tools": tools, "max_tokens": 200, "temperature": 0,
        "messages": [user, choice["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 4}"}]});
    let j = ok(post(a, "/v1/chat/completions", back)).json();
    let m = &j["choices"][0]["message"];
    assert!(
        m["content"].is_string() || m["tool_calls"].is_array(),
        "{j}"
    );

    // ollama: tool_calls with arguments as an object, a tool message back in.
    let o = ok(post(
        a,
        "/api/chat",
        json!({"model": MODEL, "messages": [user], "tools": tools, "stream": false,
               "tool_choice": "required", "options": {"num_predict": 900, "num_ctx": 2048, "temperature": 0.7, "seed": 6}}),
    ))
    .json();
    let call = &o["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{o}");
    common::schema::validate(&params, &call["arguments"]).unwrap();
    let lines = ok(post(
        a,
        "/api/chat",
        json!({"model": MODEL, "tools": tools, "options": {"num_predict": 100, "temperature": 0},
               "messages": [user, {"role": "assistant", "content": "", "tool_calls": [{"function": call}]},
                            {"role": "tool", "content": "4 degrees", "tool_name": "get_weather"}]}),
    ))
    .lines();
    assert_eq!(lines.last().unwrap()["done"], true);

    for (extra, needle) in [
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "name",
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "not in tools",
        ),
        (
            json!({"tools": tools, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]}),
            "arguments",
        ),
    ] {
        let mut b = json!({"model": MODEL, "messages": [user]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = post(a, "/v1/chat/completions", b.clone());
        assert_eq!(r.status, 400, "{b}: {}", r.body);
        assert!(r.error().contains(needle), "{b}: {}", r.body);
    }
}

/// A template that teaches Hermes-style calls (`--template`): a required call comes back
/// as `tool_calls` in both APIs with no `<tool_call>` markup leaking into the text; with
/// `auto` the text streams as it comes (several content deltas) and adds up to the
/// whole answer.
#[test]
fn hermes_template_calls_and_streams_text() {
    let dir = std::env::temp_dir().join(format!("hearth-hermes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tpl = dir.join("hermes.jinja");
    std::fs::write(
        &tpl,
        "{%- if tools %}<|im_start|>system\nTools: {{ tools | tojson }}. Call one as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n{% endif %}\
         {%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let srv = serve("hermes", &["--template", tpl.to_str().unwrap()]);
    let a = srv.addr.as_str();
    let params = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["n"], "additionalProperties": false});
    let tools = json!([{"type": "function", "function": {"name": "roll", "parameters": params}}]);
    let user = json!({"role": "user", "content": "Roll."});
    let body = |stream: bool, choice: &str| {
        json!({"model": MODEL, "messages": [user], "tools": tools, "tool_choice": choice,
               "max_tokens": 200, "temperature": 0.8, "seed": 9, "stream": stream})
    };
    let j = ok(post(a, "/v1/chat/completions", body(false, "required"))).json();
    let call = &j["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "roll", "{j}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    common::schema::validate(&params, &args).unwrap();
    let (events, done) = ok(post(a, "/v1/chat/completions", body(true, "required"))).events();
    assert!(done);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.contains("<tool_call"), "markup leaked: {text:?}");
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "roll"));
    // auto: a random model writes text (no call); it streams in pieces.
    let whole = ok(post(a, "/v1/chat/completions", body(false, "auto"))).json();
    let (events, _) = ok(post(a, "/v1/chat/completions", body(true, "auto"))).events();
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let m = &whole["choices"][0]["message"];
    if m["tool_calls"].is_null() {
        assert!(pieces.len() > 1, "not streamed: {pieces:?}");
        assert_eq!(pieces.concat().trim(), m["content"].as_str().unwrap());
    }
    // ollama, streamed: the call in a message line, then the last line.
    let lines = ok(post(
        a,
        "/api/chat",
        json!({"model": MODEL, "messages": [user], "tools": tools, "tool_choice": "required",
               "options": {"num_predict": 200, "temperature": 0.8, "seed": 9}}),
    ))
    .lines();
    assert!(
        lines
            .iter()
            .any(|l| l["message"]["tool_calls"][0]["function"]["name"] == "roll"),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap()["done"], true);
}
