#![no_main]
//! See `directwal::fuzzing::operations`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| directwal::fuzzing::operations(data));
