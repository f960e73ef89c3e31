//! libFuzzer entry for `hearth::fuzzing::model_names`; the body lives in the library so that
//! `tests/fuzz_corpus.rs` replays the corpus through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::model_names(data));
