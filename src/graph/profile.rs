//! Profiled forward passes: the one executor (`Model::run`) with a `Profiler` as its
//! submit strategy, so every dispatch is timed and an unprofiled pass never sees a query.

use super::Model;
use crate::gpu::{Phase, Profiler, StepProfile};
use crate::kernels::Step;
use crate::model::ModelError;

impl Model {
    /// `forward` with every dispatch timed: one `StepProfile` per step (each prefill chunk,
    /// or the one decode step). Awaits the readback at the end of each step, so it never
    /// blocks in a browser.
    pub async fn forward_profiled(
        &mut self,
        tokens: &[u32],
        prof: &mut Profiler,
    ) -> Result<Vec<StepProfile>, ModelError> {
        self.check_tokens(tokens)?;
        let mut out = Vec::new();
        let prefill = tokens.len() > 1;
        let phase = if prefill {
            Phase::Prefill
        } else {
            Phase::Decode
        };
        for chunk in tokens.chunks(self.batch) {
            let step = Step::new(self.pos as u32, chunk.len() as u32);
            prof.begin_step(phase, step.n_tokens, step.kv_len);
            self.run(super::Input::Ids(chunk), prefill, prof)?;
            out.push(prof.finish_step(&self.gpu).await?);
        }
        Ok(out)
    }

    /// `forward_batch` with every dispatch timed: the batched step's `StepProfile`
    /// (a decode step of `rows.len()` tokens).
    pub async fn forward_batch_profiled(
        &mut self,
        rows: &[(usize, u32)],
        prof: &mut Profiler,
    ) -> Result<StepProfile, ModelError> {
        let kv_len = rows
            .iter()
            .map(|r| self.pos_of(r.0) as u32 + 1)
            .max()
            .unwrap_or(0);
        prof.begin_step(Phase::Decode, rows.len() as u32, kv_len);
        self.run_batch(rows, prof)?;
        Ok(prof.finish_step(&self.gpu).await?)
    }
}
