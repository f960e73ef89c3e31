//! Text in and out of the model: the vocabulary from the GGUF, and chat templates that
//! turn a conversation into the prompt text the model was trained on.

pub mod template;

pub use template::{ChatTemplate, Message, RenderOptions, TemplateError, TemplateOrigin};
