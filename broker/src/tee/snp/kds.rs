//! AMD Key Distribution Service client: VCEKs, certificate chains and CRLs
//! for SEV-SNP, from (in this order) the offline bundle, the on-disk cache
//! and KDS over HTTPS. Nothing here verifies anything: every certificate and
//! CRL is checked by `verifier_lib::snp` against the pinned ARKs. A CRL is
//! only handed out while it is current; otherwise the caller gets an error
//! and the appraisal fails closed (`CrlUnavailable`).
//!
//! Layout of the offline bundle and of the cache (the same):
//!
//! ```text
//! <dir>/<Product>/cert_chain.pem          ASK then ARK (VCEK chain)
//! <dir>/<Product>/crl.der                 VCEK CRL
//! <dir>/<Product>/vcek/<hwid-hex>-<tcb>.der
//! <dir>/<Product>/vlek/cert_chain.pem     ASVK then ARK
//! <dir>/<Product>/vlek/crl.der            VLEK CRL
//! ```
//!
//! `<tcb>` is the report's REPORTED_TCB as 16 hex digits (its u64 value).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use verifier_lib::snp::{Crl, Product, SignerKind, SnpError, TcbParts, TcbVersion};

use crate::config::SnpConfig;

/// Why a certificate or CRL could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KdsError {
    #[error("building the KDS HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("KDS request {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("KDS answered {url} with HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{what}: not in the offline bundle or the cache, and KDS fetching is disabled")]
    NotAvailable { what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("CRL for {product:?}: none current (nextUpdate {next_update:?}, now {now})")]
    CrlStale {
        product: Product,
        next_update: Option<i64>,
        now: i64,
    },
    #[error("CRL: {0}")]
    Crl(SnpError),
}

/// The ASK/ASVK and the ARK as KDS serves them (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChain {
    pub intermediate: Vec<u8>,
    pub ark: Vec<u8>,
}

/// A current CRL and its DER bytes.
#[derive(Debug, Clone)]
pub struct CurrentCrl {
    pub crl: Crl,
    pub der: Vec<u8>,
}

/// The KDS client with its cache and offline bundle.
#[derive(Debug, Clone)]
pub struct KdsClient {
    cfg: SnpConfig,
    http: reqwest::Client,
}

fn product_name(p: Product) -> &'static str {
    match p {
        Product::Milan => "Milan",
        Product::Genoa => "Genoa",
        _ => "Turin",
    }
}

/// The KDS path segment for a signer kind.
fn signer_segment(s: SignerKind) -> &'static str {
    match s {
        SignerKind::Vcek => "vcek",
        SignerKind::Vlek => "vlek",
    }
}

/// Relative path of a file in the bundle/cache layout.
fn layout_path(product: Product, signer: SignerKind, file: &str) -> PathBuf {
    let mut p = PathBuf::from(product_name(product));
    if signer == SignerKind::Vlek {
        p.push("vlek");
    }
    p.push(file);
    p
}

/// Relative path of a VCEK in the bundle/cache layout.
pub fn vcek_path(product: Product, hwid: &[u8], reported_tcb: TcbVersion) -> PathBuf {
    let mut p = PathBuf::from(product_name(product));
    p.push("vcek");
    p.push(format!("{}-{:016x}.der", hex::encode(hwid), reported_tcb.0));
    p
}

