//! Operations surface through the router, without sockets: the OpenAPI
//! document against the router (both ways), `/healthz` and `/readyz`
//! (including a database that stops answering), request ids and the
//! per-route metrics of a known sequence of requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pg_harness::{Backend, TestStorage};
use tower::ServiceExt;
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;

const OPERATOR: &str = "operations-test-operator-token";

/// Mounts that are not part of the `/v1` API and so not in the document
/// (the operator web pages).
/// The dashboard's HTML pages (under `/ui`) are not API operations.
const UNDOCUMENTED_PREFIX: &str = "/ui";

struct Fixture {
    _dir: tempfile::TempDir,
    storage: TestStorage,
}

async fn router(backend: Backend) -> (Fixture, axum::Router, writ_broker::state::AppState) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"ops\"\n").unwrap();
    let path = dir.path().to_owned();
    let storage = tokio::task::spawn_blocking(move || backend.storage(&path, "ops"))
        .await
        .unwrap()
        .unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = storage.url().to_owned();
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    cfg.operators.tokens = vec![writ_broker::config::OperatorToken {
        name: "ops".into(),
        sha256: hex::encode(verifier_lib::crypto::HashAlg::Sha256.digest(OPERATOR.as_bytes())),
    }];
    let state = writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
        .await
        .unwrap();
    let app = writ_broker::app(state.clone());
    (Fixture { _dir: dir, storage }, app, state)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn operator(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap()
}

/// Every `.route(`/`.nest(`-style mount with a literal path in the broker's
/// sources: anything mounted outside `routes!` would bypass the document.
fn literal_mounts() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                    for (at, _) in text.match_indices(call) {
                        let rest = text[at + call.len()..].trim_start();
                        if let Some(lit) = rest.strip_prefix('"') {
                            let end = lit.find('"').unwrap();
                            found.insert(lit[..end].to_owned());
                        }
                    }
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn openapi_document_and_router_agree() {
    let (_f, app, _state) = router(Backend::Sqlite).await;
    let a = call(&app, get("/v1/openapi.json")).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The operator bearer scheme and the error body with its stable code.
    assert_eq!(
        doc["components"]["securitySchemes"]["operator"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ErrorDetail"];
    assert!(
        error["required"]
            .as_array()
            .unwrap()
            .contains(&"code".into()),
        "{error}"
    );

    let paths = doc["paths"].as_object().unwrap();
    // Operation ids are unique (OpenAPI requires it; client generators
    // name functions after them).
    let mut ids = BTreeSet::new();
    for item in paths.values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
        }
    }
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "no-such-host")
            .replace("{cti}", "no-such-token")
            .replace("{name}", "no-such-workload");
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("operator").is_some()));
            // Operator endpoints are documented as such, and only they are.
            assert_eq!(
                secured,
                op["tags"][0] == "operator" || path == "/metrics",
                "{method} {path}"
            );
            if path == "/v1/status/stream" {
                // Answers with a stream that stays open; its route is
                // checked by the 405 below instead.
                let a = call(&app, Request::post(path).body(Body::empty()).unwrap()).await;
                assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
                continue;
            }
            let a = call(&app, operator(&method.to_uppercase(), &concrete)).await;
            let fallback = a.status == StatusCode::NOT_FOUND
                && serde_json::from_slice::<serde_json::Value>(&a.body)
                    .is_ok_and(|v| v["error"]["code"] == "not_found");
            assert!(
                !fallback && a.status != StatusCode::METHOD_NOT_ALLOWED,
                "documented {method} {path} is not routed: {} {}",
                a.status,
                a.text()
            );
            // Every refusal of the API uses the documented error body.
            if a.status.is_client_error() || a.status.is_server_error() {
                assert!(
                    a.json()["error"]["code"].is_string(),
                    "{method} {path}: {}",
                    a.text()
                );
            }
        }
    }
    // Routes are declared only through `routes!` (one operation each), so
    // the router has exactly the document's operations ...
    let router_src = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"),
    )
    .unwrap();
    assert_eq!(router_src.matches("routes!(").count(), operations);
    // ... and nothing is mounted beside them but the known non-API pages.
    for mount in literal_mounts() {
        assert!(
            paths.contains_key(&mount)
                || mount == UNDOCUMENTED_PREFIX
                || mount.starts_with(&format!("{UNDOCUMENTED_PREFIX}/")),
            "{mount} is mounted outside `routes!` and missing from the OpenAPI document"
        );
    }
    // Someone else's validator, where installed (PyPI openapi-spec-validator).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &a.body).unwrap();
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output();
    match check {
        Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            assert!(
                out.status.success(),
                "openapi-spec-validator: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => eprintln!("openapi-spec-validator not installed; document not validated by it"),
    }
    // An undocumented path gets the fallback.
    let a = call(&app, get("/v1/not-an-endpoint")).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

#[tokio::test]
async fn healthz_and_readyz_when_ready() {
    let (_f, app, _state) = router(Backend::Sqlite).await;
    let a = call(&app, get("/healthz")).await;
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, serde_json::json!({"status": "alive"}))
    );
    let a = call(&app, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let r = a.json();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["failing"], serde_json::json!([]));
    for check in ["database", "policy", "keys", "audit_writer", "status_list"] {
        assert_eq!(r["checks"][check], "ok", "{r}");
    }
}

