//! Printing a verdict.

use serde_json::Value;

/// Print a verdict on stdout. A reader that went away (`... | head`) is
/// not an error: nothing more is written, nothing is said on stderr, and
/// the verdict's exit status stands.
pub(super) fn emit(value: &Value) {
    let text = match serde_json::to_string_pretty(value) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("writ-broker: {e}");
            return;
        }
    };
    crate::cli::stdout::line(&text);
}
