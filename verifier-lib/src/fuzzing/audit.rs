//! Fuzz entry points for `audit`.
