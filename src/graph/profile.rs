//! The profiled executor: the same plan, stages and submissions as `Model::forward`, with
//! every dispatch handed to a `Profiler`. Kept apart from `run` so that an unprofiled
//! forward pass never sees a query.

use super::{Model, Stage};
use crate::gpu::{Phase, Profiler, StepProfile};
use crate::kernels::{Dispatch, Step};
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
        if tokens.len() == 1 {
            out.push(self.run_profiled(tokens, false, prof).await?);
        } else {
            let batch = self.batch;
            for chunk in tokens.chunks(batch) {
                out.push(self.run_profiled(chunk, true, prof).await?);
            }
        }
        Ok(out)
    }

    /// Every dispatch of the decode plan (or the prefill plan), in execution order,
    /// including the shared tail.
    pub fn plan_dispatches(&self, prefill: bool) -> Vec<&Dispatch> {
        self.plan_groups(prefill).into_iter().flatten().collect()
    }

    /// The plan's stages as submitted: one group per command buffer.
    fn plan_groups(&self, prefill: bool) -> Vec<Vec<&Dispatch>> {
        let plan = if prefill { &self.prefill } else { &self.decode };
        let mut groups = vec![flat(&plan.embed)];
        groups.extend(plan.layers.iter().map(|l| flat(l)));
        if prefill && !plan.all_logits.is_empty() {
            groups.push(flat(&plan.all_logits));
        }
        groups.push(flat(&self.tail));
        groups
    }

    async fn run_profiled(
        &mut self,
        tokens: &[u32],
        prefill: bool,
        prof: &mut Profiler,
    ) -> Result<StepProfile, ModelError> {
        let n = tokens.len();
        let gpu = self.gpu.clone();
        gpu.queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::new(self.pos as u32, n as u32);
        self.step.write(&gpu, step);
        let phase = if prefill {
            Phase::Prefill
        } else {
            Phase::Decode
        };
        prof.begin_step(phase, step.n_tokens, step.kv_len);
        let groups = self.plan_groups(prefill);
        let last = groups.len() - 1;
        let row = (n as u64 - 1) * self.cfg.hidden as u64 * 4;
        let (x, last_x, bytes) = (&self.acts.x, &self.acts.last, self.cfg.hidden as u64 * 4);
        for (i, g) in groups.iter().enumerate() {
            if i == last {
                let copy = |enc: &mut wgpu::CommandEncoder| {
                    enc.copy_buffer_to_buffer(x, row, last_x, 0, bytes)
                };
                prof.submit(&gpu, g, Some(&copy))?;
            } else {
                prof.submit(&gpu, g, None)?;
            }
        }
        let profile = prof.finish_step(&gpu).await?;
        self.pos += n;
        self.last_n = n;
        self.last_was_prefill = prefill;
        Ok(profile)
    }
}

fn flat(stages: &[Stage]) -> Vec<&Dispatch> {
    stages.iter().flat_map(|s| s.dispatches().iter()).collect()
}
