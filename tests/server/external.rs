//! The server over ollama's store and a Hugging Face cache (tests/common/external.rs):
//! `/api/tags` lists their models with digest and size, a namespaced ollama name
//! generates, `/api/show` gives ollama's params, `/api/delete` is refused.

use super::client::*;
use hearth::model::{Arch, TinySpec};
use serde_json::json;

#[test]
fn ollama_and_hf_cache_models_are_served() {
    let dir = std::env::temp_dir().join(format!("hearth-serve-ext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let l = crate::layout::build(&dir, &TinySpec::new(Arch::Llama).build());
    let before = crate::layout::snapshot(&l.ollama);
    let srv = serve_with_env(
        "external",
        &[],
        &[
            ("HEARTH_NO_EXTERNAL_MODELS", "0"),
            ("OLLAMA_MODELS", l.ollama.to_str().unwrap()),
            ("HF_HUB_CACHE", l.hf.to_str().unwrap()),
        ],
    );
    let a = srv.addr.as_str();
    let tags = ok(get(a, "/api/tags")).json();
    let models = tags["models"].as_array().unwrap();
    assert_eq!(models[0]["name"], MODEL, "hearth's own first: {tags}");
    let find = |n: &str| models.iter().find(|m| m["name"] == n).cloned();
    for n in ["tiny:latest", "someone/tiny:q8"] {
        let m = find(n).unwrap_or_else(|| panic!("{n} not in {tags}"));
        assert_eq!(m["digest"], l.digest.as_str());
        assert_eq!(m["size"], l.size);
        assert_eq!(m["source"], "ollama");
        assert_eq!(m["details"]["family"], "llama");
    }
    if cfg!(unix) {
        let m = find("hf.co/test-org/Tiny-GGUF:Q8_0").expect("hf-cache model listed");
        assert_eq!(m["digest"], l.digest.as_str());
    }
    assert!(find("badjson:latest").is_none());

    let opts = json!({"num_predict": 2, "temperature": 0});
    for model in ["someone/tiny:q8", "tiny"] {
        let g = ok(post(
            a,
            "/api/generate",
            json!({"model": model, "prompt": "hi", "raw": true, "stream": false, "options": opts}),
        ))
        .json();
        assert_eq!(g["done"], true, "{model}: {g}");
    }
    // The params layer's options are defaults: num_predict 3 applies unless the request
    // sets its own.
    for (opts, most) in [
        (json!({"temperature": 0}), 3),
        (json!({"num_predict": 5}), 5),
    ] {
        let g = ok(post(
            a,
            "/api/generate",
            json!({"model": "tiny", "prompt": "hi", "raw": true, "stream": false, "options": opts}),
        ))
        .json();
        let n = g["eval_count"].as_u64().unwrap();
        let ended = g["done_reason"] == "stop";
        assert!(n <= most && (n == most || ended), "{opts}: {g}");
    }
    let show = ok(post(a, "/api/show", json!({"model": "tiny"}))).json();
    assert!(
        show["parameters"]
            .as_str()
            .unwrap()
            .contains("temperature 0.7"),
        "{show}"
    );
    let r = call(
        a,
        "DELETE",
        "/api/delete",
        Some(json!({"model": "tiny:latest"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("ollama"));
    // A path is still no model name.
    let r = post(a, "/api/show", json!({"model": "../../etc/passwd"}));
    assert_eq!(r.status, 400, "{}", r.body);
    drop(srv);
    assert_eq!(crate::layout::snapshot(&l.ollama), before);
    let _ = std::fs::remove_dir_all(&dir);
}
