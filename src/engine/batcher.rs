//! Continuous batching: one worker thread owns a model loaded for N sequences and runs
//! the steps of every session that shares it. Each session holds one sequence slot (its
//! position and page table; its KV pages come from the model's pool as it grows, from
//! the prefix cache where its prompt starts like an earlier one, and go back when its
//! generation ends) and sends its work as jobs: a prompt chunk, or the
//! next token with how to choose the one after. Each round the worker waits briefly
//! until every session that is decoding has sent its next token (or left), runs all of
//! them as one batched step (the weights read once for everyone) together with short
//! prompts (or a long prompt's last chunk) in the rows to spare, answers each with its
//! token or candidates, then runs at most one longer prompt chunk through the prefill
//! plan: a long prompt delays the others' tokens by one chunk per round, never by the
//! whole prompt. A prompt takes the KV pages of its whole length with its first chunk,
//! and waits in the queue while other sequences hold them.

use super::pick::{allowed_of, top_allowed, Pick, Want};
use super::EngineError;
use crate::gpu::GpuError;
use crate::graph::Model;
use crate::model::{ModelConfig, ModelError};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

type Reply = mpsc::Sender<Result<Option<Pick>, EngineError>>;

/// A session's work: feed `ids` to the sequence in `slot` from position `keep` (the
/// tokens past it are forgotten first), then choose per `want`.
struct Job {
    slot: usize,
    keep: usize,
    ids: Vec<u32>,
    /// Positions whose KV pages the sequence takes before this job runs (its prompt's
    /// end), so that the prompt's later chunks never wait for pages.
    reserve: usize,
    want: Option<Want>,
    reply: Reply,
}

impl Job {
    /// Whether the KV pool has the pages this job's tokens need now.
    fn has_pages(&self, model: &Model) -> bool {
        model.kv_room(self.slot, self.end()).is_ok()
    }

    /// Positions the sequence needs pages for when this job runs.
    fn end(&self) -> usize {
        (self.keep + self.ids.len()).max(self.reserve)
    }

    /// One token with a choice after it: a decode step, batched with the others.
    fn is_decode(&self) -> bool {
        self.ids.len() == 1 && self.want.is_some()
    }

    /// A job that may run as rows of a batched step: a choice after it, and few enough
    /// tokens for the step's spare rows (a short prompt, or a long one's last chunk).
    fn fits(&self, spare: usize) -> bool {
        self.want.is_some() && !self.ids.is_empty() && self.ids.len() <= spare
    }
}

enum Msg {
    Job(Job),
    /// The session in this slot stopped generating (finished, or its client left).
    Idle(usize),
    /// The session in `slot` ended its generation: publish its pages of `tokens` (the
    /// last in part) to the prefix cache and release its KV pages.
    Release {
        slot: usize,
        tokens: Vec<u32>,
    },
    /// The empty sequence in `slot` adopts the cached pages of the longest prefix of
    /// `tokens` (whole pages shared, a last page matched in part copied); the reply is
    /// the positions adopted.
    Adopt {
        slot: usize,
        tokens: Vec<u32>,
        reply: mpsc::Sender<Result<usize, EngineError>>,
    },
}

/// What a batch worker has run, for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchCounters {
    /// Batched steps.
    pub steps: AtomicU64,
    /// Rows (tokens) over all batched steps: over `steps`, the mean batch size.
    pub rows: AtomicU64,
    /// KV pages in the pool.
    pub pages_total: AtomicU64,
    /// KV pages held by sequences.
    pub pages_held: AtomicU64,
    /// KV pages no sequence holds, kept for their cached prefix.
    pub pages_cached: AtomicU64,
    /// Prompt positions taken from the prefix cache instead of computed.
    pub prefix_hits: AtomicU64,
    /// Rounds in which a prompt waited for KV pages (other requests held them).
    pub page_waits: AtomicU64,
}

impl BatchCounters {
    /// Copies the model's page counts.
    fn pages(&self, model: &Model) {
        let s = model.kv_pages();
        self.pages_total.store(s.total as u64, Ordering::Relaxed);
        self.pages_held.store(s.held as u64, Ordering::Relaxed);
        self.pages_cached.store(s.cached as u64, Ordering::Relaxed);
    }
}

