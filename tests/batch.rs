//! Batched decoding (`Model::forward_batch`) against the CPU reference on tiny models of
//! every architecture: sequences in their own KV slots join (prefill) and leave at
//! different steps, a freed slot is reused by a new sequence, and every row of every
//! batched step matches the reference's logits at that sequence's position. On the real
//! model, batched greedy decoding equals one-at-a-time greedy decoding token for token.
//! Through the engine, batched sessions (continuous batching) generate what sessions of
//! their own generate, with requests joining, leaving and reusing slots.

mod common;

use common::{argmax, assert_close, gpu, Config};
use futures::StreamExt;
use hearth::engine::{Engine, EngineOptions, Event, GenerateOptions, Prompt, Session};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use hearth::model::tiny::TinySpec;
use hearth::model::Arch;
use hearth::quant::{GgmlType, Rng};
use hearth::reference::{RefCache, Reference};
use hearth::sampling::SamplingParams;
use std::sync::Mutex;
use std::time::Duration;

/// As in the forward tests: the same f32 math on the same weights and rounded KV cache;
/// only accumulation order differs.
const BOUND: f64 = 1e-6;

/// A sequence of the schedule: its slot, the steps it is active in, its prompt length.
struct Seq {
    slot: usize,
    steps: std::ops::Range<usize>,
    prompt: usize,
}

