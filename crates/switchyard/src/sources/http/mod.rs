//! The `http` source: requests on a path of the shared listener become events.
//!
//! Requests may be CloudEvents (binary or structured mode) or anything else (JSON,
//! text, bytes), which becomes an `http.request` event. A request is answered 202 with
//! the event id only after the event is committed.

mod request;
pub mod verify;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_core::Event;
use switchyard_core::HumanDuration;
use switchyard_core::config::{HttpSource, Verify};
use switchyard_store::{Appended, Store, StoreError};

use super::{BuildContext, ListenerContext, Source, SourceKind, StatusFields};
use crate::ingest::Ingest;
use crate::metrics::Metrics;

#[async_trait::async_trait]
impl SourceKind for HttpSource {
    async fn build(&self, name: &str, _context: &mut BuildContext) -> Option<Arc<dyn Source>> {
        Some(Arc::new(HttpSourceRuntime::new(
            name.to_owned(),
            self.clone(),
        )))
    }

    fn event_types(&self) -> Option<Vec<&'static str>> {
        None
    }

    /// An event from the source's `path`, of its configured `type`. `data` is used as
    /// it is: a request's body would be wrapped in `{"body": ...}`, so a test that
    /// filters on `data.body.*` passes data of that shape.
    fn synthetic_event(
        &self,
        name: &str,
        ty: Option<String>,
        data: serde_json::Value,
    ) -> Result<Event, String> {
        let ty = ty.unwrap_or_else(|| self.ty.clone());
        Ok(Event::new(name, self.path.clone(), ty).with_json(data))
    }

    /// Its path, its verification preset (`none` without one) and its event type.
    async fn status(&self, _name: &str, _store: &dyn Store) -> Result<StatusFields, StoreError> {
        let verify = self.verify.as_ref().map_or("none", Verify::kind);
        Ok(vec![
            ("path", json!(self.path)),
            ("verify", json!(verify)),
            ("type", json!(self.ty)),
        ])
    }
}

/// One configured HTTP source, ready to accept requests.
pub struct HttpSourceRuntime {
    pub name: String,
    pub config: HttpSource,
    /// Headers the verification preset reads; never copied into event data.
    secret_headers: Vec<String>,
}

impl HttpSourceRuntime {
    pub fn new(name: String, config: HttpSource) -> Self {
        let mut secret_headers = config
            .verify
            .as_ref()
            .map(verify::verification_headers)
            .unwrap_or_default();
        secret_headers.push("authorization".to_owned());
        secret_headers.push("cookie".to_owned());
        Self {
            name,
            config,
            secret_headers,
        }
    }
}

impl Source for HttpSourceRuntime {
    /// `POST` and `PUT` on its `path`.
    fn routes(self: Arc<Self>, listener: &ListenerContext) -> Option<axum::Router> {
        let path = self.config.path.clone();
        let state = SourceState {
            source: self,
            ingest: listener.ingest.clone(),
            metrics: listener.metrics.clone(),
            body_timeout: listener.body_timeout,
        };
        Some(axum::Router::new().route(
            &path,
            axum::routing::post(accept).put(accept).with_state(state),
        ))
    }
}

/// State shared by every HTTP source route.
#[derive(Clone)]
pub struct SourceState {
    pub source: Arc<HttpSourceRuntime>,
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// How long a request's whole body may take to arrive (`http.body_timeout`).
    pub body_timeout: Duration,
}

/// A rejection: a status and a plain-language reason, sent as `{"error": reason}`.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.reason }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The route handler for every HTTP source.
pub async fn accept(
    State(state): State<SourceState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match accept_inner(&state, method, uri, headers, body).await {
        Ok(appended) => {
            let (status, duplicate) = match appended {
                Appended::Created(_) => (StatusCode::ACCEPTED, false),
                Appended::Duplicate(_) => (StatusCode::OK, true),
            };
            (
                status,
                axum::Json(json!({ "id": appended.id(), "duplicate": duplicate })),
            )
                .into_response()
        }
        Err(rejection) => {
            state
                .metrics
                .request_rejected(&state.source.name, rejection.status.as_u16());
            tracing::debug!(source = %state.source.name, status = %rejection.status, reason = %rejection.reason, "request rejected");
            rejection.into_response()
        }
    }
}

async fn accept_inner(
    state: &SourceState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Appended, Rejection> {
    let source = &state.source;
    let limit = usize::try_from(source.config.body_limit.0).unwrap_or(usize::MAX);
    let body = read_body(body, limit, state.body_timeout).await?;
    if let Some(verify) = &source.config.verify {
        let now = chrono::Utc::now().timestamp();
        verify::verify(verify, &headers, &body, now).map_err(|error| match error {
            verify::VerifyError::InvalidSecret(_) => {
                tracing::error!(source = %source.name, %error, "the configured verification secret is unusable");
                Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "this source's verification is misconfigured")
            }
            error => Rejection::new(StatusCode::UNAUTHORIZED, format!("verification failed: {error}")),
        })?;
    }
    let event = request::to_event(source, &method, &uri, &headers, body)?;
    state.ingest.submit(event).await.map_err(|error| {
        if error.is_bad_input() {
            Rejection::bad_request(format!("not accepted: {error}"))
        } else {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not accepted, try again: {error}"),
            )
        }
    })
}

/// Collects a request body of at most `limit` bytes that must arrive `within` the
/// given time. Fails with 413 over the limit, 408 when the body is too slow, and 400
/// when it cannot be read (a malformed chunked encoding, or a client that left).
async fn read_body(body: Body, limit: usize, within: Duration) -> Result<Bytes, Rejection> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) if is_over_limit(&error) => Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than this source's limit of {limit} bytes"),
        )),
        Ok(Err(error)) => Err(Rejection::bad_request(format!(
            "the body could not be read: {error}"
        ))),
        Err(_elapsed) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} (http.body_timeout)",
                HumanDuration(within)
            ),
        )),
    }
}

/// Whether a body error, or one of its sources, is the length limit being exceeded.
fn is_over_limit(error: &axum::Error) -> bool {
    std::iter::successors(error.source(), |&cause| cause.source())
        .any(|cause| cause.is::<http_body_util::LengthLimitError>())
}