/// The store stops answering under a running broker (its PostgreSQL
/// database refuses connections and the open ones are ended): `/readyz`
/// answers 503 naming `database` within its timeout; `/healthz` stays 200.
#[tokio::test]
async fn readyz_names_an_unreachable_database() {
    let (f, app, _state) = router(Backend::Postgres).await;
    assert_eq!(call(&app, get("/readyz")).await.status, StatusCode::OK);
    let db = f.storage.database().unwrap();
    let admin_url = db.url().replace(&format!("/{}", db.name()), "/postgres");
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
        db.name()
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(db.name())
        .execute(&admin)
        .await
        .unwrap();
    // Past the cached result.
    tokio::time::sleep(writ_broker::telemetry::readiness::READY_CACHE).await;
    let started = std::time::Instant::now();
    let a = call(&app, get("/readyz")).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    let r = a.json();
    assert_eq!(r["status"], "not_ready");
    assert!(
        r["failing"]
            .as_array()
            .unwrap()
            .contains(&"database".into()),
        "{r}"
    );
    assert_ne!(r["checks"]["database"], "ok");
    // Nothing of the connection string is told.
    assert!(!a.text().contains("postgres://"), "{}", a.text());
    assert_eq!(call(&app, get("/healthz")).await.status, StatusCode::OK);
    // Connections allowed again (the harness drops the database at the end).
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
        db.name()
    ))
    .execute(&admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let (_f, app, _state) = router(Backend::Sqlite).await;
    let req = Request::get("/healthz")
        .header("x-request-id", "client-id.42_a")
        .body(Body::empty())
        .unwrap();
    let a = call(&app, req).await;
    assert_eq!(a.headers["x-request-id"], "client-id.42_a");
    // An id that could forge a log line is replaced by a fresh one.
    for bad in ["two words", "x\"y", &"a".repeat(65)] {
        let req = Request::get("/healthz")
            .header("x-request-id", bad)
            .body(Body::empty())
            .unwrap();
        let a = call(&app, req).await;
        let id = a.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{bad:?} -> {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    let a = call(&app, get("/v1/keys/jwks")).await;
    let b = call(&app, get("/v1/keys/jwks")).await;
    assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);
}

/// Parse a Prometheus text scrape into `(sample name with sorted labels) -> value`.
fn samples(scrape: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value.parse().unwrap());
    }
    out
}

