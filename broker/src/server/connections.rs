//! The accept loop: every connection, plain or TLS, gets a slot out of
//! `limits.max_connections` (beyond it, it is closed at once), a bounded TLS
//! handshake and header read (`limits.header_read_timeout_secs`), and the
//! peer address the router's rate limits key on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::LimitsConfig;

/// How long open connections may finish their requests after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown` completes, over TLS when
/// `tls` is given, within `limits`.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: &LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.max_connections, "connection refused: at capacity");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            builder: builder.clone(),
            app: app.clone(),
            peer,
            header_timeout,
            graceful: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => conn.run(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => conn.run(tls_stream).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the shutdown grace period; closing them");
    }
}

struct Conn {
    builder: Builder<TokioExecutor>,
    app: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    graceful: hyper_util::server::graceful::Watcher,
}

impl Conn {
    async fn run<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            builder,
            app,
            peer,
            header_timeout,
            graceful,
        } = self;
        // Set on the first request: until then the connection has no header
        // timer (HTTP/1 vs HTTP/2 is still being sniffed, or an HTTP/2
        // client opened no stream), so it gets one here.
        let started = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&started);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            seen.store(true, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned(),
        );
        let first_request = async {
            tokio::time::sleep(header_timeout).await;
            if started.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = conn => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = first_request => tracing::debug!(%peer, "no request within the header timeout; closed"),
        }
    }
}
