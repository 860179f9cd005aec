//! The crate's top-level error: one variant per verification stage, each
//! holding that stage's typed error.

/// Any error `verifier-lib` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("binary structure: {0}")]
    Wire(#[from] crate::wire::WireError),
    #[error("signature: {0}")]
    Signature(#[from] crate::crypto::SignatureError),
}
