//! Choosing the next token from the GPU-selected candidates: temperature, top-k, min-p,
//! top-p and a seeded draw, with ollama's defaults. The vocabulary stays on the GPU
//! (penalties and top-k run there, see `kernels::penalties` and `kernels::topk`); this
//! module only sees the few hundred (id, logit) pairs read back, so it is plain CPU code
//! with no wgpu dependency and runs the same in a browser.

use crate::quant::Rng;
use std::collections::{HashMap, VecDeque};
use thiserror::Error;

/// A sampling parameter outside its valid range.
#[derive(Debug, Error, PartialEq)]
#[error("sampling parameter {name} = {value}: {expected}")]
pub struct ParamError {
    /// The parameter's name.
    pub name: &'static str,
    /// The value given.
    pub value: f64,
    /// The valid range, in words.
    pub expected: &'static str,
}

/// The longest penalty window accepted: far above any context hearth serves, and a bound
/// on what one option can make the sampler hold.
pub const MAX_REPEAT_LAST_N: usize = 1 << 20;

/// How the next token is chosen; `Default` holds ollama's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits; 0 means greedy (the first candidate).
    pub temperature: f32,
    /// Candidates kept; 0 means all the GPU top-k returned.
    pub top_k: usize,
    /// Nucleus: smallest set of candidates whose probability reaches this (1 = off).
    pub top_p: f32,
    /// Drops candidates below `min_p` times the top probability (0 = off).
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of recent tokens (1 = off).
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every token in the window (0 = off).
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the window (0 = off).
    pub frequency_penalty: f32,
    /// Tokens of history the penalties look at, at most `MAX_REPEAT_LAST_N` (the server
    /// maps ollama's -1, "the whole context", to the context size).
    pub repeat_last_n: usize,
    /// Seed of the draw: the same seed and inputs give the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.1,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding without penalties.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), ParamError> {
        let err = |name, value: f32, expected| {
            Err(ParamError {
                name,
                value: value as f64,
                expected,
            })
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return err("temperature", self.temperature, "must be finite and >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return err("top_p", self.top_p, "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return err(
                "repeat_penalty",
                self.repeat_penalty,
                "must be finite and > 0",
            );
        }
        if self.repeat_last_n > MAX_REPEAT_LAST_N {
            return Err(ParamError {
                name: "repeat_last_n",
                value: self.repeat_last_n as f64,
                expected: "must be at most 1048576 (use the context size for the whole context)",
            });
        }
        if !self.presence_penalty.is_finite() {
            return err("presence_penalty", self.presence_penalty, "must be finite");
        }
        if !self.frequency_penalty.is_finite() {
            return err(
                "frequency_penalty",
                self.frequency_penalty,
                "must be finite",
            );
        }
        Ok(())
    }
}

/// A seeded sampler with the token history its penalties need.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    history: VecDeque<u32>,
}