/// The KDS URL path of a VCEK: `/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
/// (and `fmcSPL` on Turin).
pub fn vcek_url_path(product: Product, hwid: &[u8], tcb: &TcbParts) -> String {
    let mut q = String::new();
    if let Some(fmc) = tcb.fmc {
        q.push_str(&format!("fmcSPL={fmc:02}&"));
    }
    q.push_str(&format!(
        "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    ));
    format!(
        "/vcek/v1/{}/{}?{q}",
        product_name(product),
        hex::encode(hwid)
    )
}

fn parse_chain(what: &str, bytes: &[u8]) -> Result<CertChain, KdsError> {
    let certs = verifier_lib::pem::certificates(bytes).map_err(|e| KdsError::Malformed {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    match certs.as_slice() {
        [intermediate, ark] => Ok(CertChain {
            intermediate: intermediate.clone(),
            ark: ark.clone(),
        }),
        _ => Err(KdsError::Malformed {
            what: what.to_owned(),
            reason: format!("expected 2 certificates (ASK, ARK), found {}", certs.len()),
        }),
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, KdsError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KdsError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

impl KdsClient {
    pub fn new(cfg: &SnpConfig) -> Result<Self, KdsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.kds_timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(cfg.kds_timeout_secs.clamp(1, 5)))
            .build()
            .map_err(KdsError::Client)?;
        Ok(Self {
            cfg: cfg.clone(),
            http,
        })
    }

    fn bundle_file(&self, rel: &Path) -> Option<PathBuf> {
        self.cfg.offline_dir.as_ref().map(|d| d.join(rel))
    }

    fn cache_file(&self, rel: &Path) -> PathBuf {
        self.cfg.cache_dir.join(rel)
    }

    fn write_cache(&self, rel: &Path, bytes: &[u8]) {
        let path = self.cache_file(rel);
        let result = path
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|()| {
                // Write then rename: a reader never sees half a file.
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path))
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "KDS cache write failed");
        }
    }

    async fn fetch(&self, path_and_query: &str, what: &str) -> Result<Vec<u8>, KdsError> {
        if !self.cfg.kds_fetch {
            return Err(KdsError::NotAvailable {
                what: what.to_owned(),
            });
        }
        let url = format!("{}{path_and_query}", self.cfg.kds_url.trim_end_matches('/'));
        tracing::debug!(%url, "KDS fetch");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| KdsError::Request {
                url: url.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(KdsError::Status {
                url,
                status: resp.status().as_u16(),
            });
        }
        let body = resp
            .bytes()
            .await
            .map_err(|source| KdsError::Request { url, source })?;
        Ok(body.to_vec())
    }

    /// A certificate-like file: bundle, then a fresh cache entry, then KDS
    /// (cached), then a stale cache entry.
    async fn file(&self, rel: &Path, url: &str, what: &str) -> Result<Vec<u8>, KdsError> {
        if let Some(p) = self.bundle_file(rel) {
            if let Some(b) = read_optional(&p)? {
                return Ok(b);
            }
        }
        let cached = self.cache_file(rel);
        let stale = read_optional(&cached)?;
        if let Some(b) = &stale {
            let ttl = Duration::from_secs(self.cfg.cert_cache_ttl_secs);
            if age(&cached).is_some_and(|a| a <= ttl) {
                return Ok(b.clone());
            }
        }
        match self.fetch(url, what).await {
            Ok(b) => {
                self.write_cache(rel, &b);
                Ok(b)
            }
            Err(e) => match stale {
                // Certificates are verified anyway; an old copy is still
                // the same certificate.
                Some(b) => {
                    tracing::warn!(error = %e, what, "KDS fetch failed; using the expired cache entry");
                    Ok(b)
                }
                None => Err(e),
            },
        }
    }

    /// The ASK/ASVK and ARK for `product` and `signer`.
    pub async fn cert_chain(
        &self,
        product: Product,
        signer: SignerKind,
    ) -> Result<CertChain, KdsError> {
        let rel = layout_path(product, signer, "cert_chain.pem");
        let url = format!(
            "/{}/v1/{}/cert_chain",
            signer_segment(signer),
            product_name(product)
        );
        let what = format!("{product:?} {signer:?} cert_chain");
        let bytes = self.file(&rel, &url, &what).await?;
        parse_chain(&what, &bytes)
    }

    /// The VCEK of chip `hwid` at `reported_tcb` (DER).
    pub async fn vcek(
        &self,
        product: Product,
        hwid: &[u8],
        reported_tcb: TcbVersion,
    ) -> Result<Vec<u8>, KdsError> {
        let rel = vcek_path(product, hwid, reported_tcb);
        let url = vcek_url_path(product, hwid, &reported_tcb.parts(product));
        let what = format!("{product:?} VCEK {}", hex::encode(hwid));
        self.file(&rel, &url, &what).await
    }

    /// A CRL for `product`/`signer` that is current at `now`: the bundle's
    /// if current, else the cache's unless within `crl_refresh_margin_secs`
    /// of its nextUpdate (then re-fetched; the cached one still serves if
    /// the fetch fails and it is current), else fetched from KDS.
    pub async fn crl(
        &self,
        product: Product,
        signer: SignerKind,
        now: i64,
    ) -> Result<CurrentCrl, KdsError> {
        let rel = layout_path(product, signer, "crl.der");
        let parse = |der: Vec<u8>| -> Result<CurrentCrl, KdsError> {
            let crl = Crl::parse(&der).map_err(KdsError::Crl)?;
            Ok(CurrentCrl { crl, der })
        };
        let current = |c: &CurrentCrl| {
            now >= c.crl.this_update() && c.crl.next_update().is_some_and(|n| now <= n)
        };
        let mut last_seen = None;
        if let Some(p) = self.bundle_file(&rel) {
            if let Some(der) = read_optional(&p)? {
                let c = parse(der)?;
                if current(&c) {
                    return Ok(c);
                }
                last_seen = c.crl.next_update();
            }
        }
        let cached = match read_optional(&self.cache_file(&rel))? {
            Some(der) => parse(der).ok().filter(|c| current(c)),
            None => None,
        };
        if let Some(c) = &cached {
            let margin = self.cfg.crl_refresh_margin_secs.max(0);
            let refresh_at = c.crl.next_update().map(|n| n.saturating_sub(margin));
            if refresh_at.is_some_and(|r| now < r) {
                return Ok(c.clone());
            }
        }
        let url = format!(
            "/{}/v1/{}/crl",
            signer_segment(signer),
            product_name(product)
        );
        let what = format!("{product:?} {signer:?} CRL");
        let fetched = match self.fetch(&url, &what).await {
            Ok(der) => match parse(der) {
                Ok(c) if current(&c) => {
                    self.write_cache(&rel, &c.der);
                    return Ok(c);
                }
                Ok(c) => Err(KdsError::CrlStale {
                    product,
                    next_update: c.crl.next_update(),
                    now,
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match (cached, fetched) {
            (Some(c), Err(e)) => {
                tracing::warn!(error = %e, "CRL refresh failed; the cached CRL is still current");
                Ok(c)
            }
            (_, Err(KdsError::NotAvailable { .. })) if last_seen.is_some() => {
                Err(KdsError::CrlStale {
                    product,
                    next_update: last_seen,
                    now,
                })
            }
            (_, Err(e)) => Err(e),
            (_, Ok(c)) => Ok(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_layout() {
        let tcb = TcbParts {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        assert_eq!(
            vcek_url_path(Product::Milan, &[0xab, 0x01], &tcb),
            "/vcek/v1/Milan/ab01?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        );
        let turin = TcbParts {
            fmc: Some(1),
            ..tcb
        };
        assert!(vcek_url_path(Product::Turin, &[1], &turin).contains("?fmcSPL=01&blSPL=03"));
        assert_eq!(
            vcek_path(Product::Genoa, &[0xff], TcbVersion(0x1234)),
            PathBuf::from("Genoa/vcek/ff-0000000000001234.der")
        );
        assert_eq!(
            layout_path(Product::Genoa, SignerKind::Vlek, "crl.der"),
            PathBuf::from("Genoa/vlek/crl.der")
        );
    }
}
