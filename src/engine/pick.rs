//! How a step's next token is chosen, and what it chose: shared by a session's own model
//! and the batch worker (`batcher`).

/// How the token after a step is chosen.
#[derive(Clone, Debug)]
pub enum Want {
    /// The largest logit.
    Argmax,
    /// The `k` largest logits (after the penalties, if any), for the CPU's draw.
    TopK {
        /// Candidates.
        k: usize,
        /// Repetition penalties applied first.
        penalties: Option<Penalty>,
    },
}

/// Penalties on a step's logits before top-k.
#[derive(Clone, Debug)]
pub struct Penalty {
    /// Recent distinct ids with their counts.
    pub window: Vec<(u32, u32)>,
    /// Repetition penalty (1: none).
    pub repeat: f32,
    /// Presence penalty (0: none).
    pub presence: f32,
    /// Frequency penalty (0: none).
    pub frequency: f32,
}

/// What a step chose.
#[derive(Clone, Debug)]
pub enum Pick {
    /// The argmax.
    Argmax(u32),
    /// The top-k candidates, largest first.
    TopK(Vec<(u32, f32)>),
}