fn check(spec: &TinySpec, cfg: Config) {
    let f = GgufFile::from_bytes(spec.build()).unwrap();
    let g = gpu(cfg);
    let reference = Reference::load(&f).unwrap();
    let opts = LoadOptions {
        context: 40,
        batch: 8,
        all_logits: false,
        sequences: 3,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(g.clone(), &f, &opts).unwrap();
    assert_eq!(model.sequences(), 3);
    // Slot 1 is freed after step 4 and reused from step 6; sequence 2 joins late.
    let seqs = [
        Seq {
            slot: 0,
            steps: 0..12,
            prompt: 5,
        },
        Seq {
            slot: 1,
            steps: 0..4,
            prompt: 11,
        },
        Seq {
            slot: 2,
            steps: 3..12,
            prompt: 3,
        },
        Seq {
            slot: 1,
            steps: 6..10,
            prompt: 9,
        },
    ];
    let mut rng = Rng::new(spec.seed);
    let vocab = reference.cfg.vocab as u64;
    let tokens: Vec<Vec<u32>> = seqs
        .iter()
        .map(|s| {
            (0..s.prompt + 2 * s.steps.len())
                .map(|_| rng.below(vocab) as u32)
                .collect()
        })
        .collect();
    let want: Vec<Vec<Vec<f32>>> = tokens
        .iter()
        .map(|t| {
            let mut cache = RefCache::new(&reference.cfg, 40, g.features.shader_f16);
            reference.forward(&mut cache, t, 0).unwrap()
        })
        .collect();
    let name = format!("{:?} {} {cfg:?}", spec.arch, spec.weight_type);
    let mut done = vec![0usize; seqs.len()]; // tokens of each sequence run so far
    for step in 0..12 {
        // Joiners prefill their prompt in their slot (chunks of 8, one sequence a step).
        for (i, s) in seqs.iter().enumerate() {
            if s.steps.start == step {
                model.set_slot(s.slot).unwrap();
                model.reset();
                model.forward(&tokens[i][..s.prompt]).unwrap();
                let got = pollster::block_on(model.logits()).unwrap();
                let at = s.prompt - 1;
                assert_close(&format!("{name} seq {i} prompt"), &got, &want[i][at], BOUND);
                done[i] = s.prompt;
            }
        }
        let active: Vec<usize> = (0..seqs.len())
            .filter(|&i| seqs[i].steps.contains(&step))
            .collect();
        // On odd steps the first active sequence feeds three tokens (as a short prompt
        // shares a step with decodes): one row after its first, one after every other
        // sequence's, so the step holds more rows than sequences and the sequence's
        // rows are not all adjacent.
        let mut rowseq: Vec<usize> = active.clone();
        if step % 2 == 1 && !active.is_empty() && active.len() + 2 <= model.step_rows() {
            let i = active[0];
            if done[i] + 3 <= tokens[i].len() {
                rowseq.insert(1, i);
                rowseq.push(i);
            }
        }
        let mut at = done.clone();
        let rows: Vec<(usize, u32)> = rowseq
            .iter()
            .map(|&i| {
                at[i] += 1;
                (seqs[i].slot, tokens[i][at[i] - 1])
            })
            .collect();
        // Each row's position; the step's outputs are each sequence's last row, in the
        // order of those rows.
        let mut next = done.clone();
        let row_pos: Vec<usize> = rowseq
            .iter()
            .map(|&i| {
                next[i] += 1;
                next[i] - 1
            })
            .collect();
        let outs: Vec<usize> = (0..rowseq.len())
            .filter(|&r| !rowseq[r + 1..].contains(&rowseq[r]))
            .collect();
        model.forward_batch(&rows).unwrap();
        let got = pollster::block_on(model.batch_logits()).unwrap();
        let tops = pollster::block_on(model.argmax_batch()).unwrap();
        assert_eq!(got.len(), outs.len(), "{name} step {step}");
        assert_eq!(tops.len(), outs.len(), "{name} step {step}");
        // Every output's top-k at once equals each output's on its own.
        let picks: Vec<(usize, usize)> = (0..outs.len()).map(|r| (r, 3 + 2 * r)).collect();
        let all = pollster::block_on(model.sample_top_k_rows(&picks)).unwrap();
        assert_eq!(all.len(), picks.len(), "{name} step {step}: top-k rows");
        for (&(r, k), cands) in picks.iter().zip(&all) {
            let one = pollster::block_on(model.sample_top_k_row(r, k)).unwrap();
            assert_eq!(cands, &one, "{name} step {step} row {r}: top-{k}");
            assert_eq!(cands.len(), k.min(reference.cfg.vocab));
            assert_eq!(
                cands[0].0,
                argmax(&got[r]),
                "{name} step {step} row {r}: top-1"
            );
        }
        for ((&r, row), &top) in outs.iter().zip(&got).zip(&tops) {
            let (i, at) = (rowseq[r], row_pos[r]);
            let what = format!("{name} step {step} seq {i} ({} rows) at {at}", rows.len());
            assert_close(&what, row, &want[i][at], BOUND);
            assert_eq!(top, argmax(&want[i][at]), "{what}: argmax");
        }
        done = next;
        for &i in &active {
            assert_eq!(
                model.pos_of(seqs[i].slot),
                done[i],
                "{name} step {step}: position"
            );
        }
    }
}

fn spec(arch: Arch, ty: GgmlType, seed: u64) -> TinySpec {
    let mut s = TinySpec::new(arch).with_weight_type(ty);
    s.seed = seed;
    s
}

#[test]
fn batched_steps_match_reference_every_architecture() {
    let types = [
        GgmlType::Q4_K,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::Q4_1,
    ];
    for (i, arch) in Arch::ALL.into_iter().filter(|a| a.causal()).enumerate() {
        check(
            &spec(arch, types[i % types.len()], 300 + i as u64),
            Config::Full,
        );
    }
    check(&spec(Arch::Gemma3, GgmlType::Q6_K, 310), Config::Bare);
    check(&spec(Arch::Llama, GgmlType::Q5_0, 311), Config::Bare);
}

#[test]
fn batched_step_refuses_bad_rows() {
    let spec = spec(Arch::Llama, GgmlType::Q8_0, 320);
    let f = GgufFile::from_bytes(spec.build()).unwrap();
    let opts = LoadOptions {
        context: 4,
        batch: 4,
        all_logits: false,
        sequences: 2,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(gpu(Config::Full), &f, &opts).unwrap();
    let err = |m: &mut Model, rows: &[(usize, u32)]| m.forward_batch(rows).unwrap_err().to_string();
    assert!(err(&mut model, &[]).contains("0 tokens"));
    assert!(err(&mut model, &[(2, 1)]).contains("slot 2"));
    let most = model.step_rows();
    assert_eq!(most, 2 + hearth::graph::PROMPT_ROWS);
    let over: Vec<(usize, u32)> = (0..=most).map(|r| (r % 2, 1)).collect();
    assert!(err(&mut model, &over).contains(&format!("{} tokens", most + 1)));
    assert!(err(&mut model, &[(0, u32::MAX)]).contains("vocab"));
    assert!(model.set_slot(2).is_err());
    // A full slot refuses its next token; the other slot goes on.
    model.set_slot(1).unwrap();
    model.forward(&[1, 2, 3, 4]).unwrap();
    assert!(err(&mut model, &[(0, 1), (1, 2)]).contains("4"));
    model.forward_batch(&[(0, 1)]).unwrap();
    assert_eq!((model.pos_of(0), model.pos_of(1)), (1, 4));
    // Rows of one slot take consecutive positions; past the capacity they are refused.
    model.forward_batch(&[(0, 1), (0, 2)]).unwrap();
    assert_eq!(model.pos_of(0), 3);
    assert!(err(&mut model, &[(0, 1), (0, 2)]).contains("5"));
}

/// The paged KV cache's prefix sharing against the reference: a sequence that adopts
/// another's published whole pages gives the reference's logits for its own prompt,
/// holds only its own pages past them, and keeps doing so after truncating into a
/// shared page (copied, not overwritten: the owner's next token is still right). Pages
/// of an ended sequence stay cached for a later one; a pool too small for a request
/// refuses it by name, and the model goes on.
fn check_prefix(spec: &TinySpec, cfg: Config) {
    let f = GgufFile::from_bytes(spec.build()).unwrap();
    let g = gpu(cfg);
    let reference = Reference::load(&f).unwrap();
    let opts = LoadOptions {
        context: 64,
        batch: 8,
        all_logits: false,
        sequences: 3,
        kv_size: None,
        kv_type: None,
    };
    let mut model = Model::load(g.clone(), &f, &opts).unwrap();
    assert_eq!(model.kv_pages().page_size, 16);
    let mut rng = Rng::new(spec.seed);
    let vocab = reference.cfg.vocab as u64;
    let mut draw = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(vocab) as u32).collect() };
    let prefix = draw(40);
    let a = [prefix.clone(), draw(6)].concat();
    let b = [prefix.clone(), draw(8)].concat();
    let want = |t: &[u32]| {
        let mut cache = RefCache::new(&reference.cfg, 64, g.features.shader_f16);
        reference.forward(&mut cache, t, 0).unwrap()
    };
    let name = format!("{:?} {} {cfg:?}", spec.arch, spec.weight_type);
    let last = |m: &Model| pollster::block_on(m.logits()).unwrap();
    model.set_slot(0).unwrap();
    model.forward(&a[..45]).unwrap();
    model.publish_prefix(&a[..45]);
    assert_eq!(model.pages_held_by(0), 3);
    model.set_slot(1).unwrap();
    // Two whole pages of the prefix shared, then a's third page (published with its 13
    // tokens) copied for the positions b has in common with it.
    let common = a[..45].iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(common >= 40);
    assert_eq!(
        model.share_prefix(&b),
        common,
        "{name}: the prefix, two whole pages and part of a third"
    );
    model.forward(&b[common..45]).unwrap();
    assert_close(
        &format!("{name} b after sharing"),
        &last(&model),
        &want(&b[..45])[44],
        BOUND,
    );
    assert_eq!(
        model.kv_pages().held,
        4,
        "{name}: b holds one page of its own"
    );
    // b goes back into its second (shared) page: copied, so a's stays intact.
    model.truncate(20);
    model.forward(&b[20..45]).unwrap();
    assert_close(
        &format!("{name} b after the copy"),
        &last(&model),
        &want(&b[..45])[44],
        BOUND,
    );
    model.forward_batch(&[(0, a[45]), (1, b[45])]).unwrap();
    let rows = pollster::block_on(model.batch_logits()).unwrap();
    assert_close(&format!("{name} a next"), &rows[0], &want(&a)[45], BOUND);
    assert_close(
        &format!("{name} b next"),
        &rows[1],
        &want(&b[..46])[45],
        BOUND,
    );
    // a ends; its published pages stay cached for a later sequence, which copies the
    // third (position 45 a wrote after publishing lies past its 13 tokens).
    model.set_slot(0).unwrap();
    model.reset();
    model.set_slot(2).unwrap();
    assert_eq!(model.share_prefix(&a), 45, "{name}: cached after a left");
    model.forward(&a[45..]).unwrap();
    assert_close(
        &format!("{name} a again"),
        &last(&model),
        &want(&a)[45],
        BOUND,
    );
}

