//! How a step's next token is chosen, and what it chose: shared by a session's own model
//! and the batch worker (`batcher`).

use crate::constraint::Mask;
use crate::graph::SAMPLE_K;
use std::sync::Arc;

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
        /// The tokens a constraint allows: only they are returned. When none of the `k`
        /// largest is allowed, the whole (penalized) row is read and its largest
        /// allowed logits are returned instead.
        allowed: Option<Arc<Mask>>,
    },
}

/// `top` restricted to what `allowed` allows; `Err(mask)` when that leaves nothing and
/// the whole row must be read (`top_allowed`).
pub fn allowed_of(
    mut top: Vec<(u32, f32)>,
    allowed: Option<&Mask>,
) -> Result<Vec<(u32, f32)>, &Mask> {
    let Some(m) = allowed else {
        return Ok(top);
    };
    top.retain(|&(id, _)| m.allows(id));
    if top.is_empty() {
        Err(m)
    } else {
        Ok(top)
    }
}

/// The `SAMPLE_K` largest logits of a whole row that `m` allows, largest first.
pub fn top_allowed(logits: &[f32], m: &Mask) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|&(id, l)| m.allows(id as u32) && !l.is_nan())
        .map(|(id, &l)| (id as u32, l))
        .collect();
    let k = SAMPLE_K.min(c.len());
    if k < c.len() {
        c.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
        c.truncate(k);
    }
    c.sort_by(|a, b| b.1.total_cmp(&a.1));
    c
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_candidates_keep_their_order_and_none_allowed_reads_the_row() {
        let m = Mask::from_ids(&[2, 7, 40]);
        let top = vec![(5, 3.0), (7, 2.0), (2, 1.0)];
        assert_eq!(allowed_of(top.clone(), None).unwrap(), top);
        assert_eq!(allowed_of(top, Some(&m)).unwrap(), vec![(7, 2.0), (2, 1.0)]);
        let top = vec![(5, 3.0), (6, 2.0)];
        let m = allowed_of(top, Some(&m)).unwrap_err();
        // The whole row: only allowed ids, largest first, NaN never chosen.
        let mut logits = vec![0.5f32; 64];
        logits[40] = 9.0;
        logits[2] = f32::NAN;
        logits[7] = -1.0;
        assert_eq!(top_allowed(&logits, m), vec![(40, 9.0), (7, -1.0)]);
    }

    #[test]
    fn the_whole_row_gives_at_most_sample_k_candidates() {
        let ids: Vec<u32> = (0..1000).collect();
        let m = Mask::from_ids(&ids);
        let logits: Vec<f32> = (0..1000).map(|i| (i % 97) as f32).collect();
        let c = top_allowed(&logits, &m);
        assert_eq!(c.len(), SAMPLE_K);
        assert!(c.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(c[0].1, 96.0);
    }
}
