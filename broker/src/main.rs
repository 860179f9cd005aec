//! `writ-broker`: the attestation broker service and its offline tools
//! (see `writ_broker::cli`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    writ_broker::cli::main()
}