#[test]
fn shared_prefix_pages_match_reference() {
    check_prefix(&spec(Arch::Llama, GgmlType::Q8_0, 340), Config::Full);
    check_prefix(&spec(Arch::Gemma3, GgmlType::Q4_K, 341), Config::Bare);
    check_prefix(&spec(Arch::Qwen3, GgmlType::F16, 342), Config::Full);
}

#[test]
fn a_full_page_pool_refuses_by_name() {
    let f = GgufFile::from_bytes(spec(Arch::Llama, GgmlType::Q8_0, 343).build()).unwrap();
    let opts = LoadOptions {
        context: 64,
        batch: 8,
        all_logits: false,
        sequences: 2,
        kv_size: Some(40),
        kv_type: None,
    };
    let mut model = Model::load(gpu(Config::Full), &f, &opts).unwrap();
    assert_eq!(model.kv_pages().total, 3);
    model.forward(&[1; 40]).unwrap();
    model.set_slot(1).unwrap();
    let e = model.forward(&[2; 9]).unwrap_err().to_string();
    assert!(e.contains("KV cache is full"), "{e}");
    let e = model
        .forward_batch(&[(0, 3), (1, 4)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("KV cache is full"), "{e}");
    model.set_slot(0).unwrap();
    model.truncate(16);
    model.set_slot(1).unwrap();
    model.forward(&[2; 9]).unwrap();
    model.forward_batch(&[(0, 3), (1, 4)]).unwrap();
    assert_eq!((model.pos_of(0), model.pos_of(1)), (17, 10));
}

/// Runs one generation to the end: the token ids.
fn generate(s: &mut Session, ids: Vec<u32>, o: GenerateOptions) -> Vec<u32> {
    let mut stream = Box::pin(s.generate_tokens(ids, o).unwrap());
    let mut out = Vec::new();
    while let Some(ev) = pollster::block_on(stream.next()) {
        match ev.unwrap() {
            Event::Token { id, .. } => out.push(id),
            Event::Done { .. } => return out,
        }
    }
    panic!("stream ended without Done");
}

fn options(kind: usize, max: usize) -> GenerateOptions {
    let sampling = match kind % 3 {
        0 => SamplingParams::greedy(),
        1 => SamplingParams {
            repeat_penalty: 1.3,
            ..SamplingParams::greedy()
        },
        _ => SamplingParams {
            temperature: 0.9,
            top_k: 20,
            seed: 11 + kind as u64,
            ..Default::default()
        },
    };
    GenerateOptions {
        sampling,
        max_tokens: Some(max),
        stop: Vec::new(),
        format: None,
    }
}

/// Requests through batched sessions, running at once (each on its own thread, joining
/// at different times and leaving after different lengths, more requests than slots so
/// a slot is reused), give the tokens a session of its own gives: greedy, greedy with
/// repetition penalty (per-row penalties and top-k on the GPU) and seeded sampling.
fn check_engine(e: &Engine, requests: &[(Vec<u32>, GenerateOptions)], slots: usize) {
    let want: Vec<Vec<u32>> = requests
        .iter()
        .map(|(ids, o)| generate(&mut e.session().unwrap(), ids.clone(), o.clone()))
        .collect();
    let pool = Mutex::new(e.batched_sessions(slots, None).unwrap());
    let got: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, (ids, o))| {
                let pool = &pool;
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(40 * i as u64));
                    let mut s = loop {
                        if let Some(s) = pool.lock().unwrap().pop() {
                            break s;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    let out = generate(&mut s, ids.clone(), o.clone());
                    pool.lock().unwrap().push(s);
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "request {i}: batched tokens differ from a session of its own"
        );
        assert!(!w.is_empty(), "request {i} generated nothing");
    }
}