impl Sampler {
    /// A sampler for `params`, after checking them.
    pub fn new(params: SamplingParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            rng: Rng::new(params.seed),
            // Grows with the tokens actually seen, never sized by the option.
            history: VecDeque::new(),
            params,
        })
    }

    /// The parameters this sampler uses.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Distinct ids of the last `repeat_last_n` tokens with their counts, in order of
    /// first appearance: what the GPU penalties kernel takes.
    pub fn window(&self) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        let mut at: HashMap<u32, usize> = HashMap::new();
        for &id in &self.history {
            match at.get(&id) {
                Some(&i) => out[i].1 += 1,
                None => {
                    at.insert(id, out.len());
                    out.push((id, 1));
                }
            }
        }
        out
    }

    /// Records a token chosen (or forced, e.g. the prompt) into the penalty window.
    pub fn accept(&mut self, id: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        while self.history.len() >= self.params.repeat_last_n {
            self.history.pop_front();
        }
        self.history.push_back(id);
    }

    /// Picks a token among `candidates` (GPU top-k, sorted by logit descending,
    /// penalties applied); `u32::MAX` when there is none. Does not record it: call
    /// `accept`.
    pub fn sample(&mut self, candidates: &[(u32, f32)]) -> u32 {
        let Some(&(first, top)) = candidates.first() else {
            return u32::MAX;
        };
        let p = &self.params;
        // Greedy, or nothing finite to weigh: the first candidate.
        if p.temperature == 0.0 || !top.is_finite() {
            return first;
        }
        let k = match p.top_k {
            0 => candidates.len(),
            k => k.min(candidates.len()),
        };
        // Softmax of logit / T relative to the top one, in f64: the top weight is 1.
        let t = p.temperature as f64;
        let mut w: Vec<f64> = candidates[..k]
            .iter()
            .map(|&(_, l)| ((l as f64 - top as f64) / t).exp())
            .map(|x| if x.is_nan() { 0.0 } else { x })
            .collect();
        // min-p: relative to the top probability, i.e. to the top weight of 1.
        let keep = w
            .iter()
            .take_while(|&&x| x >= p.min_p as f64)
            .count()
            .max(1);
        w.truncate(keep);
        // top-p: the shortest prefix whose probability reaches top_p (at least one).
        let total: f64 = w.iter().sum();
        let mut cum = 0.0;
        let mut keep = w.len();
        for (i, x) in w.iter().enumerate() {
            cum += x;
            if cum >= p.top_p as f64 * total {
                keep = i + 1;
                break;
            }
        }
        w.truncate(keep.max(1));
        let total: f64 = w.iter().sum();
        let u = self.rng.next_f32() as f64 * total;
        let mut cum = 0.0;
        for (i, x) in w.iter().enumerate() {
            cum += x;
            if u < cum {
                return candidates[i].0;
            }
        }
        // Rounding left u at the very top: the last kept candidate.
        candidates[w.len() - 1].0
    }
}

/// Stop sequences over streamed text: text that might be the start of a stop sequence is
/// held back until it is decided, and a stop sequence is never released, even when it
/// spans several tokens.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds newly decoded text; returns the text now safe to show and whether a stop
    /// sequence was reached (then the text before it is returned and the rest dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Hold the longest suffix that is a proper prefix of some stop sequence.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// The held text, once generation ends without a stop sequence.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on char
/// boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(p: SamplingParams) -> Sampler {
        Sampler::new(p).expect("valid params")
    }

    const CANDS: [(u32, f32); 4] = [(7, 2.0), (3, 1.0), (9, 0.5), (1, -1.0)];

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let draw = |seed| {
            let mut s = sampler(SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                seed,
                ..Default::default()
            });
            (0..64).map(|_| s.sample(&CANDS)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn greedy_cases_pick_the_first_candidate() {
        for p in [
            SamplingParams::greedy(),
            SamplingParams {
                top_k: 1,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1e-6,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
        ] {
            let mut s = sampler(p.clone());
            for _ in 0..100 {
                assert_eq!(s.sample(&CANDS), 7, "{p:?}");
            }
        }
        assert_eq!(sampler(SamplingParams::default()).sample(&[]), u32::MAX);
        let inf = [(4, f32::NEG_INFINITY), (5, f32::NEG_INFINITY)];
        assert_eq!(sampler(SamplingParams::default()).sample(&inf), 4);
    }

    #[test]
    fn min_p_keeps_exactly_the_candidates_above_the_threshold() {
        // Probabilities relative to the top at T = 1: 1, e^-1 = 0.368, e^-1.5 = 0.223,
        // e^-3 = 0.050. min_p 0.3 keeps ids 7 and 3 only.
        let mut s = sampler(SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            min_p: 0.3,
            ..Default::default()
        });
        let mut seen = [0usize; 10];
        for _ in 0..5000 {
            seen[s.sample(&CANDS) as usize] += 1;
        }
        assert_eq!(seen[9] + seen[1], 0, "{seen:?}");
        assert!(seen[7] > 0 && seen[3] > 0, "{seen:?}");
    }

    #[test]
    fn top_p_keeps_the_shortest_prefix_reaching_p() {
        // Softmax at T = 1: 0.609, 0.224, 0.136, 0.030. top_p 0.8 needs 7 and 3.
        let mut s = sampler(SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            ..Default::default()
        });
        let mut seen = [0usize; 10];
        for _ in 0..5000 {
            seen[s.sample(&CANDS) as usize] += 1;
        }
        assert_eq!(seen[9] + seen[1], 0, "{seen:?}");
        assert!(seen[3] > 0, "{seen:?}");
    }

    /// 20k draws: each frequency within 0.015 of the softmax (the standard error of a
    /// frequency near 0.6 is 0.0035, so this is over 4 sigma).
    #[test]
    fn frequencies_follow_the_softmax() {
        let t = 0.7f64;
        let mut s = sampler(SamplingParams {
            temperature: t as f32,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
            ..Default::default()
        });
        let n = 20_000;
        let mut seen = [0usize; 10];
        for _ in 0..n {
            seen[s.sample(&CANDS) as usize] += 1;
        }
        let e: Vec<f64> = CANDS.iter().map(|c| (c.1 as f64 / t).exp()).collect();
        let z: f64 = e.iter().sum();
        for (c, e) in CANDS.iter().zip(&e) {
            let got = seen[c.0 as usize] as f64 / n as f64;
            assert!(
                (got - e / z).abs() < 0.015,
                "id {}: {got} vs {}",
                c.0,
                e / z
            );
        }
    }

    #[test]
    fn window_counts_the_last_n_tokens() {
        let mut s = sampler(SamplingParams {
            repeat_last_n: 4,
            ..Default::default()
        });
        for id in [5, 1, 2, 2, 3, 2] {
            s.accept(id);
        }
        assert_eq!(s.window(), vec![(2, 3), (3, 1)]);
        let mut off = sampler(SamplingParams {
            repeat_last_n: 0,
            ..Default::default()
        });
        off.accept(1);
        assert!(off.window().is_empty());
    }

    #[test]
    fn repeat_last_n_is_bounded_and_allocates_nothing_up_front() {
        // `hearth run --repeat-last-n 18446744073709551615` used to size the history by it.
        let huge = SamplingParams {
            repeat_last_n: usize::MAX,
            ..Default::default()
        };
        let e = Sampler::new(huge).unwrap_err();
        assert_eq!(e.name, "repeat_last_n");
        let mut s = sampler(SamplingParams {
            repeat_last_n: MAX_REPEAT_LAST_N,
            ..Default::default()
        });
        assert!(s.history.capacity() < 1024, "{}", s.history.capacity());
        for id in 0..100 {
            s.accept(id);
        }
        assert_eq!(s.window().len(), 100);
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let d = SamplingParams::default;
        assert!(d().validate().is_ok());
        for (p, name) in [
            (
                SamplingParams {
                    temperature: -0.1,
                    ..d()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..d()
                },
                "temperature",
            ),
            (SamplingParams { top_p: 1.5, ..d() }, "top_p"),
            (SamplingParams { min_p: -0.1, ..d() }, "min_p"),
            (
                SamplingParams {
                    repeat_penalty: 0.0,
                    ..d()
                },
                "repeat_penalty",
            ),
        ] {
            assert_eq!(p.validate().map_err(|e| e.name), Err(name));
        }
    }

    #[test]
    fn stop_sequences_are_held_across_tokens_and_never_released() {
        let mut m = StopMatcher::new(&["\n\nUser:".to_string(), "END".to_string()]);
        assert_eq!(m.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.push(" world\n"), (" world".to_string(), false));
        assert_eq!(m.push("\nUs"), (String::new(), false));
        assert_eq!(m.push("er: hi"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("the EN"), ("the ".to_string(), false));
        assert_eq!(m.push("Dless"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("E"), (String::new(), false));
        assert_eq!(m.push("x"), ("Ex".to_string(), false));
        assert_eq!(m.push("é E"), ("é ".to_string(), false));
        assert_eq!(m.finish(), "E");
        let mut none = StopMatcher::new(&[String::new()]);
        assert_eq!(none.push("abc"), ("abc".to_string(), false));
    }
}
