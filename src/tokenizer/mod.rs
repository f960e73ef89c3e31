//! STUB (engine branch only; replaced by the tokenizer branch at merge).
#![allow(missing_docs, dead_code, unused_variables)]
pub mod template;
pub use template::{ChatTemplate, Message, RenderOptions, TemplateError, TemplateOrigin};
pub struct Tokenizer;
#[derive(Debug, thiserror::Error)]
#[error("tok")]
pub struct TokenizerError;
impl Tokenizer {
    pub fn from_gguf(h: &crate::gguf::GgufHeader) -> Result<Self, TokenizerError> {
        todo!()
    }
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        todo!()
    }
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        todo!()
    }
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        todo!()
    }
    pub fn token_text(&self, id: u32) -> Option<&str> {
        todo!()
    }
    pub fn token_id(&self, text: &str) -> Option<u32> {
        todo!()
    }
    pub fn vocab_size(&self) -> usize {
        todo!()
    }
    pub fn bos(&self) -> Option<u32> {
        todo!()
    }
    pub fn eos(&self) -> Option<u32> {
        todo!()
    }
    pub fn add_bos(&self) -> bool {
        todo!()
    }
    pub fn add_eos(&self) -> bool {
        todo!()
    }
    pub fn is_eog(&self, id: u32) -> bool {
        todo!()
    }
    pub fn eog_ids(&self) -> Vec<u32> {
        todo!()
    }
    pub fn is_control(&self, id: u32) -> bool {
        todo!()
    }
    pub fn describe(&self) -> String {
        todo!()
    }
}
#[derive(Default)]
pub struct StreamDecoder;
impl StreamDecoder {
    pub fn new() -> Self {
        Self
    }
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        todo!()
    }
    pub fn finish(&mut self) -> String {
        todo!()
    }
}