#[test]
fn batched_sessions_generate_as_own_sessions_do() {
    for (arch, ty, seed) in [
        (Arch::Llama, GgmlType::Q8_0, 330),
        (Arch::Gemma3, GgmlType::Q4_K, 331),
    ] {
        let f = GgufFile::from_bytes(spec(arch, ty, seed).build()).unwrap();
        let opts = EngineOptions {
            context: 48,
            batch: 8,
            template: None,
            kv_type: None,
        };
        let e = Engine::load(gpu(Config::Full), &f, opts, &mut |_, _| {}).unwrap();
        let vocab = e.config().vocab as u64;
        let mut rng = Rng::new(seed);
        let requests: Vec<(Vec<u32>, GenerateOptions)> =
            [(3, 20), (12, 9), (5, 16), (9, 12), (2, 7)]
                .iter()
                .enumerate()
                .map(|(i, &(len, max))| {
                    let ids = (0..len).map(|_| rng.below(vocab) as u32).collect();
                    (ids, options(i, max))
                })
                .collect();
        check_engine(&e, &requests, 3);
    }
}

/// The same on the real model (Gemma 3 270M): four requests on three slots, greedy
/// output token for token.
#[test]
fn batched_greedy_equals_unbatched_on_the_real_model() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let opts = EngineOptions {
        context: 96,
        batch: 64,
        template: None,
        kv_type: None,
    };
    let e = Engine::load(gpu(Config::Full), &f, opts, &mut |_, _| {}).unwrap();
    let prompts = [
        "The capital of France is",
        "A short history of the printing press: in 1440,",
        "def fibonacci(n):",
        "Water boils at",
    ];
    let requests: Vec<(Vec<u32>, GenerateOptions)> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = e.tokenize_prompt(&Prompt::Raw(p.to_string())).unwrap();
            (ids, options(0, 10 + 4 * i))
        })
        .collect();
    check_engine(&e, &requests, 3);
}

