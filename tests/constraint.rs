//! Constrained decoding (llguidance) end to end: every output a constraint lets through
//! is valid. Property test: random JSON schemas, sampled at temperature 1 on a tiny
//! random-weight model (whose preferences are noise, so the mask does all the work),
//! each output checked by an independent validator (tests/common/schema.rs). Batched
//! sessions constrain as sessions of their own do. Grammars (GBNF, Lark) and regular
//! expressions hold, and bad ones are refused by name.

mod common;

use common::schema::{random_schema, validate};
use common::{gpu, Config};
use futures::StreamExt;
use hearth::constraint::Format;
use hearth::engine::{
    Engine, EngineError, EngineOptions, Event, FinishReason, GenerateOptions, Session,
};
use hearth::gguf::GgufFile;
use hearth::model::tiny::TinySpec;
use hearth::model::Arch;
use hearth::quant::{GgmlType, Rng};
use hearth::sampling::SamplingParams;
use serde_json::{json, Value};
use std::sync::{Mutex, OnceLock};

fn tiny() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut s = TinySpec::new(Arch::Llama).with_weight_type(GgmlType::Q8_0);
        s.seed = 901;
        let f = GgufFile::from_bytes(s.build()).unwrap();
        let opts = EngineOptions {
            context: 1024,
            batch: 32,
            template: None,
            kv_type: None,
        };
        Engine::load(gpu(Config::Full), &f, opts, &mut |_, _| {}).unwrap()
    })
}

fn sampled(seed: u64, format: Format, max: usize) -> GenerateOptions {
    GenerateOptions {
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Default::default()
        },
        max_tokens: Some(max),
        stop: Vec::new(),
        format: Some(format),
    }
}

/// Runs one generation: its text, ids and why it ended.
fn run(s: &mut Session, ids: &[u32], o: GenerateOptions) -> (String, Vec<u32>, FinishReason) {
    let mut stream = Box::pin(s.generate_tokens(ids.to_vec(), o).unwrap());
    let (mut text, mut out) = (String::new(), Vec::new());
    while let Some(ev) = pollster::block_on(stream.next()) {
        match ev.unwrap() {
            Event::Token { id, text: t, .. } => {
                out.push(id);
                text += &t;
            }
            Event::Done { text: t, stats, .. } => return (text + &t, out, stats.reason),
        }
    }
    panic!("stream ended without Done");
}

#[test]
fn random_schemas_at_temperature_one_always_validate() {
    let e = tiny();
    let mut s = e.session().unwrap();
    let mut rng = Rng::new(77);
    let prompt = [1, 40, 41, 42];
    for case in 0..16 {
        let schema = random_schema(&mut rng, 2);
        let (text, _, reason) = run(
            &mut s,
            &prompt,
            sampled(case, Format::schema(schema.clone()), 1000),
        );
        assert_eq!(
            reason,
            FinishReason::Stop,
            "case {case}: {schema}\nran out of tokens: {text:?}"
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("case {case}: {schema}\nnot JSON ({e}): {text:?}"));
        if let Err(why) = validate(&schema, &v) {
            panic!("case {case}: {schema}\ninvalid: {why}\n{text}");
        }
    }
}

#[test]
fn json_object_mode_gives_one_object() {
    let e = tiny();
    let mut s = e.session().unwrap();
    for seed in 0..4 {
        let (text, _, reason) = run(&mut s, &[1, 50], sampled(seed, Format::JsonObject, 1000));
        // A random model may write long keys and strings; what it wrote must be a JSON
        // object whenever it ended on its own, and a JSON prefix otherwise.
        let mut g = hearth::grammar::JsonGrammar::new();
        assert!(
            g.advance(text.as_bytes()),
            "seed {seed}: not JSON: {text:?}"
        );
        if reason == FinishReason::Stop {
            assert!(
                g.is_complete(),
                "seed {seed}: stopped inside the object: {text:?}"
            );
            // serde_json refuses numbers past f64's range (valid JSON all the same).
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => assert!(v.is_object(), "{text}"),
                Err(e) => assert!(e.to_string().contains("out of range"), "{e}: {text:?}"),
            }
        }
    }
}

