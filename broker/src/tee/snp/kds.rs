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
//!
//! Fetches are bounded, because a forged report names any chip id it likes:
//! a 4xx answer is remembered for `snp.kds_negative_cache_secs` (the same
//! URL is not asked again meanwhile), fetches draw from one token bucket
//! (`snp.kds_fetches_per_min`, burst `snp.kds_fetch_burst`) and at most
//! `snp.kds_max_in_flight` run at once. Beyond the bound the caller gets
//! [`KdsError::Busy`] and the request fails closed (`503 kds_busy`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

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
    #[error("{what}: KDS fetches are at their bound ({reason}); try again later")]
    Busy { what: String, reason: BusyReason },
}

/// Which bound a refused fetch hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusyReason {
    /// `snp.kds_fetches_per_min` / `snp.kds_fetch_burst` spent.
    RateLimited,
    /// `snp.kds_max_in_flight` fetches already running.
    InFlight,
}

impl std::fmt::Display for BusyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusyReason::RateLimited => "rate limited",
            BusyReason::InFlight => "too many in flight",
        })
    }
}

/// Most negative answers remembered at once (beyond it, expired ones are
/// dropped; if none expired, the answer is not remembered — the rate limit
/// still bounds fetches).
const MAX_NEGATIVE: usize = 65_536;

/// The shared bounds on KDS fetches (one per broker, shared by clones).
#[derive(Debug)]
struct FetchBounds {
    /// URL path → (HTTP status, remembered until).
    negative: Mutex<HashMap<String, (u16, Instant)>>,
    negative_ttl: Duration,
    /// (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
    per_sec: f64,
    burst: f64,
    in_flight: Arc<Semaphore>,
}

impl FetchBounds {
    fn new(cfg: &SnpConfig) -> Self {
        let burst = f64::from(cfg.kds_fetch_burst.max(1));
        Self {
            negative: Mutex::new(HashMap::new()),
            negative_ttl: Duration::from_secs(cfg.kds_negative_cache_secs),
            bucket: Mutex::new((burst, Instant::now())),
            per_sec: f64::from(cfg.kds_fetches_per_min.max(1)) / 60.0,
            burst,
            in_flight: Arc::new(Semaphore::new(cfg.kds_max_in_flight.max(1))),
        }
    }

    /// A remembered negative answer for `path`, if still current.
    fn negative(&self, path: &str, now: Instant) -> Option<u16> {
        let map = self.negative.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(path)
            .filter(|(_, until)| now < *until)
            .map(|(status, _)| *status)
    }

    fn remember_negative(&self, path: &str, status: u16, now: Instant) {
        let mut map = self.negative.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_NEGATIVE {
            map.retain(|_, (_, until)| now < *until);
        }
        if map.len() < MAX_NEGATIVE {
            map.insert(path.to_owned(), (status, now + self.negative_ttl));
        }
    }

    /// Take one token from the bucket.
    fn take_token(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + elapsed * self.per_sec).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
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
    bounds: Arc<FetchBounds>,
    stats: Arc<KdsStats>,
}

