#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier_lib::fuzzing::api_bodies(data));
