//! Profiled forward passes: the one executor (`Model::run`) with a `Profiler` as its
//! submit strategy, so every dispatch is timed and an unprofiled pass never sees a query.

use super::{Model, Submit};
use crate::gpu::{Gpu, GpuError, Phase, Profiler, StepProfile};
use crate::kernels::{Dispatch, Step};
use crate::model::ModelError;

impl Submit for Profiler {
    fn submit(
        &mut self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        before: Option<&dyn Fn(&mut wgpu::CommandEncoder)>,
    ) -> Result<(), GpuError> {
        Profiler::submit(self, gpu, dispatches, before)
    }
}

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
            self.run(chunk, prefill, prof)?;
            out.push(prof.finish_step(&self.gpu).await?);
        }
        Ok(out)
    }
}
