#![no_main]
//! Fuzz target: see `lama_tui::fuzzing::headless`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lama_tui::fuzzing::headless(data));
