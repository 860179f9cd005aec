//! `--at`: the instant the offline checks are made at.

use serde_json::{json, Value};

/// `now`, or the RFC 3339 instant given with `--at`; the error is the JSON
/// verdict of unusable input.
pub(super) fn instant(at: Option<&str>) -> Result<i64, Value> {
    match at {
        None => Ok(time::OffsetDateTime::now_utc().unix_timestamp()),
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|e| {
                json!({ "verdict": "unusable", "reason": { "field": "at", "message": format!("{s:?} is not RFC 3339: {e}") } })
            }),
    }
}