/// What the KDS client did, counted for the broker's metrics
/// (`writ_kds_fetches_total`, `writ_kds_cache_hits_total`).
#[derive(Debug, Default)]
pub struct KdsStats {
    /// KDS answered with the file.
    pub fetched: AtomicU64,
    /// KDS answered with an error status.
    pub error_status: AtomicU64,
    /// No answer (connection, timeout).
    pub unreachable: AtomicU64,
    /// Not asked: at the fetch bounds.
    pub busy: AtomicU64,
    /// Not asked: KDS already said it has no such file.
    pub negative_cached: AtomicU64,
    /// Served from the offline bundle.
    pub bundle_hits: AtomicU64,
    /// Served from a fresh cache entry.
    pub cache_hits: AtomicU64,
    /// Served from an expired cache entry because KDS failed.
    pub stale_cache_hits: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
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
            bounds: Arc::new(FetchBounds::new(cfg)),
            stats: Arc::default(),
        })
    }

    /// The client's counts so far.
    pub fn stats(&self) -> &KdsStats {
        &self.stats
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

    /// Fetch from KDS within the bounds. `cache_negative`: remember a 4xx
    /// answer (for VCEKs, whose URLs a forged report chooses; not for the
    /// few per-product chains and CRLs, whose absence is an outage).
    async fn fetch(
        &self,
        path_and_query: &str,
        what: &str,
        cache_negative: bool,
    ) -> Result<Vec<u8>, KdsError> {
        if !self.cfg.kds_fetch {
            return Err(KdsError::NotAvailable {
                what: what.to_owned(),
            });
        }
        let url = format!("{}{path_and_query}", self.cfg.kds_url.trim_end_matches('/'));
        let now = Instant::now();
        if let Some(status) = self.bounds.negative(path_and_query, now) {
            bump(&self.stats.negative_cached);
            tracing::debug!(%url, status, "KDS negative answer remembered; not fetched");
            return Err(KdsError::Status { url, status });
        }
        let busy = |reason| {
            bump(&self.stats.busy);
            tracing::warn!(%url, %reason, "KDS fetch refused: at its bound");
            KdsError::Busy {
                what: what.to_owned(),
                reason,
            }
        };
        let _permit = Arc::clone(&self.bounds.in_flight)
            .try_acquire_owned()
            .map_err(|_| busy(BusyReason::InFlight))?;
        if !self.bounds.take_token(now) {
            return Err(busy(BusyReason::RateLimited));
        }
        tracing::debug!(%url, "KDS fetch");
        let resp = self.http.get(&url).send().await.map_err(|source| {
            bump(&self.stats.unreachable);
            KdsError::Request {
                url: url.clone(),
                source,
            }
        })?;
        if !resp.status().is_success() {
            bump(&self.stats.error_status);
            let status = resp.status().as_u16();
            // "No such chip / TCB" is an answer; server errors are not.
            if cache_negative && resp.status().is_client_error() {
                self.bounds
                    .remember_negative(path_and_query, status, Instant::now());
            }
            return Err(KdsError::Status { url, status });
        }
        let body = resp.bytes().await.map_err(|source| {
            bump(&self.stats.unreachable);
            KdsError::Request { url, source }
        })?;
        bump(&self.stats.fetched);
        Ok(body.to_vec())
    }

    /// A certificate-like file: bundle, then a fresh cache entry, then KDS
    /// (cached), then a stale cache entry.
    async fn file(
        &self,
        rel: &Path,
        url: &str,
        what: &str,
        cache_negative: bool,
    ) -> Result<Vec<u8>, KdsError> {
        if let Some(p) = self.bundle_file(rel) {
            if let Some(b) = read_optional(&p)? {
                bump(&self.stats.bundle_hits);
                return Ok(b);
            }
        }
        let cached = self.cache_file(rel);
        let stale = read_optional(&cached)?;
        if let Some(b) = &stale {
            let ttl = Duration::from_secs(self.cfg.cert_cache_ttl_secs);
            if age(&cached).is_some_and(|a| a <= ttl) {
                bump(&self.stats.cache_hits);
                return Ok(b.clone());
            }
        }
        match self.fetch(url, what, cache_negative).await {
            Ok(b) => {
                self.write_cache(rel, &b);
                Ok(b)
            }
            Err(e) => match stale {
                // Certificates are verified anyway; an old copy is still
                // the same certificate.
                Some(b) => {
                    bump(&self.stats.stale_cache_hits);
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
        let bytes = self.file(&rel, &url, &what, false).await?;
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
        self.file(&rel, &url, &what, true).await
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
                    bump(&self.stats.bundle_hits);
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
                bump(&self.stats.cache_hits);
                return Ok(c.clone());
            }
        }
        let url = format!(
            "/{}/v1/{}/crl",
            signer_segment(signer),
            product_name(product)
        );
        let what = format!("{product:?} {signer:?} CRL");
        let fetched = match self.fetch(&url, &what, false).await {
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
                bump(&self.stats.cache_hits);
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
    fn finding3_fetch_bounds_hold() {
        let cfg = SnpConfig {
            kds_fetches_per_min: 60,
            kds_fetch_burst: 2,
            kds_max_in_flight: 1,
            kds_negative_cache_secs: 10,
            ..SnpConfig::default()
        };
        let b = FetchBounds::new(&cfg);
        let t0 = Instant::now();
        assert!(b.take_token(t0) && b.take_token(t0));
        assert!(!b.take_token(t0));
        // One per second refills.
        assert!(b.take_token(t0 + Duration::from_secs(1)));
        let held = Arc::clone(&b.in_flight).try_acquire_owned().unwrap();
        assert!(Arc::clone(&b.in_flight).try_acquire_owned().is_err());
        drop(held);
        assert!(Arc::clone(&b.in_flight).try_acquire_owned().is_ok());
        b.remember_negative("/vcek/x", 404, t0);
        assert_eq!(
            b.negative("/vcek/x", t0 + Duration::from_secs(9)),
            Some(404)
        );
        assert_eq!(b.negative("/vcek/x", t0 + Duration::from_secs(10)), None);
        assert_eq!(b.negative("/vcek/y", t0), None);
    }

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