#[test]
fn grammars_and_regexes_hold() {
    let e = tiny();
    let mut s = e.session().unwrap();
    let gbnf = r#"
        # a tiny command language
        root   ::= cmd (";" ws cmd){0,2}
        cmd    ::= ("go" | "turn") " " dir | "stop"
        dir    ::= "north" | "south" | [0-9]{1,2} "deg"
        ws     ::= [ ]?
    "#;
    let lark = r#"
        start: "id=" ID ("," ID)*
        ID: /[a-f0-9]{4}/
    "#;
    type Check = (Format, fn(&str) -> bool);
    let checks: [Check; 4] = [
        (Format::grammar(gbnf), |t| {
            t.split(';').all(|c| {
                let c = c.trim_start();
                c == "stop"
                    || ["go ", "turn "].iter().any(|p| {
                        c.strip_prefix(p).is_some_and(|d| {
                            d == "north"
                                || d == "south"
                                || d.strip_suffix("deg").is_some_and(|n| {
                                    (1..=2).contains(&n.len())
                                        && n.bytes().all(|b| b.is_ascii_digit())
                                })
                        })
                    })
            }) && t.matches(';').count() <= 2
        }),
        (Format::grammar(lark), |t| {
            t.strip_prefix("id=").is_some_and(|r| {
                r.split(',').all(|x| {
                    x.len() == 4
                        && x.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                })
            })
        }),
        (Format::Regex("(yes|no|maybe), [1-9][0-9]?".into()), |t| {
            let Some((w, n)) = t.split_once(", ") else {
                return false;
            };
            ["yes", "no", "maybe"].contains(&w)
                && (1..=2).contains(&n.len())
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
        }),
        (Format::Regex("[QZ]{3}!".into()), |t| {
            t.len() == 4 && t.ends_with('!') && t[..3].bytes().all(|b| b == b'Q' || b == b'Z')
        }),
    ];
    for (i, (f, ok)) in checks.iter().enumerate() {
        for seed in 0..3 {
            let (text, _, reason) = run(&mut s, &[1, 60], sampled(seed, f.clone(), 300));
            assert_eq!(
                reason,
                FinishReason::Stop,
                "check {i} seed {seed}: {text:?}"
            );
            assert!(ok(&text), "check {i} seed {seed}: {text:?} does not match");
        }
    }
}

#[test]
fn bad_constraints_are_refused_by_name() {
    let e = tiny();
    let mut s = e.session().unwrap();
    for (f, want) in [
        (Format::grammar("root ::= \"x\" missing"), "never defined"),
        (Format::grammar("start: (((\"x\""), "lark"),
        (Format::Regex("(unclosed".into()), "regular expression"),
        (Format::schema(json!(false)), "accepts nothing"),
        (Format::schema(json!([1, 2])), "must be an object"),
        (Format::schema(json!({"type": "frobnicate"})), "frobnicate"),
    ] {
        let err = match s.generate_tokens(vec![1, 2], sampled(0, f.clone(), 8)) {
            Err(EngineError::Constraint(e)) => e.to_string(),
            Err(e) => panic!("{f:?}: unexpected error {e}"),
            Ok(_) => panic!("{f:?} was accepted"),
        };
        assert!(
            err.to_lowercase().contains(want),
            "{f:?}: {err:?} does not name {want:?}"
        );
        assert!(e.check_format(&f).is_err());
    }
}

/// Constrained requests through batched sessions (each thread its own request, joining
/// at different times) give what a session of its own gives with the same seed.
#[test]
fn batched_sessions_constrain_as_own_sessions_do() {
    let e = tiny();
    let mut rng = Rng::new(5);
    let requests: Vec<(Vec<u32>, GenerateOptions)> = (0..4)
        .map(|i| {
            let f = match i {
                0 => Format::JsonObject,
                1 => Format::Regex("[QZ]{3}!".into()),
                _ => Format::schema(random_schema(&mut rng, 2)),
            };
            (vec![1, 70 + i as u32, 80], sampled(100 + i, f, 400))
        })
        .collect();
    let want: Vec<Vec<u32>> = requests
        .iter()
        .map(|(ids, o)| run(&mut e.session().unwrap(), ids, o.clone()).1)
        .collect();
    let pool = Mutex::new(e.batched_sessions(3, None).unwrap());
    let got: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, (ids, o))| {
                let pool = &pool;
                scope.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(30 * i as u64));
                    let mut s = loop {
                        if let Some(s) = pool.lock().unwrap().pop() {
                            break s;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    };
                    let out = run(&mut s, ids, o.clone()).1;
                    pool.lock().unwrap().push(s);
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got, want);
}

