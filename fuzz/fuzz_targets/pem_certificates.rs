#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier_lib::fuzzing::pem_certificates(data));
