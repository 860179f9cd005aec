//! # writ-gate
//!
//! The relying-party gate: a tower [`Layer`](tower::Layer) for axum services
//! that admits a request only when it carries a valid, unrevoked, key-bound
//! Writ token and a fresh proof of possession of that key.
//!
//! Each request must carry `Authorization: Writ <b64url token>` and
//! `Writ-PoP: <b64url proof>` (see `verifier_lib::pop`). The gate checks, in
//! order: presence, the token (signature, issuer, audience, validity), the
//! revocation status (a cached signed status list whose signed `issued_at`
//! is at most `max_status_age_secs` old and whose signed `expires_at` has not
//! passed; a `304` or a stream keep-alive confirms nothing, being
//! unauthenticated; without such a list the request is denied unless the
//! token carries `writ.offline-ok` or its audience is allowed offline), then
//! the proof (signature by the token's `cnf` key, method, path, body digest,
//! token digest, time window, replay). A refusal is `401` (no or bad
//! credentials), `403` (wrong audience, revoked, status unavailable) or `413`
//! with `{"error": {"code", "message"}}`. An admitted request carries the
//! [`VerifiedToken`](verifier_lib::token::VerifiedToken) in its extensions.
//!
//! The gate's token expectations must name the relying party's audience:
//! [`GateState::new`] refuses `Audience::Any`.
//!
//! [`StatusFollower`] keeps the cache fresh by polling `/v1/status`
//! (ETag/304) and, optionally, following `/v1/status/stream` (SSE), from
//! a list of the fleet's brokers: it moves to the next one when a broker
//! fails (connection, timeout, 5xx) and never installs a list older than
//! the held one.
//! [`request_headers`] (from crate `writ-workload`) is the client side: the
//! two headers for a request.
//!
//! This crate deliberately does not depend on the attester: a service that
//! checks tokens links neither tss-esapi nor sev (`cargo tree -p writ-gate`
//! lists neither; the `no_platform_dependencies` test checks `Cargo.lock`).
#![forbid(unsafe_code)]

mod follower;
mod layer;
mod state;

pub use follower::{FollowMode, StatusFollower};
pub use layer::{Gate, GateLayer};
pub use state::{system_now, GateConfig, GateConfigError, GateDenial, GateState, Now};
/// The presenting side lives in crate `writ-workload`; re-exported for
/// relying parties that also call other gated services.
pub use writ_workload::request_headers;