#[tokio::test]
async fn metrics_count_a_known_sequence_by_route_template() {
    let (_f, app, state) = router(Backend::Sqlite).await;
    // Operators only.
    let a = call(&app, get("/metrics")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    for id in ["a", "b", "c"] {
        let a = call(&app, operator("GET", &format!("/v1/hosts/{id}"))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }
    let a = call(&app, operator("GET", "/v1/hosts")).await;
    assert_eq!(a.status, StatusCode::OK);
    let post = Request::post("/v1/challenge")
        .header("content-type", "application/json")
        .body(Body::from("{"))
        .unwrap();
    assert_eq!(call(&app, post).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&app, get("/nowhere/1")).await.status,
        StatusCode::NOT_FOUND
    );

    // One audited decision besides the policy's activation at start.
    let a = call(&app, operator("POST", "/v1/workloads/none/revoke")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    let a = call(&app, operator("GET", "/metrics")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let scrape = a.text();
    let m = samples(&scrape);
    let count = |route: &str, method: &str, status: u16| {
        m.get(&format!(
            "writ_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
        .copied()
    };
    assert_eq!(count("/v1/hosts/{id}", "GET", 404), Some(3.0), "{scrape}");
    assert_eq!(count("/v1/hosts", "GET", 200), Some(1.0), "{scrape}");
    assert_eq!(count("/v1/challenge", "POST", 400), Some(1.0), "{scrape}");
    assert_eq!(count("unmatched", "GET", 404), Some(1.0), "{scrape}");
    // The refused scrape was answered too (and counted as an error).
    assert_eq!(count("/metrics", "GET", 401), Some(1.0), "{scrape}");
    // No raw path with an id is ever a label.
    assert!(!scrape.contains("/v1/hosts/a\""), "{scrape}");
    assert_eq!(
        m.get("writ_api_errors_total{code=\"unknown_host\"}"),
        Some(&3.0)
    );
    assert_eq!(
        m.get("writ_api_errors_total{code=\"malformed_json\"}"),
        Some(&1.0)
    );
    assert_eq!(
        m.get("writ_api_errors_total{code=\"operator_unauthorized\"}"),
        Some(&1.0)
    );
    assert_eq!(
        m.get("writ_api_errors_total{code=\"not_found\"}"),
        Some(&1.0)
    );
    for status in ["enrolled", "trusted", "failed", "revoked", "stale"] {
        assert_eq!(
            m.get(&format!("writ_hosts{{status=\"{status}\"}}")),
            Some(&0.0),
            "{scrape}"
        );
    }
    let version = state.store.status_version().await.unwrap() as f64;
    assert_eq!(
        m.get("writ_status_list_version"),
        Some(&version),
        "{scrape}"
    );
    assert!(m.contains_key("writ_status_list_age_seconds"), "{scrape}");
    // The policy's activation is the log's first leaf.
    assert!(
        m.get("writ_audit_tree_size").is_some_and(|v| *v >= 1.0),
        "{scrape}"
    );
    // The audit appends: the activation and the revocation, each one
    // entry of a committed batch (at most one batch each), each timed.
    let appends = m.get("writ_audit_append_duration_seconds_count").copied();
    assert_eq!(appends, Some(2.0), "{scrape}");
    assert_eq!(
        m.get("writ_audit_append_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(&2.0),
        "{scrape}"
    );
    assert_eq!(
        m.get("writ_audit_batch_entries_sum"),
        Some(&2.0),
        "{scrape}"
    );
    let batches = m
        .get("writ_audit_batch_entries_count")
        .copied()
        .unwrap_or(0.0);
    assert!((1.0..=2.0).contains(&batches), "{scrape}");
    assert!(
        scrape.contains("# TYPE writ_audit_batch_entries histogram"),
        "{scrape}"
    );
    // Help text for what was exported.
    assert!(
        scrape.contains("# TYPE writ_http_request_duration_seconds histogram"),
        "{scrape}"
    );
}

/// Two brokers in one process keep separate counts (no global recorder).
#[tokio::test]
async fn each_broker_has_its_own_metrics() {
    let (_f1, one, _) = router(Backend::Sqlite).await;
    let (_f2, two, _) = router(Backend::Sqlite).await;
    call(&one, operator("GET", "/v1/hosts/x")).await;
    let m1 = samples(&call(&one, operator("GET", "/metrics")).await.text());
    let m2 = samples(&call(&two, operator("GET", "/metrics")).await.text());
    assert_eq!(
        m1.get("writ_api_errors_total{code=\"unknown_host\"}"),
        Some(&1.0)
    );
    assert_eq!(m2.get("writ_api_errors_total{code=\"unknown_host\"}"), None);
}

/// `GET /v1/tokens` and `GET /v1/tokens/{cti}` through the router on every
/// backend: operators only, strict queries with typed errors, an empty
/// fleet's page, unknown and malformed ids. (Listing real tokens: the store
/// suite and `operations_cli`.)
async fn token_views_refuse_bad_input(backend: Backend) {
    let (_f, app, _state) = router(backend).await;
    assert_eq!(
        call(&app, get("/v1/tokens")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a = call(&app, operator("GET", "/v1/tokens?state=active&limit=5")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), serde_json::json!({ "tokens": [] }));
    for (query, fragment) in [
        ("state=valid", "state"),
        ("tenant=x", "unknown parameter"),
        ("host=a&host=b", "twice"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=!!", "cursor"),
        ("host=%ZZ", "percent"),
    ] {
        let a = call(&app, operator("GET", &format!("/v1/tokens?{query}"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        let body = a.json();
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(fragment),
            "{query}: {body}"
        );
    }
    let unknown = "00112233445566778899aabbccddeeff";
    let a = call(&app, operator("GET", &format!("/v1/tokens/{unknown}"))).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["code"], "unknown_token");
    let a = call(&app, operator("GET", "/v1/tokens/nothex")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["code"], "invalid_cti");
}

pg_harness::on_each_backend!(token_views_refuse_bad_input);
