#![no_main]
//! Fuzz target: see `lama_tui::fuzzing::codes`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lama_tui::fuzzing::codes(data));
