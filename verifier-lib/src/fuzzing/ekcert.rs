//! Fuzz entry points for `ekcert`.
