#![no_main]
//! See `directwal::fuzzing::record_decode`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| directwal::fuzzing::record_decode(data));
