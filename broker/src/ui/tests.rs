//! The dashboard through the broker's router (no sockets): security
//! headers, sign-in, cookie attributes, CSRF refusals, session expiry and
//! sign-out.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::session::{SESSION_COOKIE, SESSION_TTL_SECS};
use super::CONTENT_SECURITY_POLICY;
use crate::clock::OffsetClock;
use crate::config::{Config, OperatorToken};
use crate::state::AppState;

const TOKEN: &str = "ui-test-operator-token";

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    state: AppState,
    clock: OffsetClock,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"ui-test\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    cfg.operators.tokens = vec![OperatorToken {
        name: "alice".into(),
        sha256: hex::encode(verifier_lib::crypto::HashAlg::Sha256.digest(TOKEN.as_bytes())),
    }];
    let clock = OffsetClock::default();
    let state = crate::server::build_state(cfg, Arc::new(clock.clone()))
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        app: crate::app(state.clone()),
        state,
        clock,
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> (Response<()>, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap()
}

fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[start..start + 64].to_owned()
}

fn set_cookies(r: &Response<()>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn location(r: &Response<()>) -> &str {
    r.headers()
        .get(header::LOCATION)
        .map_or("", |v| v.to_str().unwrap())
}

/// Sign in; returns the session cookie (`name=value`) and the signed-in
/// overview page.
async fn sign_in(f: &Fixture) -> (String, String) {
    let (r, html) = send(&f.app, get("/ui/login", None)).await;
    let csrf = hidden_csrf(&html);
    let login = format!("writ_ui_login={csrf}");
    let (r2, _) = send(
        &f.app,
        post("/ui/login", &login, &format!("csrf={csrf}&token={TOKEN}")),
    )
    .await;
    assert_eq!(r2.status(), StatusCode::SEE_OTHER, "{:?}", set_cookies(&r));
    assert_eq!(location(&r2), "/ui");
    let session = set_cookies(&r2)
        .into_iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .unwrap();
    let cookie = session.split(';').next().unwrap().to_owned();
    let (r3, page) = send(&f.app, get("/ui", Some(&cookie))).await;
    assert_eq!(r3.status(), StatusCode::OK);
    (cookie, page)
}

#[tokio::test]
async fn every_page_has_the_csp_and_security_headers() {
    let f = fixture().await;
    for path in ["/ui/login", "/ui", "/ui/static/ui.css", "/ui/hosts/x"] {
        let (r, _) = send(&f.app, get(path, None)).await;
        let h = r.headers();
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(h.get(header::REFERRER_POLICY).unwrap(), "no-referrer");
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_refuses_bad_tokens() {
    let f = fixture().await;
    let (r, _) = send(&f.app, get("/ui", None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login");

    let (r, html) = send(&f.app, get("/ui/login", None)).await;
    let csrf = hidden_csrf(&html);
    assert_eq!(
        set_cookies(&r),
        vec![format!(
            "writ_ui_login={csrf}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=600"
        )]
    );
    assert!(
        html.contains("<label for=\"token\">"),
        "labelled token field"
    );
    let login = format!("writ_ui_login={csrf}");
    // A wrong token: refused, no session.
    let (r, html) = send(
        &f.app,
        post("/ui/login", &login, &format!("csrf={csrf}&token=wrong")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(html.contains("unknown operator token"));
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with(SESSION_COOKIE)));

    let (cookie, page) = sign_in(&f).await;
    assert!(page.contains("Signed in as <strong>alice</strong>"));
    assert!(!page.contains(TOKEN), "the operator token is never echoed");
    let csrf = hidden_csrf(&send(&f.app, get("/ui/login", None)).await.1);
    let (r2, _) = send(
        &f.app,
        post(
            "/ui/login",
            &format!("writ_ui_login={csrf}"),
            &format!("csrf={csrf}&token={TOKEN}"),
        ),
    )
    .await;
    let c = set_cookies(&r2);
    assert!(
        c.iter().any(|c| c.starts_with(SESSION_COOKIE)
            && c.ends_with("; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=28800")),
        "{c:?}"
    );
    assert!(
        c.iter().all(|c| !c.contains("Secure")),
        "plain HTTP: no Secure"
    );
    assert!(cookie.len() > SESSION_COOKIE.len() + 60);
}

#[tokio::test]
async fn sign_in_without_the_form_cookie_is_refused() {
    let f = fixture().await;
    let (_, html) = send(&f.app, get("/ui/login", None)).await;
    let csrf = hidden_csrf(&html);
    let (r, _) = send(
        &f.app,
        post(
            "/ui/login",
            "writ_ui_login=someone-elses",
            &format!("csrf={csrf}&token={TOKEN}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with(SESSION_COOKIE)));
}

#[tokio::test]
async fn actions_without_the_session_csrf_token_are_refused() {
    let f = fixture().await;
    let (cookie, page) = sign_in(&f).await;
    let csrf = hidden_csrf(&page);
    let before = f.state.audit.view().tree.len();
    for path in [
        "/ui/hosts/h1/revoke",
        "/ui/hosts/h1/reinstate",
        "/ui/workloads/w/revoke",
        "/ui/tokens/00112233445566778899aabbccddeeff/revoke",
        "/ui/logout",
    ] {
        let (r, html) = send(&f.app, post(path, &cookie, "csrf=forged&reason=x")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(html.contains("CSRF check failed"), "{path}: {html}");
        let (r, _) = send(&f.app, post(path, &cookie, "reason=x")).await;
        assert!(r.status().is_client_error(), "{path}: no token at all");
    }
    assert_eq!(
        f.state.audit.view().tree.len(),
        before,
        "nothing was logged"
    );
    // The session survived the forged sign-out; the real one ends it.
    let (r, _) = send(&f.app, get("/ui/tokens", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, _) = send(&f.app, post("/ui/logout", &cookie, &format!("csrf={csrf}"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login");
    assert!(set_cookies(&r)[0].contains("Max-Age=0"));
    let (r, _) = send(&f.app, get("/ui/tokens", Some(&cookie))).await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    // A workload revocation with the right token goes through the audited
    // decision (an operator_action leaf and the revocation's leaf).
    let (cookie, page) = sign_in(&f).await;
    let csrf = hidden_csrf(&page);
    let (r, _) = send(
        &f.app,
        post(
            "/ui/workloads/w/revoke",
            &cookie,
            &format!("csrf={csrf}&reason=test"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(f.state.audit.view().tree.len(), before + 2);
}

#[tokio::test]
async fn sessions_expire() {
    let f = fixture().await;
    let (cookie, _) = sign_in(&f).await;
    f.clock.advance(SESSION_TTL_SECS - 1);
    let (r, _) = send(&f.app, get("/ui/policy", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    f.clock.advance(1);
    let (r, _) = send(&f.app, get("/ui/policy", Some(&cookie))).await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
}

#[tokio::test]
async fn pages_render_for_an_empty_broker() {
    let f = fixture().await;
    let (cookie, page) = sign_in(&f).await;
    assert!(page.contains("No host has enrolled yet."));
    for (path, text) in [
        ("/ui/tokens", "No token was issued yet."),
        ("/ui/audit", "Leaves, newest first"),
        ("/ui/policy", "ui-test"),
        ("/ui/audit/0", "Verified: leaf 0"),
    ] {
        let (r, html) = send(&f.app, get(path, Some(&cookie))).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: {html}");
        assert!(html.contains(text), "{path}: {html}");
    }
    let (r, _) = send(&f.app, get("/ui/hosts/nobody", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The tokens page's filters and one token's page.
    let (r, html) = send(
        &f.app,
        get("/ui/tokens?state=revoked&host=a%20b", Some(&cookie)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{html}");
    assert!(html.contains("No token matches these filters."), "{html}");
    assert!(html.contains("value=\"a b\""), "{html}");
    assert!(
        html.contains("<option value=\"revoked\" selected>"),
        "{html}"
    );
    let (r, html) = send(&f.app, get("/ui/tokens?state=valid", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        html.contains("state: expected active, revoked or expired"),
        "{html}"
    );
    let unknown = "00112233445566778899aabbccddeeff";
    let (r, _) = send(&f.app, get(&format!("/ui/tokens/{unknown}"), Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (r, _) = send(&f.app, get("/ui/tokens/zz", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
