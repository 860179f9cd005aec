//! The attester daemon's socket protocol: one JSON object on one line per
//! connection, answered by one JSON object, then the daemon closes the
//! connection. Byte strings are base64url without padding.
//!
//! ```text
//! → {"op":"token"}                                   (the daemon's prepared key)
//! → {"op":"token","workload":"w","cnf":"<COSE_Key>"} (the caller's own key)
//! → {"op":"launch","workload":"w"}                  + SCM_RIGHTS: the sealed image
//! ← {"token":{"token":"…","cti":"…","workload":"w","expires_at":N,"renew_at":N,
//!             "key_pem":"-----BEGIN PRIVATE KEY-----…","keys":"<COSE_KeySet>",
//!             "status_list":"<status list CWT>"}}
//! ← {"error":{"code":"caller_unknown","message":"…"}}
//! ```

use serde::{Deserialize, Serialize};
use verifier_lib::api::b64;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/writ/attester.sock";
/// Largest request or response line accepted.
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkloadRequest {
    /// A token for the calling workload itself (known to the daemon by uid
    /// and executable digest).
    Token {
        /// The COSE_Key the token is bound to; absent: the daemon's prepared
        /// key for this workload, handed back in [`WorkloadToken::key_pem`].
        #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
        cnf: Option<Vec<u8>>,
        /// Which workload, when the daemon's configuration lists several for
        /// the caller's (uid, executable); absent: the first one listed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workload: Option<String>,
    },
    /// A token for a program a trusted launcher is about to exec; the
    /// request carries the program's sealed memory file (`SCM_RIGHTS`),
    /// which the daemon hashes: the token names that digest.
    Launch {
        workload: String,
        /// The digest the launcher measured, if it did: the daemon refuses
        /// when its own measurement differs.
        #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
        workload_digest: Option<Vec<u8>>,
        /// As in [`WorkloadRequest::Token`].
        #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
        cnf: Option<Vec<u8>>,
    },
}

/// A token handed out by the daemon.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkloadToken {
    #[serde(with = "b64")]
    pub token: Vec<u8>,
    #[serde(with = "b64")]
    pub cti: Vec<u8>,
    pub workload: String,
    pub expires_at: i64,
    /// Ask again after this time (≈ 80 % of the lifetime) for a fresh token.
    pub renew_at: i64,
    /// The private key the token is bound to (PKCS#8 PEM), when the request
    /// named no `cnf` and the daemon used its prepared key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// The broker token keys the daemon trusts (its pinned COSE_KeySet),
    /// which sign `token` and `status_list`.
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<u8>>,
    /// The signed Token Status List (CWT) the token's `status` claim names,
    /// as the daemon last fetched it; the token's entry is VALID in it.
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<Vec<u8>>,
}

impl std::fmt::Debug for WorkloadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadToken")
            .field("cti", &self.cti)
            .field("workload", &self.workload)
            .field("expires_at", &self.expires_at)
            .field("renew_at", &self.renew_at)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("keys", &self.keys.as_ref().map(Vec::len))
            .field("status_list", &self.status_list.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadResponse {
    Token(WorkloadToken),
    Error { code: String, message: String },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The short forms documented above parse; unknown fields are refused.
    #[test]
    fn documented_requests_parse_and_unknown_fields_are_refused() {
        assert_eq!(
            serde_json::from_str::<WorkloadRequest>(r#"{"op":"token"}"#).unwrap(),
            WorkloadRequest::Token {
                cnf: None,
                workload: None
            }
        );
        assert_eq!(
            serde_json::from_str::<WorkloadRequest>(r#"{"op":"token","workload":"w","cnf":"AQI"}"#)
                .unwrap(),
            WorkloadRequest::Token {
                cnf: Some(vec![1, 2]),
                workload: Some("w".into())
            }
        );
        assert!(serde_json::from_str::<WorkloadRequest>(r#"{"op":"token","x":1}"#).is_err());
        let launch = WorkloadRequest::Launch {
            workload: "w".into(),
            workload_digest: Some(vec![7; 32]),
            cnf: None,
        };
        let line = serde_json::to_string(&launch).unwrap();
        assert!(!line.contains("cnf"), "{line}");
        assert_eq!(
            serde_json::from_str::<WorkloadRequest>(&line).unwrap(),
            launch
        );
    }

    #[test]
    fn the_private_key_is_not_in_debug_output() {
        let t = WorkloadToken {
            token: vec![1],
            cti: vec![2],
            workload: "w".into(),
            expires_at: 2,
            renew_at: 1,
            key_pem: Some("-----BEGIN PRIVATE KEY-----secret".into()),
            keys: None,
            status_list: None,
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
