//! Fuzz entry points for `ima`.