/// An engine over a tiny Llama (Q8_0) of 96 positions, prefill chunks of 8.
fn tiny_llama_engine(seed: u64) -> Engine {
    let f = GgufFile::from_bytes(spec(Arch::Llama, GgmlType::Q8_0, seed).build()).unwrap();
    let opts = EngineOptions {
        context: 96,
        batch: 8,
        template: None,
        kv_type: None,
    };
    Engine::load(gpu(Config::Full), &f, opts, &mut |_, _| {}).unwrap()
}

/// Batched sessions share a common prompt prefix through the prefix cache: after the
/// first request publishes its pages, each later request (on either slot) takes the
/// whole pages of the shared prefix from the cache and a copy of the page it shares in
/// part (reported as cached prompt tokens), and still generates what a session of its
/// own generates.
#[test]
fn batched_sessions_share_a_prompt_prefix() {
    let e = tiny_llama_engine(344);
    let vocab = e.config().vocab as u64;
    let mut rng = Rng::new(344);
    let mut draw = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(vocab) as u32).collect() };
    let prefix = draw(37);
    let requests: Vec<Vec<u32>> = (3..7).map(|n| [prefix.clone(), draw(n)].concat()).collect();
    let o = options(0, 6);
    let want: Vec<Vec<u32>> = requests
        .iter()
        .map(|ids| generate(&mut e.session().unwrap(), ids.clone(), o.clone()))
        .collect();
    let mut pool = e.batched_sessions(2, None).unwrap();
    for (i, ids) in requests.iter().enumerate() {
        let s = &mut pool[i % 2];
        let mut stream = Box::pin(s.generate_tokens(ids.clone(), o.clone()).unwrap());
        let mut out = Vec::new();
        let mut cached = None;
        while let Some(ev) = pollster::block_on(stream.next()) {
            match ev.unwrap() {
                Event::Token { id, .. } => out.push(id),
                Event::Done { stats, .. } => cached = Some(stats.cached_tokens),
            }
        }
        assert_eq!(
            out, want[i],
            "request {i}: tokens differ from a session of its own"
        );
        // The longest start of the prompt (less its last token) that an earlier request
        // was fed (its prompt, then its tokens but the last): two whole pages shared,
        // the rest of the shared prefix copied from the third page.
        let want_cached = (0..i)
            .map(|j| {
                let fed = [&requests[j][..], &want[j][..want[j].len() - 1]].concat();
                let own = &ids[..ids.len() - 1];
                fed.iter().zip(own).take_while(|(x, y)| x == y).count()
            })
            .max()
            .unwrap_or(0);
        assert!(i == 0 || want_cached >= 37);
        assert_eq!(
            cached,
            Some(want_cached),
            "request {i}: cached prompt tokens"
        );
    }
}

