//! Writing a command's output. A reader that went away (`... | head`) is
//! not an error: nothing more is written, nothing is said on stderr, and
//! the command's exit status stands.

use std::io::Write as _;

/// Write `text` to stdout as it is.
pub fn write(text: &str) {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("writ-broker: writing the output: {e}"),
    }
}

/// Write `text` and a newline to stdout.
pub fn line(text: &str) {
    write(&format!("{text}\n"));
}
