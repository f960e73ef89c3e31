//! libFuzzer entry for `hearth::fuzzing::tool_calls`; the body lives in the library so that
//! `tests/fuzz_corpus.rs` replays the corpus through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::tool_calls(data));
