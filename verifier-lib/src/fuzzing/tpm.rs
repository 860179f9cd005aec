//! Fuzz entry points for `tpm`.
