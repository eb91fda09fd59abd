#![no_main]
//! See `mta_stsd::fuzzing::drift_text` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mta_stsd::fuzzing::drift_text(data));