/// Tool calls forced through the grammar (`tool_choice: required`) in each format that
/// has one: what the model writes always parses back into calls of known functions with
/// arguments valid under their schemas.
#[test]
fn forced_tool_calls_parse_and_validate_in_every_format() {
    use hearth::tools::{parse_tools, Style, ToolChoice, ToolSetup};
    let defs = vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
            "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"],
            "additionalProperties": false}}}),
        json!({"type": "function", "function": {"name": "add", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
            "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"],
            "additionalProperties": false}}}),
    ];
    let tools = parse_tools(&defs).unwrap();
    let e = tiny();
    let mut s = e.session().unwrap();
    for style in [Style::Generic, Style::Hermes, Style::Llama3] {
        for (i, choice) in [ToolChoice::Required, ToolChoice::Named("add".into())]
            .into_iter()
            .enumerate()
        {
            let setup = ToolSetup {
                tools: tools.clone(),
                choice: choice.clone(),
                style,
            };
            let f = setup.constraint().expect("a forced call has a grammar");
            // A random model lingers in whitespace and may run out of room before the
            // answer closes; every answer that closed is checked, and most must close.
            let mut closed = 0;
            for seed in 0..4 {
                let o = sampled(seed + 10 * i as u64, f.clone(), 1000);
                let (text, _, reason) = run(&mut s, &[1, 90], o);
                if reason != FinishReason::Stop {
                    continue;
                }
                closed += 1;
                let (_, calls) = setup.parse(&text);
                assert!(
                    !calls.is_empty(),
                    "{style:?} {choice:?}: no call in {text:?}"
                );
                for c in &calls {
                    if let ToolChoice::Named(n) = &choice {
                        assert_eq!(&c.name, n);
                    }
                    let t = tools.iter().find(|t| t.name == c.name).unwrap();
                    validate(&t.parameters, &c.arguments)
                        .unwrap_or_else(|w| panic!("{style:?}: {w}: {text}"));
                }
            }
            assert!(
                closed >= 2,
                "{style:?} {choice:?}: {closed} of 4 answers closed"
            );
        }
    }
}

/// A triggered format: free text until the trigger appears, then the rest follows the
/// grammar. On a random model the trigger (`e`) comes soon enough; what follows it is
/// exactly three digits.
#[test]
fn a_triggered_format_constrains_only_after_its_trigger() {
    let e = tiny();
    let mut s = e.session().unwrap();
    let f = Format::Triggered {
        trigger: "e".into(),
        then: Box::new(Format::Regex("[0-9]{3}".into())),
    };
    let mut triggered = 0;
    for seed in 0..10 {
        let (text, _, reason) = run(&mut s, &[1, 95], sampled(seed, f.clone(), 400));
        // Without the trigger the text is free (it may end any way).
        let Some(at) = text.find('e') else {
            continue;
        };
        triggered += 1;
        let rest = &text[at + 1..];
        assert_eq!(reason, FinishReason::Stop, "{text:?}");
        assert!(
            rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()),
            "after the trigger: {rest:?} in {text:?}"
        );
    }
    assert!(triggered >= 3, "the trigger came {triggered} times of 10");
    let empty = Format::Triggered {
        trigger: String::new(),
        then: Box::new(Format::JsonObject),
    };
    assert!(e.check_format(&empty).is_err());
}

/// Every tool format's grammar compiles on a real tokenizer (Hermes' triggered calls
/// included), for each choice that has one.
#[test]
fn tool_grammars_compile_for_every_style_and_choice() {
    use hearth::tools::{parse_tools, Style, ToolChoice, ToolSetup};
    let defs = [
        json!({"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}}}}),
    ];
    let tools = parse_tools(&defs).unwrap();
    let e = tiny();
    for style in [Style::Generic, Style::Hermes, Style::Llama3, Style::Mistral] {
        for choice in [
            ToolChoice::Auto,
            ToolChoice::Required,
            ToolChoice::Named("f".into()),
        ] {
            let setup = ToolSetup {
                tools: tools.clone(),
                choice: choice.clone(),
                style,
            };
            if let Some(f) = setup.constraint() {
                e.check_format(&f)
                    .unwrap_or_else(|err| panic!("{style:?} {choice:?}: {err}"));
            }
        }
    }
}

/// Grammars built to blow up (nested repetition counts, huge schema bounds, deep
/// nesting) are refused or compiled within llguidance's limits, quickly, never hang.
#[test]
fn explosive_grammars_are_bounded() {
    let e = tiny();
    let deep_schema = (0..200).fold(
        json!({"type": "integer"}),
        |inner, _| json!({"type": "array", "items": inner}),
    );
    for f in [
        Format::grammar("root ::= (\"ab\"{1000}){1000}"),
        Format::grammar("root ::= ((\"a\"{100}){100}){100}"),
        Format::Regex("(a{1000}){1000}".into()),
        Format::Regex("((a|b){500}){500}".into()),
        Format::schema(
            json!({"type": "array", "items": {"type": "string", "minLength": 100000}, "minItems": 100000}),
        ),
        Format::schema(json!({"type": "string", "pattern": "(x{1000}){1000}"})),
        Format::schema(deep_schema),
        Format::grammar(&format!(
            "root ::= {}\"x\"{}",
            "(".repeat(60),
            ")".repeat(60)
        )),
        Format::grammar(&format!(
            "root ::= {}\"x\"{}",
            "(".repeat(100),
            ")".repeat(100)
        )),
    ] {
        let t = std::time::Instant::now();
        let r = e.check_format(&f);
        let took = t.elapsed();
        eprintln!(
            "{:?}: {:?} in {took:?}",
            f.kind(),
            r.as_ref()
                .map_err(|e| e.to_string().chars().take(80).collect::<String>())
        );
        assert!(
            took < std::time::Duration::from_secs(5),
            "{f:?} took {took:?}"
        );
    }
}
