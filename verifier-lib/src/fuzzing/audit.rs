//! Fuzz entry points for `audit`.

use crate::audit::{open_checkpoint, Leaf};

/// Verifier key the checkpoint target opens notes with (the published
/// golang.org/x/mod/sumdb/note test key).
const FUZZ_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

/// `Leaf::decode` on arbitrary bytes (it re-encodes and compares, so the
/// canonical-encoding check runs on every well-formed input).
pub fn audit_leaf(data: &[u8]) {
    let _ = Leaf::decode(data);
}

/// `open_checkpoint` on arbitrary text (lossy UTF-8).
pub fn audit_checkpoint(data: &[u8]) {
    let note = String::from_utf8_lossy(data);
    let _ = open_checkpoint(&note, FUZZ_VKEY);
}
