//! STUB
#![allow(missing_docs, dead_code, unused_variables)]
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}
#[derive(Clone, Debug, PartialEq)]
pub enum TemplateOrigin {
    Gguf,
    Builtin(&'static str),
    File(String),
}
#[derive(Debug, thiserror::Error)]
#[error("t")]
pub struct TemplateError;
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    pub bos_token: String,
    pub eos_token: String,
    pub date: Option<String>,
}
pub struct ChatTemplate;
impl ChatTemplate {
    pub fn new(source: &str, origin: TemplateOrigin) -> Result<Self, TemplateError> {
        todo!()
    }
    pub fn for_model(h: &crate::gguf::GgufHeader) -> Result<Option<Self>, TemplateError> {
        todo!()
    }
    pub fn builtin(arch: &str) -> Option<Self> {
        todo!()
    }
    pub fn render(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        todo!()
    }
    pub fn origin(&self) -> &TemplateOrigin {
        todo!()
    }
    pub fn describe(&self) -> String {
        todo!()
    }
    pub fn source(&self) -> &str {
        todo!()
    }
}
