//! Where `writ-broker audit` reads a log from: a broker's store (its SQLite
//! file or its PostgreSQL URL, read through the store as stored: no
//! migration, read only) or a broker's `/v1/audit` API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use verifier_lib::api::b64;
use verifier_lib::audit::Hash;

use super::key::CHECKPOINT_VKEY_FILE;
use crate::store::{Store, StoreError};

/// A whole log as read from its source.
#[derive(Debug, Default)]
pub struct LogData {
    /// `(index, leaf, stored leaf hash)` in index order.
    pub rows: Vec<(u64, Vec<u8>, Option<Hash>)>,
    /// Signed checkpoint notes in issue order.
    pub checkpoints: Vec<String>,
    /// The verifier key the source itself published, if any (`--url`).
    pub published_vkey: Option<String>,
    /// Every checkpoint verifier key the source published: the store's
    /// audit key table (`--db`) or `/v1/audit/keys` (`--url`).
    pub published_keys: Vec<String>,
    /// Why the published keys could not be read (a store from before the
    /// key table, a broker without `/v1/audit/keys`).
    pub published_keys_error: Option<String>,
    /// The source published leaf hashes only (`--url` without an operator
    /// token): `rows` carry empty leaves and the published hashes.
    pub hashes_only: bool,
}

/// Why a log could not be read (exit 2: unusable input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Database { path: PathBuf, source: StoreError },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error("corrupt value in {what}")]
    Corrupt { what: &'static str },
}

