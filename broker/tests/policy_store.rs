//! Policy lives in the store: brokers on one PostgreSQL database follow an
//! activation made through the store (here by `writ-broker policy activate`
//! offline), and a broker without a policy file serves the stored version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_harness::Backend;
use writ_broker::cli::policy::{run_on_store, PolicyCliError, PolicyCommand, StoreArgs};
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;
use writ_broker::state::AppState;

const POLICY_A: &str = "id = \"fleet-a\"\n";
const POLICY_B: &str = "id = \"fleet-b\"\n";

async fn broker(dir: &std::path::Path, name: &str, url: &str, file: Option<&str>) -> AppState {
    let mut cfg = Config::default();
    cfg.storage.url = url.to_owned();
    cfg.keys.dir = dir.join(name).join("keys");
    cfg.broker.name = name.to_owned();
    cfg.policy.poll_interval_ms = 100;
    cfg.policy.file = match file {
        Some(text) => {
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        }
        None => std::path::PathBuf::new(),
    };
    writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
        .await
        .unwrap()
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_through_the_store_reaches_every_broker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let storage = tokio::task::spawn_blocking(move || Backend::Postgres.storage(&path, "writ"))
        .await
        .unwrap()
        .unwrap();
    let url = storage.url().to_owned();
    // The first broker imports its file; the second has none and serves
    // the stored active version.
    let first = broker(dir.path(), "first", &url, Some(POLICY_A)).await;
    let second = broker(dir.path(), "second", &url, None).await;
    assert_eq!(first.policy.current().id, "fleet-a");
    assert_eq!(second.policy.current().id, "fleet-a");
    assert_eq!(second.policy.current().hash, first.policy.current().hash);

    let store = StoreArgs {
        db: Some(url.clone()),
        config: None,
        signing_keys: Vec::new(),
    };
    // An invalid policy is refused with its typed error; nothing changes.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "id = \"\"\n").unwrap();
    let err = run_on_store(PolicyCommand::Activate {
        file: bad,
        signature: None,
        store: store.clone(),
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PolicyCliError::Activate(writ_broker::audit::policy::ActivateError::Invalid(_))
        ),
        "{err}"
    );
    assert_eq!(first.store.policy_history(10).await.unwrap().len(), 1);

    // Activated offline, through the store: both brokers follow.
    let next = dir.path().join("next.toml");
    std::fs::write(&next, POLICY_B).unwrap();
    run_on_store(PolicyCommand::Activate {
        file: next,
        signature: None,
        store: store.clone(),
    })
    .await
    .unwrap();
    until("the second broker to follow", || {
        second.policy.current().id == "fleet-b"
    })
    .await;
    until("the first broker to follow", || {
        first.policy.current().id == "fleet-b"
    })
    .await;
    let history = second.store.policy_history(10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.policy_id.as_str())
            .collect::<Vec<_>>(),
        vec!["fleet-b", "fleet-a"]
    );
    assert_eq!(
        history[0].previous_hash.as_deref(),
        Some(history[1].hash.as_str())
    );

    // A shadow candidate reaches every broker too, and clears.
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(&candidate, POLICY_A).unwrap();
    run_on_store(PolicyCommand::Shadow {
        file: Some(candidate),
        clear: false,
        signature: None,
        store: store.clone(),
    })
    .await
    .unwrap();
    until("the shadow to load", || {
        second.policy.shadow().is_some_and(|p| p.id == "fleet-a")
    })
    .await;
    run_on_store(PolicyCommand::Shadow {
        file: None,
        clear: true,
        signature: None,
        store,
    })
    .await
    .unwrap();
    until("the shadow to clear", || second.policy.shadow().is_none()).await;
    // The active policy never moved with the shadow.
    assert_eq!(second.policy.current().id, "fleet-b");
}
