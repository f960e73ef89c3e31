//! Batched decoding (`Model::forward_batch`) against the CPU reference on tiny models of
//! every architecture: sequences in their own KV slots join (prefill) and leave at
//! different steps, a freed slot is reused by a new sequence, and every row of every
//! batched step matches the reference's logits at that sequence's position. On the real
//! model, batched greedy decoding equals one-at-a-time greedy decoding token for token.

mod common;

use common::{assert_close, gpu, Config};
use hearth::gguf::GgufFile;
use hearth::graph::{LoadOptions, Model};
use hearth::model::tiny::TinySpec;
use hearth::model::Arch;
use hearth::quant::{GgmlType, Rng};
use hearth::reference::{RefCache, Reference};

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
            (0..s.prompt + s.steps.len())
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
        let rows: Vec<(usize, u32)> = active
            .iter()
            .map(|&i| (seqs[i].slot, tokens[i][done[i]]))
            .collect();
        model.forward_batch(&rows).unwrap();
        let got = pollster::block_on(model.batch_logits()).unwrap();
        let argmax = pollster::block_on(model.argmax_batch()).unwrap();
        assert_eq!(got.len(), rows.len(), "{name} step {step}");
        for ((&i, row), &top) in active.iter().zip(&got).zip(&argmax) {
            let at = done[i];
            let what = format!("{name} step {step} seq {i} ({} rows) at {at}", rows.len());
            assert_close(&what, row, &want[i][at], BOUND);
            let best = want[i][at]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            assert_eq!(top, best, "{what}: argmax");
            done[i] += 1;
            assert_eq!(model.pos_of(seqs[i].slot), done[i], "{what}: position");
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
    for (i, arch) in Arch::ALL.into_iter().enumerate() {
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
    };
    let mut model = Model::load(gpu(Config::Full), &f, &opts).unwrap();
    let err = |m: &mut Model, rows: &[(usize, u32)]| m.forward_batch(rows).unwrap_err().to_string();
    assert!(err(&mut model, &[]).contains("0 tokens"));
    assert!(err(&mut model, &[(0, 1), (0, 2)]).contains("repeated"));
    assert!(err(&mut model, &[(2, 1)]).contains("out of range"));
    assert!(err(&mut model, &[(0, 1), (1, 2), (0, 3)]).contains("3 tokens"));
    assert!(err(&mut model, &[(0, u32::MAX)]).contains("vocab"));
    assert!(model.set_slot(2).is_err());
    // A full slot refuses its next token; the other slot goes on.
    model.set_slot(1).unwrap();
    model.forward(&[1, 2, 3, 4]).unwrap();
    assert!(err(&mut model, &[(0, 1), (1, 2)]).contains("4"));
    model.forward_batch(&[(0, 1)]).unwrap();
    assert_eq!((model.pos_of(0), model.pos_of(1)), (1, 4));
}
