//! Greedy decoding fed ahead (`Model::forward_argmax`: each step reads the last argmax
//! from GPU memory and is submitted before that argmax is read back) gives exactly the
//! tokens, texts and finish reasons of decoding in turn, on the real Gemma 3 270M, and
//! leaves the session's cache as decoding in turn does: the step fed with the token that
//! ended the text is undone. Its own test binary, as it switches `HEARTH_FEED_AHEAD` for
//! the whole process (lavapipe decodes in turn by default).

mod common;

use common::{gpu, Config};
use futures::StreamExt;
use hearth::engine::{Engine, EngineOptions, Event, GenerateOptions, Prompt, Session, Stats};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use hearth::sampling::SamplingParams;
use hearth::tokenizer::Message;

fn greedy(max: Option<usize>, stop: &[&str]) -> GenerateOptions {
    GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: max,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        format: None,
    }
}

/// (token ids, text, stats) of a whole generation.
fn collect(s: &mut Session, p: &Prompt, o: GenerateOptions) -> (Vec<u32>, String, Stats) {
    let mut stream = Box::pin(s.generate(p, o).unwrap());
    let (mut ids, mut text) = (Vec::new(), String::new());
    while let Some(ev) = pollster::block_on(stream.next()) {
        match ev.unwrap() {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { text: t, stats } => {
                text.push_str(&t);
                return (ids, text, stats);
            }
        }
    }
    panic!("the stream ended without Done");
}

fn set_ahead(on: bool) {
    std::env::set_var("HEARTH_FEED_AHEAD", if on { "1" } else { "0" });
}

/// Every scenario once per mode, on one session per mode: a raw completion to its
/// limit, a chat turn and the next turn over the cache, a stop sequence, the context
/// filling up; then the next turn against a fresh session.
fn scenarios(e: &Engine) -> Vec<(Vec<u32>, String, String)> {
    let user = |c: &str| Message::new("user", c);
    let mut s = e.session().unwrap();
    let mut out = Vec::new();
    let mut record = |name: &str, (ids, text, stats): (Vec<u32>, String, Stats)| {
        let what = format!(
            "{name}: {:?} after {} tokens ({} prompt, {} cached)",
            stats.reason, stats.generated, stats.prompt_tokens, stats.cached_tokens
        );
        out.push((ids, text, what));
    };
    let raw = Prompt::Raw("Question: What is the capital of France?\nAnswer:".into());
    record("raw", collect(&mut s, &raw, greedy(Some(16), &[])));
    let mut conv = vec![user("Name a color.")];
    let first = collect(&mut s, &Prompt::Chat(conv.clone()), greedy(Some(6), &[]));
    conv.push(Message::new("assistant", first.1.clone()));
    record("turn 1", first);
    conv.push(user("Another one."));
    let second = collect(&mut s, &Prompt::Chat(conv.clone()), greedy(Some(6), &[]));
    let mut fresh = e.session().unwrap();
    let again = collect(&mut fresh, &Prompt::Chat(conv), greedy(Some(6), &[]));
    assert_eq!(
        second.0, again.0,
        "the next turn over the cache and fresh differ"
    );
    assert!(second.2.cached_tokens >= 10, "{:?}", second.2.cached_tokens);
    record("turn 2", second);
    let count = Prompt::Raw("1, 2, 3, 4, 5,".into());
    let (_, full, _) = collect(&mut s, &count, greedy(Some(12), &[]));
    let stop = full.trim_start()[2..].chars().take(3).collect::<String>();
    record("stop", collect(&mut s, &count, greedy(Some(12), &[&stop])));
    // After the stop, the same prompt again reuses the cache and continues alike.
    record("after stop", collect(&mut s, &count, greedy(Some(12), &[])));
    let words = Prompt::Raw("word ".repeat(240));
    let filled = collect(&mut s, &words, greedy(None, &[]));
    assert!(filled.2.prompt_tokens + filled.2.generated <= 257);
    record("context full", filled);
    out
}

#[test]
fn fed_ahead_equals_in_turn() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    // The model API: argmax_before reads the token forward_argmax fed.
    let g = gpu(Config::Full);
    let opts = LoadOptions {
        context: 64,
        batch: 16,
        all_logits: false,
        sequences: 1,
        kv_size: None,
        kv_type: None,
    };
    let mut m = Model::load(g.clone(), &f, &opts).unwrap();
    assert!(m.forward_argmax().is_err(), "fed an argmax before any step");
    let prompt = [2u32, 818, 5279, 529, 7001, 563];
    m.forward(&prompt).unwrap();
    let mut in_turn = Vec::new();
    for _ in 0..8 {
        let id = pollster::block_on(m.argmax()).unwrap();
        in_turn.push(id);
        m.forward(&[id]).unwrap();
    }
    m.reset();
    m.forward(&prompt).unwrap();
    let mut ahead = Vec::new();
    for _ in 0..8 {
        m.forward_argmax().unwrap();
        ahead.push(pollster::block_on(m.argmax_before()).unwrap());
    }
    assert_eq!(ahead, in_turn);
    assert_eq!(m.pos(), prompt.len() + 8);
    // At capacity the step is refused, not run.
    while m.pos() < 64 {
        m.forward_argmax().unwrap();
    }
    assert!(m.forward_argmax().is_err(), "fed past the capacity");

    let opts = EngineOptions {
        context: 256,
        batch: 64,
        template: None,
        kv_type: None,
    };
    let e = Engine::load(g, &f, opts, &mut |_, _| {}).unwrap();
    set_ahead(false);
    let want = scenarios(&e);
    set_ahead(true);
    let got = scenarios(&e);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(got.len(), want.len());
}
