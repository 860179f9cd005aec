//! Fuzz entry points for `eventlog`.