/// How long the worker waits after a round for the decoding sessions' next tokens
/// before it runs the step without the missing ones.
const GATHER: Duration = Duration::from_millis(20);

/// Starts the worker over `model` (loaded for several sequences); the returned sender
/// is cloned into each slot's session, and the worker ends when the last is dropped.
fn spawn(model: Model, counters: Arc<BatchCounters>) -> Result<mpsc::Sender<Msg>, EngineError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("hearth-batcher".into())
        .spawn(move || worker(model, rx, &counters))
        .map_err(|e| GpuError::Runtime(format!("starting the batch worker: {e}")))?;
    Ok(tx)
}

/// One session per slot of `model`, all stepping through one worker.
pub(super) fn slots(model: Model) -> Result<Vec<SlotModel>, EngineError> {
    let (n, capacity, batch) = (model.sequences(), model.capacity(), model.batch());
    let cfg = model.cfg.clone();
    let counters = Arc::new(BatchCounters::default());
    let tx = spawn(model, counters.clone())?;
    Ok((0..n)
        .map(|slot| SlotModel {
            counters: counters.clone(),
            tx: tx.clone(),
            slot,
            pos: 0,
            capacity,
            batch,
            cfg: cfg.clone(),
            deferred: None,
            prompt_end: 0,
        })
        .collect())
}

fn worker(mut model: Model, rx: mpsc::Receiver<Msg>, counters: &BatchCounters) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    // Slots that were answered a token and will likely send the next.
    let mut decoding: HashSet<usize> = HashSet::new();
    let mut open = true;
    // Jobs wait for the next round; page work runs at once (the session sending it has
    // no job in the queue: it waits for each job's answer).
    let take = |m: Msg,
                model: &mut Model,
                queue: &mut VecDeque<Job>,
                decoding: &mut HashSet<usize>| match m {
        Msg::Job(j) => {
            decoding.remove(&j.slot);
            queue.push_back(j);
        }
        Msg::Idle(slot) => {
            decoding.remove(&slot);
        }
        Msg::Release { slot, tokens } => {
            decoding.remove(&slot);
            if model.set_slot(slot).is_ok() {
                model.publish_prefix(&tokens);
                model.reset();
            }
            counters.pages(model);
        }
        Msg::Adopt {
            slot,
            tokens,
            reply,
        } => {
            let adopted = model.set_slot(slot).map(|_| {
                model.reset();
                model.share_prefix(&tokens)
            });
            if let Ok(n) = adopted {
                counters.prefix_hits.fetch_add(n as u64, Ordering::Relaxed);
            }
            counters.pages(model);
            let _ = reply.send(adopted.map_err(Into::into));
        }
    };
    counters.pages(&model);
    let mut stats = Stats::default();
    while open || !queue.is_empty() {
        let idle_from = Instant::now();
        if queue.is_empty() {
            match rx.recv() {
                Ok(m) => take(m, &mut model, &mut queue, &mut decoding),
                Err(_) => break,
            }
        }
        let gather_from = Instant::now();
        stats.idle += gather_from - idle_from;
        let deadline = gather_from + GATHER;
        while open && decoding.iter().any(|s| !queue.iter().any(|j| j.slot == *s)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(m) => take(m, &mut model, &mut queue, &mut decoding),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut model, &mut queue, &mut decoding);
        }
        let step_from = Instant::now();
        stats.gather += step_from - gather_from;
        // Every decode token, then short prompts in arrival order while rows are spare
        // and the KV pool has their pages (prompts wait for pages; decodes never do).
        let (step, rest): (Vec<Job>, Vec<Job>) = queue.drain(..).partition(Job::is_decode);
        // A decode the pool has no page for fails alone (its session ends and gives its
        // pages back), not the whole step.
        let (mut step, starved): (Vec<Job>, Vec<Job>) =
            step.into_iter().partition(|j| j.has_pages(&model));
        for job in starved {
            refuse(&model, job);
        }
        let mut spare = model.step_rows().saturating_sub(step.len());
        let mut rest = VecDeque::from(rest);
        for job in std::mem::take(&mut rest) {
            let free = !step.iter().any(|j| j.slot == job.slot);
            if job.fits(spare) && free && job.has_pages(&model) {
                spare -= job.ids.len();
                step.push(job);
            } else {
                rest.push_back(job);
            }
        }
        let step_empty = step.is_empty();
        if !step_empty {
            let rows = step.iter().map(|j| j.ids.len()).sum::<usize>();
            stats.steps += 1;
            stats.rows += rows;
            counters.steps.fetch_add(1, Ordering::Relaxed);
            counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
            for slot in run_rows(&mut model, step) {
                decoding.insert(slot);
            }
        }
        let one_from = Instant::now();
        stats.decode += one_from - step_from;
        let ran = !step_empty;
        if rest.iter().any(|j| !j.has_pages(&model)) {
            counters.page_waits.fetch_add(1, Ordering::Relaxed);
        }
        match rest.iter().position(|j| j.has_pages(&model)) {
            Some(i) => {
                let job = rest.remove(i).expect("a position in rest");
                let (slot, wants) = (job.slot, job.want.is_some());
                stats.others += 1;
                if run_one(&mut model, job) && wants {
                    decoding.insert(slot);
                }
            }
            // Nothing ran, no session is between tokens, and every waiting job lacks
            // pages: only the holders' ending frees any, and the holders are these
            // jobs, so the first is refused (its session ends and gives its pages back).
            None if !ran && decoding.is_empty() => {
                if let Some(job) = rest.pop_front() {
                    refuse(&model, job);
                }
            }
            None => {}
        }
        stats.other += one_from.elapsed();
        counters.pages(&model);
        queue = rest;
        stats.report();
    }
}