/// Reads every leaf row and checkpoint from a broker's store: a SQLite
/// file, or a `postgres://` URL.
pub fn from_db(path: &Path) -> Result<LogData, SourceError> {
    let server_url = path
        .to_str()
        .filter(|p| Store::is_server_url(p))
        .map(str::to_owned);
    let db = |source| SourceError::Database {
        path: match &server_url {
            Some(url) => PathBuf::from(without_password(url)),
            None => path.to_owned(),
        },
        source,
    };
    if server_url.is_none() && !path.exists() {
        return Err(SourceError::File {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SourceError::Runtime)?;
    rt.block_on(async {
        let url = match &server_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", path.display()),
        };
        let store = Store::open_as_stored(&url).await.map_err(db)?;
        // Every index a stored row can have (SQLite integers are signed).
        let rows = store
            .audit_leaves(0, i64::MAX.unsigned_abs())
            .await
            .map_err(db)?;
        let mut data = LogData::default();
        data.rows.reserve(rows.len());
        for r in rows {
            // A stored hash of the wrong length is reported as a mismatch by
            // the audit, not as unusable input.
            let stored = Hash::try_from(r.leaf_hash.as_slice()).unwrap_or([0u8; 32]);
            data.rows.push((r.index, r.leaf, Some(stored)));
        }
        data.checkpoints = store
            .audit_checkpoints(0, u64::MAX)
            .await
            .map_err(db)?
            .into_iter()
            .map(|c| c.note)
            .collect();
        match store.audit_keys().await {
            Ok(keys) => data.published_keys = keys.into_iter().map(|k| k.vkey).collect(),
            Err(e) => data.published_keys_error = Some(e.to_string()),
        }
        Ok(data)
    })
}

/// `url` with the password of its user info (if any) replaced by `***`,
/// for error messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            let masked = if user.len() < user_info.len() {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{masked}@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

#[derive(Deserialize)]
struct EntryList {
    tree_size: u64,
    entries: Vec<EntryItem>,
}

#[derive(Deserialize)]
struct EntryItem {
    index: u64,
    /// Absent in the public form (no operator token).
    #[serde(with = "b64::option", default)]
    leaf: Option<Vec<u8>>,
    leaf_hash: String,
}

#[derive(Deserialize)]
struct CheckpointList {
    checkpoints: Vec<CheckpointItem>,
    /// Where the next page starts; absent on the last page.
    #[serde(default)]
    next_from_size: Option<u64>,
}

#[derive(Deserialize)]
struct CheckpointItem {
    note: String,
}

#[derive(Deserialize)]
struct KeyList {
    keys: Vec<KeyItem>,
}

#[derive(Deserialize)]
struct KeyItem {
    vkey: String,
}

/// Downloads the whole log from a broker: checkpoints first, then every
/// entry up to the size the broker reports.
/// With `operator_token` the entries carry their leaves; without it only
/// their hashes ([`LogData::hashes_only`]).
pub fn from_url(
    base: &str,
    ca_cert: Option<&Path>,
    operator_token: Option<&str>,
) -> Result<LogData, SourceError> {
    let base = base.trim_end_matches('/');
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5));
    if let Some(p) = ca_cert {
        let pem = std::fs::read(p).map_err(|source| SourceError::File {
            path: p.to_owned(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| SourceError::Http {
            url: p.display().to_string(),
            message: e.to_string(),
        })?;
        b = b.add_root_certificate(cert);
    }
    let http = b.build().map_err(|e| SourceError::Http {
        url: base.to_owned(),
        message: e.to_string(),
    })?;
    let get = |path: &str| -> Result<String, SourceError> {
        let url = format!("{base}{path}");
        let err = |message: String| SourceError::Http {
            url: url.clone(),
            message,
        };
        let mut req = http.get(&url);
        if let Some(t) = operator_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!("{status}: {body}")));
        }
        Ok(body)
    };
    let json = |path: &str, body: &str| -> Result<serde_json::Value, SourceError> {
        serde_json::from_str(body).map_err(|e| SourceError::Http {
            url: format!("{base}{path}"),
            message: format!("bad JSON: {e}"),
        })
    };
    let mut data = LogData {
        published_vkey: Some(get("/v1/audit/key")?.trim().to_owned()),
        ..LogData::default()
    };
    // Every broker's key; a broker from before the key table has only its own.
    match get("/v1/audit/keys").and_then(|body| {
        serde_json::from_str::<KeyList>(&body).map_err(|e| SourceError::Http {
            url: format!("{base}/v1/audit/keys"),
            message: format!("bad JSON: {e}"),
        })
    }) {
        Ok(list) => data.published_keys = list.keys.into_iter().map(|k| k.vkey).collect(),
        Err(e) => data.published_keys_error = Some(e.to_string()),
    }
    // Checkpoints come in pages; each names where the next one starts.
    let mut from_size = Some(0u64);
    while let Some(from) = from_size {
        let path = format!("/v1/audit/checkpoints?from_size={from}");
        let cps: CheckpointList =
            serde_json::from_value(json(&path, &get(&path)?)?).map_err(|e| SourceError::Http {
                url: format!("{base}{path}"),
                message: e.to_string(),
            })?;
        // A next page must start past this one, or the walk would not end.
        from_size = cps.next_from_size.filter(|next| *next > from);
        data.checkpoints
            .extend(cps.checkpoints.into_iter().map(|c| c.note));
    }
    let mut start = 0u64;
    loop {
        let path = format!("/v1/audit/entries?start={start}");
        let body = match get(&path) {
            Ok(b) => b,
            // An empty log answers `beyond_tree` for start=0.
            Err(SourceError::Http { message, .. })
                if start == 0 && message.contains("beyond_tree") =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        let page: EntryList =
            serde_json::from_value(json(&path, &body)?).map_err(|e| SourceError::Http {
                url: format!("{base}{path}"),
                message: e.to_string(),
            })?;
        let n = u64::try_from(page.entries.len()).unwrap_or(0);
        for e in page.entries {
            let mut h = [0u8; 32];
            let stored = hex::decode_to_slice(&e.leaf_hash, &mut h).ok().map(|_| h);
            match e.leaf {
                Some(leaf) => data.rows.push((e.index, leaf, stored)),
                None => {
                    data.hashes_only = true;
                    data.rows.push((e.index, Vec::new(), stored));
                }
            }
        }
        start = start.saturating_add(n);
        if n == 0 || start >= page.tree_size {
            break;
        }
    }
    Ok(data)
}

/// The verifier keys of a `--trusted-keys FILE`: one vkey per line (blank
/// lines and `#` comments skipped).
pub fn trusted_keys_from(file: &Path) -> Result<Vec<String>, SourceError> {
    let text = std::fs::read_to_string(file).map_err(|source| SourceError::File {
        path: file.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// The verifier key from `--vkey FILE` or `--keys-dir DIR`.
pub fn vkey_from(
    file: Option<&Path>,
    keys_dir: Option<&Path>,
) -> Result<Option<String>, SourceError> {
    let path = match (file, keys_dir) {
        (Some(f), _) => f.to_owned(),
        (None, Some(d)) => d.join(CHECKPOINT_VKEY_FILE),
        (None, None) => return Ok(None),
    };
    let text =
        std::fs::read_to_string(&path).map_err(|source| SourceError::File { path, source })?;
    Ok(Some(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn error_messages_do_not_show_database_passwords() {
        assert_eq!(
            without_password("postgres://writ:s3cret@db.example:5432/writ"),
            "postgres://writ:***@db.example:5432/writ"
        );
        assert_eq!(
            without_password("postgres://writ@db/writ"),
            "postgres://writ@db/writ"
        );
        assert_eq!(without_password("postgres://db/w@x"), "postgres://db/w@x");
    }
}
