//! The tower [`Layer`] and the [`Gate`] service it wraps around a route.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, Request, Response};
use tower::{Layer, Service};
use verifier_lib::api::governance::POP_HEADER;

use crate::state::{GateDenial, GateState};

/// The tower layer.
#[derive(Debug, Clone)]
pub struct GateLayer {
    state: Arc<GateState>,
}

impl GateLayer {
    pub fn new(state: Arc<GateState>) -> Self {
        GateLayer { state }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The gate service around `S`.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    state: Arc<GateState>,
}

impl<S> Service<Request<Body>> for Gate<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let max = state.config().max_body_bytes;
            let bytes = match axum::body::to_bytes(body, max).await {
                Ok(b) => b,
                Err(_) => return Ok(GateDenial::BodyTooLarge { max }.into_response()),
            };
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            let path = parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |p| p.as_str());
            let verdict = state.admit(
                parts.method.as_str(),
                path,
                header(header::AUTHORIZATION.as_str()),
                header(POP_HEADER),
                &bytes,
            );
            match verdict {
                Ok(token) => {
                    parts.extensions.insert(token);
                    inner
                        .call(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(denial) => {
                    tracing::info!(code = denial.code(), reason = %denial, "gate refused request");
                    Ok(denial.into_response())
                }
            }
        })
    }
}
