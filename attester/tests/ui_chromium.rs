//! The operator dashboard (`/ui`) in a real headless Chromium, driven over
//! WebDriver (`chromedriver`), against an in-process broker with a real
//! swtpm host: sign in with the keyboard; see the host trusted with its
//! tokens; revoke a token with confirmation; extend a PCR with
//! `tpm2_pcrextend` and re-attest; watch the host page turn failed by
//! itself with the reason in words; revoke the host with confirmation; see
//! its tokens revoked; check an audit leaf's inclusion proof; sign out and
//! be refused. A PNG of every page goes to `<target>/ui-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::{broker_for, fresh_pcrs, Host, Workload};
use swtpm_tests::broker::OPERATOR_TOKEN;
use writ_attester::commands;
use writ_attester::tpm::AkAlg;

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
/// WebDriver's Tab key.
const TAB: &str = "\u{E004}";

/// An executable on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// `<target>/ui-screenshots`, from this test binary's path
/// (`<target>/<profile>/deps/ui_chromium-…`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver process and one headless Chromium session on it.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let driver_bin = on_path(&["chromedriver"]).expect(
            "chromedriver not found on PATH: install chromium-driver (deploy/install-deps.sh)",
        );
        let chromium = on_path(&["chromium", "chromium-browser"])
            .expect("chromium not found on PATH: install chromium (deploy/install-deps.sh)");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{root}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1400",
                    "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            driver,
            base: format!("{root}/session/{id}"),
            http,
            _profile: profile,
            shots: screenshot_dir(),
        }
    }

    /// One WebDriver command: its value, or the WebDriver error.
    fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().unwrap().json().unwrap();
        match v["value"].get("error") {
            Some(_) => Err(v["value"].clone()),
            None => Ok(v["value"].clone()),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn find(&self, using: &str, value: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": using, "value": value })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {value:?}: {v}"))
            .to_owned()
    }

    fn css(&self, selector: &str) -> String {
        self.find("css selector", selector)
    }

    fn find_all(&self, using: &str, value: &str) -> Vec<String> {
        let v = self.call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({ "using": using, "value": value })),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }

    /// The rendered text of one element.
    fn element_text(&self, element: &str) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// The page's text (loaded).
    fn text(&self) -> String {
        self.element_text(&self.css("body"))
    }

    fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Press `key` on the focused element; returns the text of the element
    /// that has the focus then.
    fn press_on_focused(&self, key: &str) -> String {
        let active = self.call(reqwest::Method::GET, "/element/active", None);
        let active = active[ELEMENT].as_str().unwrap().to_owned();
        self.type_into(&active, key);
        let now = self.call(reqwest::Method::GET, "/element/active", None);
        let now = now[ELEMENT].as_str().unwrap().to_owned();
        self.call(reqwest::Method::GET, &format!("/element/{now}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The page's text, `None` while a page is loading.
    fn try_text(&self) -> Option<String> {
        let body = self
            .try_call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": "body" })),
            )
            .ok()?;
        let body = body[ELEMENT].as_str()?.to_owned();
        self.try_call(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Wait (without navigating) until the page text contains `needle`.
    fn wait_for_text(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let t = self.try_text().unwrap_or_default();
            if t.contains(needle) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "page {} never showed {needle:?}; it shows:\n{t}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Save a PNG of the page as `<name>.png`.
    fn screenshot(&self, name: &str) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

#[test]
fn dashboard_in_chromium_from_trusted_to_revoked() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("ui");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    let done = commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let host_id = done.host_id.clone();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );
    for _ in 0..2 {
        commands::obtain_token_with(&host.settings, "hello", &w.digest, None).unwrap();
    }

    let b = Browser::start();
    let ui = format!("{}/ui", broker.url());
    // Signed out, the dashboard sends us to sign in. Sign in with the
    // keyboard only: the token field has focus, Enter submits.
    b.goto(&ui);
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    b.screenshot("01-sign-in");
    let field = b.css("input#token");
    b.type_into(&field, &format!("{OPERATOR_TOKEN}{ENTER}"));
    let t = b.wait_for_text("Hosts by status", Duration::from_secs(10));
    assert!(t.contains("Signed in as test-operator"), "{t}");
    assert!(t.contains(&host_id), "{t}");
    assert!(t.contains("1\ntrusted"), "one trusted host: {t}");
    b.screenshot("02-fleet-trusted");
    // Keyboard navigation: Tab reaches the skip link, then the navigation's
    // real links, in order.
    b.goto(&ui);
    b.wait_for_text("Hosts by status", Duration::from_secs(10));
    let focus: Vec<String> = (0..3).map(|_| b.press_on_focused(TAB)).collect();
    assert_eq!(focus, ["Skip to content", "Fleet", "Tokens"], "tab order");

    // The host page: trusted, two active tokens.
    b.click(&b.find("link text", &host_id));
    let t = b.wait_for_text("Tokens issued", Duration::from_secs(10));
    assert!(t.contains("TPM quote"), "{t}");
    assert_eq!(t.matches("active").count(), 2, "{t}");
    b.screenshot("03-host-trusted");

    // Revoke one token from the tokens page, with confirmation.
    b.click(&b.find("link text", "Tokens"));
    b.wait_for_text("Lineage", Duration::from_secs(10));
    b.screenshot("04-tokens");
    b.click(&b.css(".lineage a[href$='/revoke']"));
    let t = b.wait_for_text("Revoke token", Duration::from_secs(10));
    assert!(t.contains("workload hello"), "{t}");
    b.screenshot("05-confirm-token");
    b.type_into(&b.css("input#reason"), "leaked in a test");
    b.click(&b.css("form.confirm button[type=submit]"));
    let t = b.wait_for_text("1 revoked", Duration::from_secs(10));
    assert!(t.contains("1 active"), "{t}");
    // The filters: revoked tokens of this host only, then that token's page
    // with its claims, revocation and the audit leaf that minted it.
    b.type_into(&b.css("input#f-host"), &host_id);
    b.click(&b.css("select#f-state option[value=revoked]"));
    b.click(&b.css("form.filters button[type=submit]"));
    let t = b.wait_for_text("tokens on this page", Duration::from_secs(10));
    assert!(b.url().contains("state=revoked"), "{}", b.url());
    assert!(t.contains("1 tokens on this page"), "{t}");
    assert!(t.contains("0 active, 1 revoked"), "{t}");
    b.screenshot("14-tokens-filtered");
    b.click(&b.css(".lineage a[href^='/ui/tokens/']"));
    let t = b.wait_for_text("Audit leaf", Duration::from_secs(10));
    assert!(t.contains("leaked in a test at"), "{t}");
    assert!(t.contains("(token minted)"), "{t}");
    assert!(t.contains("A revoked token cannot be revoked."), "{t}");
    b.screenshot("15-token");
    b.click(&b.css("a[href^='/ui/audit/']"));
    let t = b.wait_for_text("Inclusion proof", Duration::from_secs(10));
    assert!(t.contains("token_minted"), "{t}");

    // A candidate policy that pins PCR 16 elsewhere, evaluated in shadow
    // until the host's appraisal differs under it, then activated: the
    // policy page shows its diff and the host it affects.
    let mut candidate_pcrs = pcrs.clone();
    candidate_pcrs.insert(16, vec![0xee; 32]);
    let candidate =
        swtpm_tests::broker::policy_toml("e2e-2", &candidate_pcrs, &[("hello", w.digest)]);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (version, _) = broker
        .block_on(writ_broker::audit::policy::import(
            &broker.store,
            &candidate,
            None,
            &verifier_lib::policy::signing::PolicySigners::default(),
            now(),
        ))
        .unwrap();
    broker
        .block_on(broker.store.set_policy_shadow(Some(version.id), now()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(
            commands::attest(&host.settings).unwrap().host_status,
            "trusted"
        );
        let seen = broker
            .block_on(broker.store.shadow_differences(&version.hash, 10))
            .unwrap();
        if seen.iter().any(|d| d.host_id == host_id) {
            break;
        }
        assert!(Instant::now() < deadline, "the broker never shadowed e2e-2");
        std::thread::sleep(Duration::from_millis(500));
    }
    broker
        .block_on(writ_broker::audit::policy::activate(
            writ_broker::audit::policy::ActivationLog::Writer(&broker.audit),
            &broker.store,
            &version,
            now(),
        ))
        .unwrap();

    // Back on the host page, the host's PCR 16 changes and it attests
    // again: the page updates by itself and names the PCR.
    b.goto(&format!("{ui}/hosts/{host_id}"));
    b.wait_for_text("Tokens issued", Duration::from_secs(10));
    let out = swtpm_tests::tpm2_tool(
        &host.swtpm,
        "tpm2_pcrextend",
        [format!("16:sha256={}", "5a".repeat(32))],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "tpm2_pcrextend: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.host_status, "failed");
    let t = b.wait_for_text("Why the last appraisal failed", Duration::from_secs(20));
    assert!(t.contains("PCR 16 (sha256)"), "{t}");
    assert!(t.contains("groups.pcrs.16"), "{t}");
    assert!(t.contains("holds a value the policy does not allow"), "{t}");
    b.screenshot("06-host-failed");
    b.goto(&ui);
    let t = b.wait_for_text("Hosts by status", Duration::from_secs(10));
    assert!(t.contains("1\nfailed"), "{t}");
    assert!(t.contains("PCR 16 holds a value"), "{t}");
    b.screenshot("07-fleet-failed");

    // Revoke the host, with confirmation; its tokens are revoked.
    b.goto(&format!("{ui}/hosts/{host_id}"));
    b.click(&b.find("partial link text", "Revoke this host"));
    let t = b.wait_for_text(&format!("Revoke host {host_id}?"), Duration::from_secs(10));
    assert!(t.contains("every token it was issued"), "{t}");
    b.screenshot("08-confirm-host");
    b.type_into(&b.css("input#reason"), "PCR 16 changed");
    b.click(&b.css("form.confirm button[type=submit]"));
    let t = b.wait_for_text("Reinstate this host", Duration::from_secs(10));
    assert!(t.contains("revoked"), "{t}");
    assert!(!t.contains("active"), "no active token is left: {t}");
    assert!(t.contains("host_revoked"), "the decision is listed: {t}");
    // Its status timeline, newest first, with the reasons.
    let timeline = b.find("css selector", "ol.timeline");
    let t = b.element_text(&timeline);
    let order: Vec<usize> = ["revoked", "failed", "trusted", "enrolled"]
        .iter()
        .map(|s| t.find(s).unwrap_or_else(|| panic!("{s} missing: {t}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{t}");
    assert!(t.contains("PCR 16 changed"), "{t}");
    assert!(
        t.contains("failing appraisal; its tokens are revoked (was trusted)"),
        "{t}"
    );
    assert!(t.contains("enrollment accepted"), "{t}");
    let t = b.text();
    assert!(t.contains("TPM clock baseline"), "{t}");
    assert!(t.contains("reset count"), "{t}");
    b.screenshot("09-host-revoked");
    let counts = broker.block_on(broker.store.tokens(&writ_broker::store::TokenQuery {
        host: Some(&host_id),
        ..writ_broker::store::TokenQuery::newest(0, 10)
    }));
    assert!(counts.unwrap().iter().all(|t| t.revoked));

    // The audit log: the revocation's leaf, with a verified inclusion proof.
    b.click(&b.find("link text", "Audit"));
    let t = b.wait_for_text("Leaves, newest first", Duration::from_secs(10));
    assert!(
        t.contains(&format!("host {host_id} revoked: PCR 16 changed")),
        "{t}"
    );
    b.screenshot("10-audit");
    b.click(&b.css("table tbody a"));
    let t = b.wait_for_text("Inclusion proof", Duration::from_secs(10));
    assert!(t.contains("Verified: leaf"), "{t}");
    b.screenshot("11-audit-leaf");
    b.click(&b.find("link text", "Policy"));
    let t = b.wait_for_text("Active policy", Duration::from_secs(10));
    assert!(t.contains("e2e-1") && t.contains("e2e-2"), "{t}");
    assert!(t.contains("e2e-2 activated"), "{t}");
    // The diff from e2e-1: the id and PCR 16 lines, removed and added.
    let diff = b.element_text(&b.css("article.activation .diff"));
    assert!(
        diff.contains("id = \"e2e-1\"") && diff.contains("id = \"e2e-2\""),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("16 = [\"{}\"]", "ee".repeat(32))),
        "{diff}"
    );
    let removed = b.find_all("css selector", "article.activation:first-of-type .diff del");
    let added = b.find_all("css selector", "article.activation:first-of-type .diff ins");
    assert_eq!((removed.len(), added.len()), (2, 2), "{diff}");
    // The host it affected: passing before, failing PCR 16 after.
    let affected = b.element_text(&b.css("article.activation table"));
    assert!(affected.contains(&host_id), "{affected}");
    assert!(
        affected.contains("affirming") && affected.contains("contraindicated"),
        "{affected}"
    );
    assert!(affected.contains("pcr_not_allowed"), "{affected}");
    assert!(t.contains("the first activation"), "{t}");
    b.screenshot("12-policy");
    b.goto(&format!("{ui}/policy#hist-h"));
    b.wait_for_text("Activation history", Duration::from_secs(10));
    b.screenshot("16-policy-history");

    // Sign out; pages and actions are refused (back to sign-in).
    b.click(&b.css("form.signout button"));
    b.wait_for_text("Sign in with an operator token", Duration::from_secs(10));
    for path in [
        format!("{ui}/hosts/{host_id}"),
        format!("{ui}/hosts/{host_id}/reinstate"),
        format!("{ui}/tokens"),
    ] {
        b.goto(&path);
        assert!(b.url().ends_with("/ui/login"), "{path} -> {}", b.url());
    }
    b.screenshot("13-signed-out");
    // A cross-site style POST without the session is refused as well.
    let r = reqwest::blocking::Client::new()
        .post(format!("{ui}/hosts/{host_id}/reinstate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .unwrap();
    assert!(r.url().path().ends_with("/ui/login"), "{}", r.url());
    assert_eq!(
        broker
            .block_on(broker.store.host(&host_id))
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "revoked"
    );
}
