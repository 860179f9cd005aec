//! `writ-loadgen`: see `writ_loadgen::cli`.

fn main() -> std::process::ExitCode {
    writ_loadgen::cli::main()
}