/// Where the worker's time goes, logged at debug level every so many rounds.
#[derive(Default)]
struct Stats {
    rounds: usize,
    steps: usize,
    rows: usize,
    others: usize,
    idle: Duration,
    gather: Duration,
    decode: Duration,
    other: Duration,
}

impl Stats {
    fn report(&mut self) {
        self.rounds += 1;
        if self.rounds < 50 {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        log::debug!(
            "batcher: {} rounds, {} batched steps of {:.1} rows on average ({:.0} ms), {} other jobs ({:.0} ms), {:.0} ms gathering, {:.0} ms idle",
            self.rounds,
            self.steps,
            self.rows as f64 / self.steps.max(1) as f64,
            ms(self.decode),
            self.others,
            ms(self.other),
            ms(self.gather),
            ms(self.idle)
        );
        *self = Self::default();
    }
}

/// Answers `job` with the KV pool's "full" error.
fn refuse(model: &Model, job: Job) {
    let why = model.kv_room(job.slot, job.end()).err();
    let why = why.unwrap_or_else(|| ModelError::KvFull("the KV cache is full".into()));
    let _ = job.reply.send(Err(why.into()));
}

/// Positions the model on the job's slot at `keep`, with the KV pages the job needs.
fn seat(model: &mut Model, job: &Job) -> Result<(), EngineError> {
    model.set_slot(job.slot)?;
    model.truncate(job.keep);
    model.kv_reserve(job.slot, job.end())?;
    if model.pos() != job.keep {
        return Err(ModelError::Input(format!(
            "sequence slot {} holds {} tokens, not the {} its session expects",
            job.slot,
            model.pos(),
            job.keep
        ))
        .into());
    }
    Ok(())
}

/// The jobs' tokens as one batched step (a job's tokens in consecutive rows); answers
/// each with the choice after its last row; returns the slots answered.
fn run_rows(model: &mut Model, jobs: Vec<Job>) -> Vec<usize> {
    let mut step = || -> Result<Vec<u32>, EngineError> {
        for j in &jobs {
            seat(model, j)?;
        }
        let rows: Vec<(usize, u32)> = jobs
            .iter()
            .flat_map(|j| j.ids.iter().map(|&id| (j.slot, id)))
            .collect();
        model.forward_batch(&rows)?;
        Ok(pollster::block_on(model.argmax_batch())?)
    };
    let argmax = match step() {
        Ok(a) => a,
        Err(e) => {
            let why = e.to_string();
            for j in jobs {
                let _ = j.reply.send(Err(GpuError::Runtime(why.clone()).into()));
            }
            return Vec::new();
        }
    };
    // The choice follows each job's last token: the step's output of the job's slot,
    // the job's own index (its rows are consecutive, the slots distinct). The outputs
    // that sample get their penalties, then all their top-k in one submission and one
    // read back.
    let last: Vec<usize> = (0..jobs.len()).collect();
    let sampled: Vec<(usize, usize)> = jobs
        .iter()
        .zip(&last)
        .filter_map(|(j, &row)| match &j.want {
            Some(Want::TopK { k, .. }) => Some((row, *k)),
            _ => None,
        })
        .collect();
    let mut tops = match top_k_rows(model, &jobs, &last, &sampled) {
        Ok(t) => t.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => {
            let why = e.to_string();
            sampled
                .iter()
                .map(|_| Err(GpuError::Runtime(why.clone()).into()))
                .collect()
        }
    }
    .into_iter();
    let mut answered = Vec::new();
    for (j, &row) in jobs.into_iter().zip(&last) {
        let pick = match &j.want {
            Some(Want::TopK { allowed, .. }) => tops
                .next()
                .unwrap_or_else(|| Err(GpuError::Runtime("no candidates".into()).into()))
                .and_then(|top| match allowed_of(top, allowed.as_deref()) {
                    Ok(c) => Ok(c),
                    Err(mask) => Ok(top_allowed(
                        &pollster::block_on(model.row_logits(row))?,
                        mask,
                    )),
                })
                .map(Pick::TopK),
            _ => Ok(Pick::Argmax(argmax[row])),
        };
        if j.reply.send(pick.map(Some)).is_ok() {
            answered.push(j.slot);
        }
    }
    answered
}

/// Penalties on each sampled row (`sampled`: (row, k) in job order), then every sampled
/// row's top-k candidates from one submission.
fn top_k_rows(
    model: &Model,
    jobs: &[Job],
    last: &[usize],
    sampled: &[(usize, usize)],
) -> Result<Vec<Vec<(u32, f32)>>, EngineError> {
    if sampled.is_empty() {
        return Ok(Vec::new());
    }
    for (j, &row) in jobs.iter().zip(last) {
        if let Some(Want::TopK {
            penalties: Some(p), ..
        }) = &j.want
        {
            model.apply_penalties_row(row, &p.window, p.repeat, p.presence, p.frequency)?;
        }
    }
    Ok(pollster::block_on(model.sample_top_k_rows(sampled))?)
}

/// A prompt chunk (or any other job) on its own; answers it. Whether it succeeded.
fn run_one(model: &mut Model, job: Job) -> bool {
    let result = (|| -> Result<Option<Pick>, EngineError> {
        seat(model, &job)?;
        model
            .forward(&job.ids)
            .inspect_err(|_| model.truncate(job.keep))?;
        let Some(want) = &job.want else {
            return Ok(None);
        };
        Ok(Some(match want {
            Want::Argmax => Pick::Argmax(pollster::block_on(model.argmax())?),
            Want::TopK {
                k,
                penalties,
                allowed,
            } => {
                if let Some(p) = penalties {
                    model.apply_penalties(&p.window, p.repeat, p.presence, p.frequency)?;
                }
                let top = pollster::block_on(model.sample_top_k(*k))?;
                Pick::TopK(match allowed_of(top, allowed.as_deref()) {
                    Ok(c) => c,
                    Err(mask) => top_allowed(&pollster::block_on(model.logits())?, mask),
                })
            }
        }))
    })();
    let ok = result.is_ok();
    job.reply.send(result).is_ok() && ok
}

impl Drop for SlotModel {
    fn drop(&mut self) {
        self.idle();
    }
}

/// A session's sequence in a batched model: its slot, and the position the worker
/// holds for it. The last fed ids are kept until the choice after them is asked for, so
/// both travel as one job.
pub struct SlotModel {
    counters: Arc<BatchCounters>,
    tx: mpsc::Sender<Msg>,
    slot: usize,
    /// Tokens the worker has fed for this slot.
    pos: usize,
    capacity: usize,
    batch: usize,
    cfg: ModelConfig,
    deferred: Option<Vec<u32>>,
    /// The prompt's end: its jobs take the KV pages of the whole prompt.
    prompt_end: usize,
}

impl SlotModel {
    /// Tokens fed so far (sent or not).
    pub fn pos(&self) -> usize {
        self.pos + self.deferred.as_ref().map_or(0, Vec::len)
    }

