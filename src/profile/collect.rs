//! Profiling a loaded model end to end, async so the browser can await it: a warm-up,
//! the bandwidth probe, a profiled prefill and profiled greedy decode steps.

use super::Run;
use crate::gpu::{measure_peak, Profiler};
use crate::graph::Model;
use crate::model::ModelError;

/// What to profile.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    /// Prompt ids (the prefill phase, in the model's chunks; empty skips it).
    pub prompt: Vec<u32>,
    /// Greedy decode steps after the prompt.
    pub n_gen: usize,
    /// Measure the adapter's peak bandwidth first.
    pub peak: bool,
    /// Sequences per decode step: above 1, each decode step is a batched step advancing
    /// every slot of a model loaded for that many sequences (slot 0 after the prompt, the
    /// others from an empty cache).
    pub parallel: usize,
}

/// Profiles `model` from an empty cache: one unprofiled warm-up of the same work (the
/// prompt and two decode steps), the peak probe when asked, then the prompt and `n_gen`
/// greedy decode steps with every dispatch timed. The model is left after the last step;
/// its capacity must hold the prompt plus `max(n_gen, 2)` tokens.
pub async fn profile_model(model: &mut Model, opts: &ProfileOptions) -> Result<Run, ModelError> {
    let gpu = model.gpu.clone();
    let first = opts.prompt.first().copied().unwrap_or(1);
    model.reset();
    if opts.prompt.len() > 1 {
        model.forward(&opts.prompt)?;
    }
    for _ in 0..2 {
        model.forward(&[first])?;
        model.argmax().await?;
    }
    model.reset();
    let mut prof = Profiler::new(&gpu)?;
    let peak = if opts.peak {
        Some(measure_peak(&gpu).await?)
    } else {
        None
    };
    let mut steps = Vec::new();
    let mut id = first;
    if !opts.prompt.is_empty() {
        steps.extend(model.forward_profiled(&opts.prompt, &mut prof).await?);
        id = model.argmax().await?;
    }
    let par = opts.parallel.clamp(1, model.sequences());
    if par > 1 {
        for slot in 1..par {
            model.set_slot(slot)?;
            model.reset();
        }
        model.set_slot(0)?;
        let mut ids = vec![id; par];
        for _ in 0..opts.n_gen {
            let rows: Vec<(usize, u32)> = ids.iter().copied().enumerate().collect();
            steps.push(model.forward_batch_profiled(&rows, &mut prof).await?);
            ids = model.argmax_batch().await?;
        }
    } else {
        for _ in 0..opts.n_gen {
            steps.extend(model.forward_profiled(&[id], &mut prof).await?);
            id = model.argmax().await?;
        }
    }
    Ok(Run {
        backend: format!("{:?}", gpu.info.backend),
        adapter: gpu.info.name.clone(),
        timing: prof.timing(),
        peak,
        steps,
    })
}
