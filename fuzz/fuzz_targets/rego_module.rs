#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier_lib::fuzzing::rego_module(data));
