#![no_main]
//! See `directwal::fuzzing::encrypted_segment`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| directwal::fuzzing::encrypted_segment(data));
