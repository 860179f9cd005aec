//! swtpm harness: each test gets its own software TPM.
#![forbid(unsafe_code)]
