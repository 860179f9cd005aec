//! The broker's HTTP client (blocking: the attester is a sequential CLI and
//! the TPM context is not shareable across threads anyway).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use verifier_lib::api::ErrorBody;
use verifier_lib::token::KeySet;

/// A failure talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("broker unreachable at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("broker refused {path}: {code}: {message}")]
    Refused {
        path: String,
        status: u16,
        code: String,
        message: String,
        details: Option<serde_json::Value>,
    },
    #[error("broker answered {path} with an unreadable body: {reason}")]
    BadResponse { path: String, reason: String },
    #[error("reading CA certificate {path}: {source}")]
    CaCert {
        path: String,
        source: std::io::Error,
    },
    #[error("building HTTP client: {0}")]
    Build(reqwest::Error),
    /// The broker URL does not parse or is neither `https://` nor `http://`.
    #[error("broker URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// `http://` to a broker that is not on this machine: tokens, keys and
    /// evidence would cross the network in the clear.
    #[error(
        "broker URL {url:?}: plain http:// is only allowed to a loopback address; use https://"
    )]
    PlainHttpNotLoopback { url: String },
}

/// Refuse `http://` unless the host is a loopback address (`127.0.0.0/8`,
/// `::1`) or `localhost`.
fn check_scheme(base: &str) -> Result<(), ClientError> {
    let url = reqwest::Url::parse(base).map_err(|_| ClientError::BadUrl {
        url: base.to_owned(),
        reason: "not a URL",
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(())
            } else {
                Err(ClientError::PlainHttpNotLoopback {
                    url: base.to_owned(),
                })
            }
        }
        _ => Err(ClientError::BadUrl {
            url: base.to_owned(),
            reason: "scheme must be https:// (or http:// to a loopback address)",
        }),
    }
}

/// A client for one broker.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    base: String,
    http: reqwest::blocking::Client,
    /// Operator bearer token sent with every request, if set.
    operator_token: Option<String>,
}

impl BrokerClient {
    /// `base` is e.g. `https://broker:8443`; `ca_pem` adds a trusted root.
    /// `http://` is refused unless the broker is on a loopback address.
    pub fn new(base: &str, ca_pem: Option<&std::path::Path>) -> Result<Self, ClientError> {
        check_scheme(base)?;
        let mut b = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = ca_pem {
            let pem = std::fs::read(p).map_err(|source| ClientError::CaCert {
                path: p.display().to_string(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(ClientError::Build)?;
            b = b.add_root_certificate(cert);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: b.build().map_err(ClientError::Build)?,
            operator_token: None,
        })
    }

    /// Send `Authorization: Bearer <token>` (an operator token) with every
    /// request: for the broker's operator endpoints.
    pub fn with_operator_token(mut self, token: &str) -> Self {
        self.operator_token = Some(token.to_owned());
        self
    }

    fn authorized(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.operator_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .authorized(self.http.post(&url))
            .json(body)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        Self::decode(path, resp)
    }

    pub fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .authorized(self.http.get(&url))
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        Self::decode(path, resp)
    }

    /// GET `path` as raw bytes (e.g. the signed status list).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| ClientError::BadResponse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(ClientError::BadResponse {
                path: path.into(),
                reason: format!("HTTP {status}"),
            });
        }
        Ok(bytes.to_vec())
    }

    /// The broker's token verification keys (COSE_KeySet).
    pub fn key_set(&self) -> Result<KeySet, ClientError> {
        let url = format!("{}/v1/keys", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| ClientError::BadResponse {
            path: "/v1/keys".into(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(ClientError::BadResponse {
                path: "/v1/keys".into(),
                reason: format!("HTTP {status}"),
            });
        }
        KeySet::from_cose_key_set(&bytes).map_err(|e| ClientError::BadResponse {
            path: "/v1/keys".into(),
            reason: e.to_string(),
        })
    }

    fn decode<Resp: DeserializeOwned>(
        path: &str,
        resp: reqwest::blocking::Response,
    ) -> Result<Resp, ClientError> {
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| ClientError::BadResponse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                path: path.into(),
                reason: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Refused {
                path: path.into(),
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
                details: e.error.details,
            }),
            Err(_) => Err(ClientError::BadResponse {
                path: path.into(),
                reason: format!("HTTP {status}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 8: plain http only to this machine.
    #[test]
    fn finding8_plain_http_only_to_loopback() {
        for ok in [
            "https://broker.example:8443",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80/",
            "http://localhost:8080",
        ] {
            assert!(BrokerClient::new(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "http://broker.example:8080",
            "http://10.0.0.1",
            "http://[2001:db8::1]",
            "http://localhost.evil.example",
        ] {
            assert!(
                matches!(
                    BrokerClient::new(bad, None),
                    Err(ClientError::PlainHttpNotLoopback { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            BrokerClient::new("ftp://broker", None),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            BrokerClient::new("not a url", None),
            Err(ClientError::BadUrl { .. })
        ));
    }
}
