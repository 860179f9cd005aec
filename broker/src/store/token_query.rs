//! Listing tokens for operators (`GET /v1/tokens`, `writ-broker tokens
//! list`, the dashboard): filters, a keyset cursor and the bounds. Pages go
//! newest first by `(iat, cti)`; a cursor names the last token of a page,
//! so a page is one indexed range read however deep it is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::TokenState;

/// Tokens one page carries when no `limit` is given.
pub const DEFAULT_TOKEN_PAGE: u32 = 50;
/// Most tokens one page carries (a larger `limit` is lowered to this).
pub const MAX_TOKEN_PAGE: u32 = 500;
/// Most children listed with one token.
pub const MAX_TOKEN_CHILDREN: u32 = 100;

/// Where a token stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLifecycle {
    /// Not revoked and not expired.
    Active,
    /// Revoked (whether or not it has expired since).
    Revoked,
    /// Not revoked, past its `exp`.
    Expired,
}

impl TokenLifecycle {
    pub const ALL: [TokenLifecycle; 3] = [
        TokenLifecycle::Active,
        TokenLifecycle::Revoked,
        TokenLifecycle::Expired,
    ];

    /// `t`'s state at `now`.
    pub fn of(t: &TokenState, now: i64) -> TokenLifecycle {
        if t.revoked {
            TokenLifecycle::Revoked
        } else if t.record.exp <= now {
            TokenLifecycle::Expired
        } else {
            TokenLifecycle::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenLifecycle::Active => "active",
            TokenLifecycle::Revoked => "revoked",
            TokenLifecycle::Expired => "expired",
        }
    }

    pub fn from_name(s: &str) -> Option<TokenLifecycle> {
        TokenLifecycle::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// The position after which a page continues: the last listed token's
/// `(iat, cti)`. Opaque to clients (base64url of `iat` as 8 big-endian
/// bytes, then the cti).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCursor {
    pub iat: i64,
    pub cti: Vec<u8>,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenCursorError {
    #[error("cursor: not base64url")]
    Encoding,
    #[error("cursor: expected {expected} bytes, got {actual}")]
    Length { expected: usize, actual: usize },
}

impl TokenCursor {
    /// The cursor after `t`.
    pub fn after(t: &TokenState) -> TokenCursor {
        TokenCursor {
            iat: t.record.iat,
            cti: t.record.cti.clone(),
        }
    }

    pub fn encode(&self) -> String {
        let mut bytes = self.iat.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.cti);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(s: &str) -> Result<TokenCursor, TokenCursorError> {
        let expected = 8 + verifier_lib::token::CTI_LEN;
        // Longer text cannot decode to `expected` bytes: refused unread.
        if s.len() > expected.div_ceil(3) * 4 {
            return Err(TokenCursorError::Length {
                expected,
                actual: s.len() / 4 * 3,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenCursorError::Encoding)?;
        if bytes.len() != expected {
            return Err(TokenCursorError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let (iat, cti) = bytes.split_at(8);
        let mut be = [0u8; 8];
        be.copy_from_slice(iat);
        Ok(TokenCursor {
            iat: i64::from_be_bytes(be),
            cti: cti.to_vec(),
        })
    }
}

/// Which tokens to list: every filter given must hold; at most `limit`
/// (clamped to 1..=[`MAX_TOKEN_PAGE`]) tokens after `after`, newest first.
#[derive(Debug, Clone, Copy)]
pub struct TokenQuery<'a> {
    pub host: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub state: Option<TokenLifecycle>,
    /// The time `state` is judged at (expiry).
    pub now: i64,
    pub after: Option<&'a TokenCursor>,
    pub limit: u32,
}

impl<'a> TokenQuery<'a> {
    /// The newest tokens, no filter.
    pub fn newest(now: i64, limit: u32) -> TokenQuery<'a> {
        TokenQuery {
            host: None,
            workload: None,
            state: None,
            now,
            after: None,
            limit,
        }
    }

    /// The page size the backend reads.
    pub fn bounded_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, MAX_TOKEN_PAGE))
    }

    /// `state` as the backends' SQL names it.
    pub fn state_name(&self) -> Option<&'static str> {
        self.state.map(TokenLifecycle::as_str)
    }

    /// The cursor's `(iat, cti)`, or `(None, None)`.
    pub fn after_parts(&self) -> (Option<i64>, Option<&'a [u8]>) {
        match self.after {
            Some(c) => (Some(c.iat), Some(c.cti.as_slice())),
            None => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_typed_errors() {
        let c = TokenCursor {
            iat: 1_700_000_000,
            cti: vec![7; 16],
        };
        assert_eq!(TokenCursor::decode(&c.encode()).unwrap(), c);
        let negative = TokenCursor {
            iat: -5,
            cti: vec![0; 16],
        };
        assert_eq!(TokenCursor::decode(&negative.encode()).unwrap(), negative);
        assert_eq!(
            TokenCursor::decode("!!").unwrap_err(),
            TokenCursorError::Encoding
        );
        assert_eq!(
            TokenCursor::decode(&URL_SAFE_NO_PAD.encode([1u8; 10])).unwrap_err(),
            TokenCursorError::Length {
                expected: 24,
                actual: 10
            }
        );
        assert!(matches!(
            TokenCursor::decode(&"A".repeat(10_000)).unwrap_err(),
            TokenCursorError::Length { expected: 24, .. }
        ));
    }

    #[test]
    fn lifecycle_names_round_trip() {
        for l in TokenLifecycle::ALL {
            assert_eq!(TokenLifecycle::from_name(l.as_str()), Some(l));
        }
        assert_eq!(TokenLifecycle::from_name("valid"), None);
    }
}
