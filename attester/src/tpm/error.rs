//! Errors of the TPM client.

use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::Error as TssError;

/// A failed TPM operation; each variant names the operation and keeps the
/// tss-esapi error that caused it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The TCTI configuration string could not be parsed.
    #[error("invalid TCTI configuration `{tcti}`")]
    Tcti {
        tcti: String,
        #[source]
        source: TssError,
    },
    /// Connecting to the TPM failed.
    #[error("opening the TPM through TCTI `{tcti}`")]
    Open {
        tcti: String,
        #[source]
        source: TssError,
    },
    /// Reading a TPM property (manufacturer, vendor strings, firmware).
    #[error("reading TPM property {property}")]
    Property {
        property: &'static str,
        #[source]
        source: TssError,
    },
    /// Listing the defined NV indices failed.
    #[error("listing NV indices {first:#010x}..={last:#010x}")]
    ListNv {
        first: u32,
        last: u32,
        #[source]
        source: TssError,
    },
    /// Reading an EK certificate (or chain certificate) NV index failed.
    #[error("reading EK certificate NV index {index:#010x}")]
    ReadEkCert {
        index: u32,
        #[source]
        source: TssError,
    },
    /// The TPM holds no certificate for any supported EK type.
    #[error("no EK certificate at NV 0x01c00002 (RSA 2048), 0x01c0000a (ECC P-256) or 0x01c00016 (ECC P-384)")]
    NoEkCertificate,
    /// Creating the endorsement key failed.
    #[error("creating the {alg:?} endorsement key")]
    CreateEk {
        alg: super::EkAlg,
        #[source]
        source: TssError,
    },
    /// Creating the attestation key failed.
    #[error("creating the {alg:?} attestation key")]
    CreateAk {
        alg: super::AkAlg,
        #[source]
        source: TssError,
    },
    /// Loading a stored attestation key under the EK failed.
    #[error("loading the attestation key under the EK")]
    LoadAk {
        #[source]
        source: TssError,
    },
    /// Starting or running an authorization session failed.
    #[error("starting the {purpose} session")]
    Session {
        purpose: &'static str,
        #[source]
        source: TssError,
    },
    /// TPM2_ActivateCredential failed (wrong AK, wrong EK, or a forged blob).
    #[error("activating the credential")]
    ActivateCredential {
        #[source]
        source: TssError,
    },
    /// TPM2_Quote failed.
    #[error("quoting PCRs")]
    Quote {
        #[source]
        source: TssError,
    },
    /// Creating (re-deriving) the request-signing key failed.
    #[error("creating the request-signing key")]
    CreateRequestKey {
        #[source]
        source: TssError,
    },
    /// TPM2_Certify of the request key by the AK failed.
    #[error("certifying the request key with the AK")]
    Certify {
        #[source]
        source: TssError,
    },
    /// TPM2_Sign with the request key failed.
    #[error("signing with the request key")]
    Sign {
        #[source]
        source: TssError,
    },
    /// TPM2_PCR_Read failed.
    #[error("reading PCRs")]
    PcrRead {
        #[source]
        source: TssError,
    },
    /// PCR values kept changing while quoting.
    #[error("PCR values changed during each of {attempts} quote attempts")]
    PcrsChanging { attempts: usize },
    /// TPM2_PCR_Extend failed.
    #[error("extending PCR {pcr}")]
    PcrExtend {
        pcr: u8,
        #[source]
        source: TssError,
    },
    /// Flushing a transient object failed.
    #[error("flushing the {what}")]
    Flush {
        what: &'static str,
        #[source]
        source: TssError,
    },
    /// Marshalling or unmarshalling a TPM structure failed.
    #[error("marshalling {what}")]
    Marshal {
        what: &'static str,
        #[source]
        source: TssError,
    },
    /// A caller-supplied value does not fit the TPM structure it goes into.
    #[error("{field} is invalid: {reason}")]
    InvalidInput {
        field: &'static str,
        reason: &'static str,
    },
    /// A stored TPM2B structure is malformed.
    #[error("{what} is not a well-formed TPM2B: expected {expected} bytes, found {actual}")]
    Tpm2bLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
}

impl TpmError {
    /// The tss-esapi error underneath, if any.
    pub fn tss_error(&self) -> Option<&TssError> {
        match self {
            TpmError::Tcti { source, .. }
            | TpmError::Open { source, .. }
            | TpmError::Property { source, .. }
            | TpmError::ListNv { source, .. }
            | TpmError::ReadEkCert { source, .. }
            | TpmError::CreateEk { source, .. }
            | TpmError::CreateAk { source, .. }
            | TpmError::LoadAk { source }
            | TpmError::Session { source, .. }
            | TpmError::ActivateCredential { source }
            | TpmError::Quote { source }
            | TpmError::CreateRequestKey { source }
            | TpmError::Certify { source }
            | TpmError::Sign { source }
            | TpmError::PcrRead { source }
            | TpmError::PcrExtend { source, .. }
            | TpmError::Flush { source, .. }
            | TpmError::Marshal { source, .. } => Some(source),
            TpmError::NoEkCertificate
            | TpmError::PcrsChanging { .. }
            | TpmError::InvalidInput { .. }
            | TpmError::Tpm2bLength { .. } => None,
        }
    }

    /// Whether retrying later may succeed: TPM warnings such as 0x902
    /// (out of object memory — another client holds objects), 0x922
    /// (retry), 0x908 (yielded), 0x90a (self-testing), NV rate limits, or
    /// PCRs that kept changing.
    pub fn is_retryable(&self) -> bool {
        if matches!(self, TpmError::PcrsChanging { .. }) {
            return true;
        }
        let Some(TssError::Tss2Error(rc)) = self.tss_error() else {
            return false;
        };
        matches!(
            rc.kind(),
            Some(
                Tss2ResponseCodeKind::ContextGap
                    | Tss2ResponseCodeKind::ObjectMemory
                    | Tss2ResponseCodeKind::SessionMemory
                    | Tss2ResponseCodeKind::Memory
                    | Tss2ResponseCodeKind::SessionHandles
                    | Tss2ResponseCodeKind::ObjectHandles
                    | Tss2ResponseCodeKind::Yielded
                    | Tss2ResponseCodeKind::Canceled
                    | Tss2ResponseCodeKind::Testing
                    | Tss2ResponseCodeKind::NvRate
                    | Tss2ResponseCodeKind::Retry
                    | Tss2ResponseCodeKind::NvUnavailable
            )
        )
    }
}
