#![no_main]
//! See `directwal::fuzzing::segment_file`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| directwal::fuzzing::segment_file(data));