/// A pool with room for one request at a time (`kv_size` of 4 pages of 16 on 2 slots):
/// a second request's prompt waits for pages until the first ends, then both generate
/// what sessions of their own generate; a prompt no empty pool could hold is refused
/// by name, and the sessions go on.
#[test]
fn prompts_wait_for_kv_pages() {
    let e = tiny_llama_engine(345);
    let vocab = e.config().vocab as u64;
    let mut rng = Rng::new(345);
    let requests: Vec<Vec<u32>> = (0..2)
        .map(|_| (0..40).map(|_| rng.below(vocab) as u32).collect())
        .collect();
    let o = options(0, 6);
    let want: Vec<Vec<u32>> = requests
        .iter()
        .map(|ids| generate(&mut e.session().unwrap(), ids.clone(), o.clone()))
        .collect();
    let mut pool = e.batched_sessions(2, Some(64)).unwrap();
    let counters = pool[0].batch_counters().unwrap();
    let (s0, s1) = pool.split_at_mut(1);
    // b's prompt arrives once a holds the pages of its whole prompt.
    let (started, start) = std::sync::mpsc::channel();
    let got: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let (r, o) = (&requests, &o);
        let a = scope.spawn(move || {
            let mut stream = Box::pin(s0[0].generate_tokens(r[0].clone(), o.clone()).unwrap());
            let mut out = Vec::new();
            while let Some(ev) = pollster::block_on(stream.next()) {
                match ev.unwrap() {
                    Event::Token { id, .. } => {
                        out.push(id);
                        let _ = started.send(());
                        // Slow enough that b's prompt meets a full pool.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Event::Done { .. } => break,
                }
            }
            out
        });
        start.recv().unwrap();
        let b = scope.spawn(move || generate(&mut s1[0], r[1].clone(), o.clone()));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(got, want, "tokens differ from sessions of their own");
    let waits = counters
        .page_waits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(waits > 0, "b's prompt never waited for pages");
    let long: Vec<u32> = (0..70).map(|_| rng.below(vocab) as u32).collect();
    let e = pool[0]
        .generate_tokens(long, o.clone())
        .and_then(|s| {
            let mut s = Box::pin(s);
            while let Some(ev) = pollster::block_on(s.next()) {
                ev?;
            }
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("KV cache is full"), "{e}");
    assert_eq!(generate(&mut pool[1], requests[0].clone(), o), want[0]);
}
