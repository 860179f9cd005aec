//! Fuzz entry points for `snp`.
