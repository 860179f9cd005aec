//! Fuzz entry points for `token`.
