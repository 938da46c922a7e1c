#![no_main]
//! Fuzz target: see `lama_tui::fuzzing::frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lama_tui::fuzzing::frame(data));
