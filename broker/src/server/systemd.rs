//! systemd's service notification protocol (`sd_notify`), for
//! `Type=notify` units: `READY=1` once the listener is bound and the state
//! (store, keys, policy, audit log) is loaded, `WATCHDOG=1` at half the
//! unit's `WatchdogSec=` while the runtime answers, and `STOPPING=1` at
//! shutdown.
//!
//! The protocol is one datagram per message to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without
//! that variable (not started by systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    /// A socket file.
    Path(PathBuf),
    /// A socket in the abstract namespace (`@name`), without the `@`.
    Abstract(Vec<u8>),
}

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {value:?}: expected an absolute path or @name")]
    Address { value: String },
    #[error("sending {message:?} to NOTIFY_SOCKET: {source}")]
    Send {
        message: &'static str,
        source: std::io::Error,
    },
}

impl NotifyAddress {
    /// The address in `NOTIFY_SOCKET`'s value.
    pub fn parse(value: &str) -> Result<Self, NotifyError> {
        if let Some(name) = value.strip_prefix('@') {
            if !name.is_empty() {
                return Ok(NotifyAddress::Abstract(name.as_bytes().to_vec()));
            }
        } else if value.starts_with('/') {
            return Ok(NotifyAddress::Path(PathBuf::from(value)));
        }
        Err(NotifyError::Address {
            value: value.to_owned(),
        })
    }
}

/// The service manager's notification socket, and its watchdog interval.
#[derive(Debug, Clone)]
pub struct Notifier {
    address: Option<NotifyAddress>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From this process's environment: `NOTIFY_SOCKET`, and
    /// `WATCHDOG_USEC` when `WATCHDOG_PID` is unset or names this process.
    /// An unusable `NOTIFY_SOCKET` is logged and notifications are off (the
    /// unit's start then times out, which systemd reports).
    pub fn from_env() -> Self {
        let address = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|v| match NotifyAddress::parse(&v) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "systemd notifications are off");
                    None
                }
            });
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier { address, watchdog }
    }

    /// A notifier for `address` (tests, and callers that read the
    /// environment themselves).
    pub fn new(address: Option<NotifyAddress>, watchdog: Option<Duration>) -> Self {
        Notifier { address, watchdog }
    }

    /// How often to send `WATCHDOG=1`: half the unit's watchdog timeout.
    pub fn watchdog_ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Send one message; `Ok(false)` when there is no socket to send to.
    pub fn notify(&self, message: &'static str) -> Result<bool, NotifyError> {
        let Some(address) = &self.address else {
            return Ok(false);
        };
        let send = |source| NotifyError::Send { message, source };
        let socket = UnixDatagram::unbound().map_err(send)?;
        match address {
            NotifyAddress::Path(path) => socket.send_to(message.as_bytes(), path),
            NotifyAddress::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr =
                    std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(send)?;
                socket.send_to_addr(message.as_bytes(), &addr)
            }
        }
        .map_err(send)?;
        Ok(true)
    }

    /// [`Self::notify`], logging a failure instead of returning it: a lost
    /// notification shows as a start timeout or a watchdog restart.
    pub fn notify_logged(&self, message: &'static str) {
        if let Err(e) = self.notify(message) {
            tracing::warn!(error = %e, "systemd notification");
        }
    }

    /// Ping the watchdog from the runtime every half timeout, until the
    /// returned task is aborted; `None` without a watchdog. The ping shows
    /// that the runtime schedules tasks: a wedged runtime misses it and
    /// systemd restarts the broker.
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.watchdog_ping_interval()?;
        let notifier = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                notifier.notify_logged("WATCHDOG=1");
            }
        }))
    }
}

/// The watchdog timeout from `WATCHDOG_USEC`, when it applies to `pid`.
fn watchdog_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if let Some(p) = watchdog_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert_eq!(
            NotifyAddress::parse("/run/systemd/notify").unwrap(),
            NotifyAddress::Path(PathBuf::from("/run/systemd/notify"))
        );
        assert_eq!(
            NotifyAddress::parse("@writ/notify").unwrap(),
            NotifyAddress::Abstract(b"writ/notify".to_vec())
        );
        for bad in ["", "@", "relative/notify", "vsock:2:9999"] {
            assert!(
                matches!(
                    NotifyAddress::parse(bad),
                    Err(NotifyError::Address { ref value }) if value == bad
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn watchdog_applies_to_this_process_only() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), second);
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), second);
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        let n = Notifier::new(None, second);
        assert_eq!(n.watchdog_ping_interval(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(NotifyAddress::Path(path)), None);
        assert!(n.notify("READY=1").unwrap());
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("writ-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(NotifyAddress::Abstract(name.into_bytes())), None);
        assert!(n.notify("STOPPING=1").unwrap());
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_a_gone_socket_is_an_error() {
        assert!(!Notifier::new(None, None).notify("READY=1").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(Some(NotifyAddress::Path(dir.path().join("absent"))), None);
        assert!(matches!(
            n.notify("READY=1"),
            Err(NotifyError::Send {
                message: "READY=1",
                ..
            })
        ));
    }
}
