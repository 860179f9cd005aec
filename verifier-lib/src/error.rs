//! The crate's top-level error: one variant per verification stage, each
//! holding that stage's typed error (which names the field that failed).
//! Callers that handle one stage use the stage's own error type; code that
//! drives several stages can use [`Error`] and still match on the stage.

/// Any error `verifier-lib` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("binary structure: {0}")]
    Wire(#[from] crate::wire::WireError),
    #[error("signature: {0}")]
    Signature(#[from] crate::crypto::SignatureError),
    #[error("TPM structure: {0}")]
    Tpm(#[from] crate::tpm::TpmError),
    #[error("TPM quote: {0}")]
    Quote(#[from] crate::tpm::QuoteError),
    #[error("TPM request key: {0}")]
    Certify(#[from] crate::tpm::CertifyError),
    #[error("EK certificate: {0}")]
    EkCert(#[from] crate::ekcert::EkCertError),
    #[error("credential activation: {0}")]
    Credential(#[from] crate::credential::CredentialError),
    #[error("execution token: {0}")]
    Token(#[from] crate::token::TokenError),
    #[error("event log: {0}")]
    EventLog(#[from] crate::eventlog::EventLogError),
    #[error("IMA: {0}")]
    Ima(#[from] crate::ima::ImaError),
    #[error("SEV-SNP: {0}")]
    Snp(#[from] crate::snp::SnpError),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("audit log: {0}")]
    AuditLog(#[from] crate::audit::LogError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}
