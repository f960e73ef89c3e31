//! A generation's events as the API layers need them: text pieces, then one end (the
//! statistics and every generated id) or one error.

use super::sched::Events;
use super::ApiError;
use crate::engine::{Event, Stats};
use futures::Stream;

/// One item for a client.
pub enum Out {
    /// Newly released text (never empty).
    Text(String),
    /// The end: the text still held, the statistics and the generated ids.
    Done(String, Stats, Vec<u32>),
    /// Generation failed after it started.
    Error(String),
}

const CUT_SHORT: &str = "generation ended unexpectedly";

/// The items of `rx`, ending after `Done` or `Error`.
pub fn outs(rx: Events) -> impl Stream<Item = Out> + Send + 'static {
    futures::stream::unfold(Some((rx, Vec::new())), |state| async move {
        let (mut rx, mut ids) = state?;
        loop {
            match rx.recv().await {
                Some(Ok(Event::Token { id, text, .. })) => {
                    ids.push(id);
                    if !text.is_empty() {
                        return Some((Out::Text(text), Some((rx, ids))));
                    }
                }
                Some(Ok(Event::Done { text, stats })) => {
                    return Some((Out::Done(text, stats, ids), None));
                }
                Some(Err(e)) => return Some((Out::Error(e), None)),
                None => return Some((Out::Error(CUT_SHORT.into()), None)),
            }
        }
    })
}

/// The whole text, the statistics and the generated ids of `rx`.
pub async fn collect(mut rx: Events) -> Result<(String, Stats, Vec<u32>), ApiError> {
    let (mut text, mut ids) = (String::new(), Vec::new());
    loop {
        match rx.recv().await {
            Some(Ok(Event::Token { id, text: t, .. })) => {
                ids.push(id);
                text += &t;
            }
            Some(Ok(Event::Done { text: t, stats })) => {
                text += &t;
                return Ok((text, stats, ids));
            }
            Some(Err(e)) => return Err(ApiError::internal(e)),
            None => return Err(ApiError::internal(CUT_SHORT)),
        }
    }
}
