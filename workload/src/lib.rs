//! # writ-workload
//!
//! What a workload (or the launcher that starts it) needs to use Writ
//! without re-implementing it:
//!
//! * [`protocol`] — the messages of the attester daemon's Unix socket
//!   (`writ-attester daemon`), documented in `docs/workload-socket.md`;
//! * [`socket`] — one request/answer exchange over that socket, refusing a
//!   socket served by anyone but root or the caller's own uid;
//! * [`proof`] — the `Authorization` and `Writ-PoP` headers a request
//!   through a Writ gate (crate `writ-gate`) carries.
//!
//! It links neither the TPM stack nor an HTTP client.
#![forbid(unsafe_code)]

pub mod proof;
pub mod protocol;
pub mod socket;

pub use proof::{pop_header, request_headers};
pub use protocol::{WorkloadRequest, WorkloadResponse, WorkloadToken};
pub use socket::{request, request_launch, WorkloadApiError};
