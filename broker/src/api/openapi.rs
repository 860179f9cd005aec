//! The OpenAPI 3.1 document of the `/v1` API, served at
//! `GET /v1/openapi.json`. It is built by the router itself
//! (`utoipa_axum::routes!` in [`super::app`]): a route exists in the router
//! if and only if its handler's `#[utoipa::path]` put it in the document.
//! What this module adds is the frame: title, the operator bearer scheme
//! and the error body every refusal uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};
use verifier_lib::api::{ErrorBody, ErrorDetail};

/// Name of the operator security scheme in the document.
pub const OPERATOR_SCHEME: &str = "operator";

/// The document's frame; paths and their schemas come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "writ-broker",
        description = "Writ's attestation broker. Errors carry a stable `error.code` (see docs/api.md). Binary fields are base64url without padding.",
    ),
    modifiers(&OperatorAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "enrollment", description = "TPM host enrollment (credential activation)"),
        (name = "attestation", description = "Challenges and TPM quote appraisal"),
        (name = "sev-snp", description = "SEV-SNP report appraisal"),
        (name = "tokens", description = "Execution tokens"),
        (name = "keys", description = "Token verification keys"),
        (name = "status", description = "The signed token status list"),
        (name = "audit", description = "The signed Merkle audit log"),
        (name = "operator", description = "Operator endpoints: `Authorization: Bearer <operator token>`"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Adds the `operator` bearer scheme (`[operators]` tokens).
#[derive(Debug)]
struct OperatorAuth;

impl Modify for OperatorAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            OPERATOR_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token configured in [operators] (its SHA-256 is stored)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The refusals every endpoint may answer, with the error body.
#[derive(Debug)]
pub struct ApiErrors;

impl utoipa::IntoResponses for ApiErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let body = || {
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            ))))
        };
        BTreeMap::from([
            (
                "4XX".to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description("Refused; `error.code` says why (docs/api.md)")
                        .content("application/json", body())
                        .build(),
                ),
            ),
            (
                "5XX".to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description("Server-side failure; the client learns only `error.code`")
                        .content("application/json", body())
                        .build(),
                ),
            ),
        ])
    }
}

/// The rendered document, handed to [`document`] by the router.
#[derive(Debug, Clone)]
pub struct Rendered(pub Arc<String>);

impl Rendered {
    pub fn of(doc: &Document) -> Self {
        // Serialising a document built from static parts cannot fail; an
        // empty body would show it.
        Rendered(Arc::new(doc.to_pretty_json().unwrap_or_default()))
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json"))
)]
pub async fn document(Extension(doc): Extension<Rendered>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_ref().clone(),
    )
}
