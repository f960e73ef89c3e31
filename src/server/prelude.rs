//! The start every generation request shares, through either API: admit the model in
//! the scheduler, build the prompt ids off the async threads, fit the options to the
//! context and start the run. What the run's events become is the API's own business.

use super::options::Wanted;
use super::sched::Events;
use super::time::KeepAlive;
use super::{ApiError, App};
use crate::engine::{Engine, Prompt};
use crate::tools::{Style, Tool, ToolChoice, ToolSetup};
use std::time::Duration;

/// A generation request, as far as the prelude needs it.
pub(super) struct RunRequest<'a> {
    /// The canonical model name.
    pub(super) model: &'a str,
    /// How long the model stays loaded afterwards (None: the server's default).
    pub(super) keep: Option<KeepAlive>,
    /// The options asked for, fitted to the context once the prompt is known.
    pub(super) wanted: Wanted,
    /// The tools offered and the choice, when any.
    pub(super) tools: Option<(Vec<Tool>, ToolChoice)>,
}

/// A started run.
pub(super) struct Started {
    /// The run's events; dropping them stops it before its next token.
    pub(super) events: Events,
    /// The prompt's token ids.
    pub(super) prompt: Vec<u32>,
    /// Time the request spent waiting for the model to load.
    pub(super) load_duration: Duration,
    /// The tools in play (offered, not `none`), in the model's format: the answer's calls
    /// are read with it.
    pub(super) tools: Option<ToolSetup>,
    /// The model, for reading an answer's calls.
    pub(super) engine: std::sync::Arc<Engine>,
}

/// Admits `req.model`, builds the prompt ids with `build` (given the tools in the
/// model's format) on a blocking thread, fits the options to them (a 400 when the
/// prompt does not fit the context) and starts the run. Offered tools constrain the
/// output (`ToolSetup::constraint`) unless the request constrains it itself.
pub(super) async fn start(
    app: &App,
    req: RunRequest<'_>,
    build: impl FnOnce(&Engine, Option<&ToolSetup>) -> Result<Vec<u32>, ApiError> + Send + 'static,
) -> Result<Started, ApiError> {
    let ticket = app.sched.admit(req.model, req.keep).await?;
    let engine = ticket.loaded.engine.clone();
    let model = engine.clone();
    let format = req.wanted.format.clone();
    let tools = req.tools;
    let (ids, tools, format) = tokio::task::spawn_blocking(move || {
        let arch = engine.config().arch;
        if !arch.causal() {
            return Err(ApiError::bad_request(format!(
                "{} is an embedding model: it does not generate text; use /api/embed or /v1/embeddings",
                arch.name()
            )));
        }
        let setup = tools.map(|(tools, choice)| ToolSetup {
            tools,
            choice,
            style: Style::of(engine.template()),
        });
        let format = format.or_else(|| setup.as_ref().and_then(ToolSetup::constraint));
        // A grammar that does not compile is the client's error, before any GPU work.
        if let Some(f) = &format {
            engine
                .check_format(f)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        // With tool_choice none the tools are not shown, but earlier calls and results
        // still render (`ToolSetup::prepare`); the answer is then plain text.
        let ids = build(&engine, setup.as_ref())?;
        Ok::<_, ApiError>((ids, setup.filter(ToolSetup::active), format))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let mut wanted = req.wanted;
    wanted.format = format;
    let opts = wanted.fit(ids.len(), ticket.loaded.capacity)?;
    let load_duration = ticket.load_duration;
    let prompt = ids.clone();
    let events = ticket.run(ids, opts, app.metrics.clone()).await?;
    Ok(Started {
        events,
        prompt,
        load_duration,
        tools,
        engine: model,
    })
}

/// The text and calls of a finished answer with tools: from its ids with special
/// tokens spelled out where the format marks calls with them.
pub(super) fn read_calls(
    engine: &Engine,
    setup: &ToolSetup,
    text: &str,
    ids: &[u32],
) -> (String, Vec<crate::tokenizer::ToolCall>) {
    if setup.needs_special_text() {
        setup.parse(&engine.tokenizer().decode(ids, true))
    } else {
        setup.parse(text)
    }
}

/// `prompt`'s token ids through the model's tokenizer (and its chat template for a
/// chat); a prompt it cannot encode is the client's error.
pub(super) fn tokenize(engine: &Engine, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
    tokenize_with(engine, prompt, None)
}

/// `tokenize`, a conversation rendered with the tools in play when there are any.
pub(super) fn tokenize_with(
    engine: &Engine,
    prompt: &Prompt,
    tools: Option<&ToolSetup>,
) -> Result<Vec<u32>, ApiError> {
    let with_tools;
    let prompt = match (prompt, tools) {
        (Prompt::Chat(m), Some(t)) => {
            with_tools = Prompt::ChatTools(m.clone(), t.clone());
            &with_tools
        }
        _ => prompt,
    };
    engine
        .tokenize_prompt(prompt)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}
