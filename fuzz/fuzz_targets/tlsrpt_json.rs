#![no_main]
//! See `mta_stsd::fuzzing::tlsrpt_json` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mta_stsd::fuzzing::tlsrpt_json(data));
