#![no_main]
//! Fuzz target: see `lama_tui::fuzzing::store_value`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lama_tui::fuzzing::store_value(data));
