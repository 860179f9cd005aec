//! The query string of a token listing (`GET /v1/tokens` and the
//! dashboard's tokens page): `host`, `workload`, `state`
//! (`active`|`revoked`|`expired`), `cursor` (from the previous page) and
//! `limit`. Parsed strictly: unknown or repeated parameters, bad percent
//! escapes and over-long values are typed errors. An empty value is the
//! same as leaving the parameter out (what an HTML form sends).

use crate::store::token_query::{TokenCursorError, DEFAULT_TOKEN_PAGE, MAX_TOKEN_PAGE};
use crate::store::{TokenCursor, TokenLifecycle, TokenQuery};

/// The parameters a token listing accepts.
pub const PARAMETERS: [&str; 5] = ["host", "workload", "state", "cursor", "limit"];
/// Longest query string read.
pub const MAX_QUERY_LEN: usize = 2048;
/// Longest host id or workload name accepted as a filter.
pub const MAX_NAME_LEN: usize = 256;

/// Why a token-listing query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFilterError {
    #[error("query string: at most {expected} bytes, got {actual}")]
    TooLong { expected: usize, actual: usize },
    #[error("unknown parameter {actual:?}; expected one of {expected}")]
    Unknown { expected: String, actual: String },
    #[error("parameter {name} given twice")]
    Repeated { name: &'static str },
    #[error("{name}: bad percent-encoding or not UTF-8")]
    Encoding { name: &'static str },
    #[error("{name}: at most {expected} bytes, got {actual}")]
    ValueTooLong {
        name: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("state: expected active, revoked or expired, got {actual:?}")]
    State { actual: String },
    #[error("limit: expected an integer from 1 to {expected}, got {actual:?}")]
    Limit { expected: u32, actual: String },
    #[error(transparent)]
    Cursor(#[from] TokenCursorError),
}

/// A parsed token-listing query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFilter {
    pub host: Option<String>,
    pub workload: Option<String>,
    pub state: Option<TokenLifecycle>,
    pub cursor: Option<TokenCursor>,
    pub limit: u32,
}

impl Default for TokenFilter {
    fn default() -> Self {
        TokenFilter {
            host: None,
            workload: None,
            state: None,
            cursor: None,
            limit: DEFAULT_TOKEN_PAGE,
        }
    }
}

/// `%XX` and `+` decoded; `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `s` with everything but unreserved characters percent-encoded.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TokenFilter {
    pub fn parse(raw: Option<&str>) -> Result<TokenFilter, TokenFilterError> {
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_QUERY_LEN {
            return Err(TokenFilterError::TooLong {
                expected: MAX_QUERY_LEN,
                actual: raw.len(),
            });
        }
        let mut seen: Vec<&'static str> = Vec::new();
        let mut f = TokenFilter::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(name) = PARAMETERS.iter().copied().find(|p| *p == k) else {
                return Err(TokenFilterError::Unknown {
                    expected: PARAMETERS.join(", "),
                    actual: k.chars().take(64).collect(),
                });
            };
            if seen.contains(&name) {
                return Err(TokenFilterError::Repeated { name });
            }
            seen.push(name);
            let value = percent_decode(v).ok_or(TokenFilterError::Encoding { name })?;
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_NAME_LEN {
                return Err(TokenFilterError::ValueTooLong {
                    name,
                    expected: MAX_NAME_LEN,
                    actual: value.len(),
                });
            }
            match name {
                "host" => f.host = Some(value),
                "workload" => f.workload = Some(value),
                "state" => {
                    f.state = Some(
                        TokenLifecycle::from_name(&value)
                            .ok_or(TokenFilterError::State { actual: value })?,
                    );
                }
                "cursor" => f.cursor = Some(TokenCursor::decode(&value)?),
                _ => {
                    f.limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_TOKEN_PAGE).contains(n))
                        .ok_or(TokenFilterError::Limit {
                            expected: MAX_TOKEN_PAGE,
                            actual: value,
                        })?;
                }
            }
        }
        Ok(f)
    }

    /// The store query: one more token than the page holds, which tells
    /// whether there is a next page.
    pub fn query(&self, now: i64) -> TokenQuery<'_> {
        TokenQuery {
            host: self.host.as_deref(),
            workload: self.workload.as_deref(),
            state: self.state,
            now,
            after: self.cursor.as_ref(),
            limit: self.limit.saturating_add(1),
        }
    }

    /// The query string of the page after the one ending at `next`, with
    /// the same filters.
    pub fn next_page(&self, next: &TokenCursor) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host={}", percent_encode(h)));
        }
        if let Some(w) = &self.workload {
            parts.push(format!("workload={}", percent_encode(w)));
        }
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.as_str()));
        }
        parts.push(format!("cursor={}", next.encode()));
        if self.limit != DEFAULT_TOKEN_PAGE {
            parts.push(format!("limit={}", self.limit));
        }
        parts.join("&")
    }
}