    /// KV capacity of the slot.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Prompt tokens per prefill chunk.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Hyperparameters.
    pub fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Keeps the first `pos` tokens (applied with the next job).
    pub fn truncate(&mut self, pos: usize) {
        if pos >= self.pos() {
            return;
        }
        self.deferred = None;
        self.pos = self.pos.min(pos);
    }

    /// Feeds `ids` after what was fed: the ids before them go to the worker now (a
    /// prompt's earlier chunk), these with the next `pick`.
    pub fn forward(&mut self, ids: &[u32]) -> Result<(), EngineError> {
        if let Some(d) = self.deferred.take() {
            self.send(d, None)?;
        }
        self.deferred = Some(ids.to_vec());
        Ok(())
    }

    /// Runs the fed ids and chooses the next token per `want`.
    pub fn pick(&mut self, want: Want) -> Result<Pick, EngineError> {
        let ids = self
            .deferred
            .take()
            .ok_or_else(|| ModelError::Input("no token was fed to choose after".into()))?;
        self.send(ids, Some(want))?
            .ok_or_else(|| GpuError::Runtime("the batch worker chose nothing".into()).into())
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Arc<BatchCounters> {
        &self.counters
    }

    /// Tells the worker this slot stopped generating, so a round does not wait for it.
    pub fn idle(&self) {
        let _ = self.tx.send(Msg::Idle(self.slot));
    }

    /// Ends the slot's sequence: its pages of `tokens` (what it was fed; the last page
    /// in part) go to the prefix cache and its KV pages back to the pool.
    pub fn release(&mut self, tokens: Vec<u32>) {
        self.deferred = None;
        self.pos = 0;
        self.prompt_end = 0;
        let _ = self.tx.send(Msg::Release {
            slot: self.slot,
            tokens,
        });
    }

    /// The prompt being fed ends at position `end`: its first job waits until the KV
    /// pool can give it pages for all of it, and takes them.
    pub fn expect(&mut self, end: usize) {
        self.prompt_end = end.min(self.capacity);
    }

    /// Starts the empty sequence with the cached pages of the longest prefix of `tokens`
    /// (at most all but the last token; whole pages shared, a last page matched in part
    /// copied); returns the positions adopted.
    pub fn share_prefix(&mut self, tokens: &[u32]) -> Result<usize, EngineError> {
        if self.pos() != 0 {
            return Ok(0);
        }
        let gone = || GpuError::Runtime("the batch worker stopped".into());
        let (reply, answer) = mpsc::channel();
        let msg = Msg::Adopt {
            slot: self.slot,
            tokens: tokens.to_vec(),
            reply,
        };
        self.tx.send(msg).map_err(|_| gone())?;
        let n = answer.recv().map_err(|_| gone())??;
        self.pos = n;
        Ok(n)
    }

    fn send(&mut self, ids: Vec<u32>, want: Option<Want>) -> Result<Option<Pick>, EngineError> {
        let gone = || GpuError::Runtime("the batch worker stopped".into());
        let (reply, answer) = mpsc::channel();
        let n = ids.len();
        let job = Job {
            slot: self.slot,
            keep: self.pos,
            ids,
            reserve: self.prompt_end,
            want,
            reply,
        };
        self.tx.send(Msg::Job(job)).map_err(|_| gone())?;
        let pick = answer.recv().map_err(|_| gone())??;
        self.pos += n;
        Ok(pick)
    }
}