/// One page of a listing: at most `filter.limit` of `rows` (read with
/// [`TokenFilter::query`]), and the cursor of the next page when more
/// were read.
pub fn page<T>(
    filter: &TokenFilter,
    mut rows: Vec<T>,
    cursor_of: impl Fn(&T) -> TokenCursor,
) -> (Vec<T>, Option<TokenCursor>) {
    let n = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    if rows.len() <= n {
        return (rows, None);
    }
    rows.truncate(n);
    let next = rows.last().map(cursor_of);
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_round_trip_through_the_next_page() {
        let f =
            TokenFilter::parse(Some("host=web%2F1&state=revoked&limit=2&workload=a+b")).unwrap();
        assert_eq!(f.host.as_deref(), Some("web/1"));
        assert_eq!(f.workload.as_deref(), Some("a b"));
        assert_eq!(f.state, Some(TokenLifecycle::Revoked));
        assert_eq!(f.limit, 2);
        let next = TokenCursor {
            iat: 9,
            cti: vec![1; 16],
        };
        let again = TokenFilter::parse(Some(&f.next_page(&next))).unwrap();
        assert_eq!(
            again,
            TokenFilter {
                cursor: Some(next),
                ..f
            }
        );
        // What an empty HTML form sends.
        assert_eq!(
            TokenFilter::parse(Some("host=&workload=&state=")).unwrap(),
            TokenFilter::default()
        );
        assert_eq!(TokenFilter::parse(None).unwrap(), TokenFilter::default());
    }

    #[test]
    fn bad_queries_are_typed_errors() {
        let err = |q: &str| TokenFilter::parse(Some(q)).unwrap_err();
        assert!(
            matches!(err("tenant=x"), TokenFilterError::Unknown { actual, .. } if actual == "tenant")
        );
        assert_eq!(
            err("host=a&host=b"),
            TokenFilterError::Repeated { name: "host" }
        );
        assert_eq!(err("host=%zz"), TokenFilterError::Encoding { name: "host" });
        assert_eq!(err("host=%ff"), TokenFilterError::Encoding { name: "host" });
        assert_eq!(err("host=%4"), TokenFilterError::Encoding { name: "host" });
        assert_eq!(
            err("state=valid"),
            TokenFilterError::State {
                actual: "valid".into()
            }
        );
        for bad in ["0", "501", "-1", "x"] {
            assert!(matches!(
                err(&format!("limit={bad}")),
                TokenFilterError::Limit { .. }
            ));
        }
        assert!(matches!(err("cursor=!!"), TokenFilterError::Cursor(_)));
        assert!(matches!(
            err(&format!("host={}", "a".repeat(300))),
            TokenFilterError::ValueTooLong { name: "host", .. }
        ));
        assert!(matches!(
            err(&"a".repeat(MAX_QUERY_LEN + 1)),
            TokenFilterError::TooLong { .. }
        ));
    }

    #[test]
    fn a_page_keeps_the_limit_and_points_after_its_last_row() {
        let f = TokenFilter {
            limit: 2,
            ..TokenFilter::default()
        };
        let cursor = |n: &i64| TokenCursor {
            iat: *n,
            cti: vec![0; 16],
        };
        let (rows, next) = page(&f, vec![30, 20, 10], cursor);
        assert_eq!(rows, vec![30, 20]);
        assert_eq!(next.map(|c| c.iat), Some(20));
        let (rows, next) = page(&f, vec![30, 20], cursor);
        assert_eq!((rows.len(), next), (2, None));
    }
}
