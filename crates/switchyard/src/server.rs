//! The one HTTP listener: HTTP sources, health, metrics and the admin API.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_core::config::{Config, Secret};
use switchyard_store::{DeadQuery, DeliveryStatus, EventQuery, Store};
use uuid::Uuid;

use crate::dispatch::Dispatcher;
use crate::explain::Explanation;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::replay;
use crate::runtime::EngineRuntime;
use crate::sources::ListenerContext;
use crate::sources::http::Rejection;

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    ingest: Ingest,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
}

/// Builds the listener's routes for `config`.
pub fn router(config: &Config, runtime: &EngineRuntime) -> Router {
    let state = AppState {
        config: Arc::new(config.clone()),
        store: runtime.store.clone(),
        ingest: runtime.ingest.clone(),
        dispatcher: runtime.dispatcher.clone(),
        metrics: runtime.metrics.clone(),
    };
    let listener = ListenerContext {
        ingest: runtime.ingest.clone(),
        metrics: runtime.metrics.clone(),
        body_timeout: config.http.body_timeout.get(),
    };
    let mut sources = Router::new();
    for source in &runtime.sources {
        if let Some(routes) = source.clone().routes(&listener) {
            sources = sources.merge(routes);
        }
    }
    let api = Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/events/{id}/explain", get(explain_event))
        .route("/events/{id}/replay", post(replay_event))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/dead-letters", get(list_dead))
        .route("/dead-letters/{id}/replay", post(replay_dead))
        .route("/sources", get(list_sources))
        .layer(middleware::from_fn_with_state(
            config.http.admin_token.clone(),
            protect_admin,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .with_state(state)
        .merge(sources)
}

/// How long `/readyz` waits for the store to commit its probe before answering 503.
const READY_WITHIN: Duration = Duration::from_secs(2);

/// Ready means the store can commit a write now: it commits a one-row probe, and
/// answers 503 when that fails or takes longer than [`READY_WITHIN`].
async fn ready(State(state): State<AppState>) -> Response {
    let unready =
        |reason: String| Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    match tokio::time::timeout(READY_WITHIN, state.store.probe_write()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => unready(format!("the store cannot commit: {error}")),
        Err(_) => unready(format!(
            "the store did not commit a probe within {}",
            switchyard_core::HumanDuration(READY_WITHIN)
        )),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let stats = match state.store.stats().await {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::warn!(%error, "queue figures unavailable for /metrics");
            None
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state
            .metrics
            .render(stats.as_ref(), &state.dispatcher.occupancy()),
    )
        .into_response()
}

/// Guards `/api/`: see [`admin_access`].
async fn protect_admin(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    match admin_access(token.as_ref(), peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// Whether a request may use the admin API. Browsers must not reach it from another
/// site: a request whose `Origin` is not this server's own (`http` or `https` with the
/// request's `Host`) is refused with 403, whatever its credentials. With a token, the
/// request needs `Authorization: Bearer <token>` (the scheme in any case), else 401.
/// Without one, both the peer and the `Host` it named must be loopback, else 403:
/// that keeps out other machines and, through the `Host`, DNS rebinding. An unknown
/// peer counts as not loopback.
fn admin_access(
    token: Option<&Secret>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN)
        && !host.is_some_and(|host| is_same_origin(origin.as_bytes(), host))
    {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "the admin API refuses requests from another origin",
        ));
    }
    match token {
        Some(token) if bears(headers, token) => Ok(()),
        Some(_) => Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "the admin API needs Authorization: Bearer <admin_token>",
        )),
        None if !peer.is_some_and(|peer| peer.ip().is_loopback()) => Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "without http.admin_token the admin API answers only clients on this machine",
        )),
        None if !host.is_some_and(is_loopback_host) => Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "without http.admin_token the admin API needs a loopback Host \
             (localhost, *.localhost, 127.0.0.1 or [::1])",
        )),
        None => Ok(()),
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>`. Comparing digests keeps
/// the comparison constant-time in the token's length too.
fn bears(headers: &HeaderMap, token: &Secret) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default();
    let (given, expected) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.expose().as_bytes()),
    );
    bool::from(given.as_slice().ct_eq(expected.as_slice()))
}

/// The credentials of an `Authorization` value in the bearer scheme, whose name is
/// case-insensitive (RFC 7235); `None` for any other scheme.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// Whether an `Origin` value names this server as the client reached it: scheme
/// `http` or `https` (behind a TLS-terminating proxy) and the authority in `host`.
/// `null` and anything else are foreign.
fn is_same_origin(origin: &[u8], host: &str) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && origin[scheme.len()..].eq_ignore_ascii_case(host)
    })
}

/// Whether a `Host` value, with or without a port, names this machine's loopback:
/// `localhost` or a name under `.localhost` (RFC 6761 keeps them there), an IPv4
/// address in 127.0.0.0/8, or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    let is_port = |port: &str| port.parse::<u16>().is_ok();
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split_once(']').is_some_and(|(ip, rest)| {
            (rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port))
                && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
        });
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return ip.is_loopback();
    }
    let name = name.to_ascii_lowercase();
    name == "localhost" || (name.len() > ".localhost".len() && name.ends_with(".localhost"))
}

type ApiResult = Result<Response, Rejection>;

fn store_error(error: switchyard_store::StoreError) -> Rejection {
    Rejection::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    source: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    trigger: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_events(
    State(state): State<AppState>,
    Query(params): Query<EventsParams>,
) -> ApiResult {
    let status = params
        .status
        .map(|s| {
            DeliveryStatus::parse(&s)
                .ok_or_else(|| Rejection::bad_request(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let query = EventQuery {
        source: params.source,
        ty: params.ty,
        trigger: params.trigger,
        status,
        limit: params.limit.unwrap_or(50).min(1000),
        ..EventQuery::default()
    };
    let events = state.store.list_events(&query).await.map_err(store_error)?;
    Ok(Json(events).into_response())
}

async fn get_event(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult {
    match state.store.get_event(id).await.map_err(store_error)? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no event {id}"),
        )),
    }
}

/// `GET /api/events/{id}/explain`: the routing explanation, by the running
/// configuration.
async fn explain_event(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult {
    match state.store.get_event(id).await.map_err(store_error)? {
        Some(detail) => {
            Ok(Json(Explanation::new(state.ingest.router(), &detail.event)).into_response())
        }
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no event {id}"),
        )),
    }
}

/// `GET /api/sources`: every source with its state, as `switchyard sources --json`.
async fn list_sources(State(state): State<AppState>) -> ApiResult {
    let states = crate::sources::states(&state.config, &*state.store)
        .await
        .map_err(store_error)?;
    Ok(Json(states).into_response())
}

async fn get_delivery(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult {
    match state.store.get_delivery(id).await.map_err(store_error)? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no delivery {id}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayParams {
    trigger: Option<String>,
}

async fn replay_event(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(params): Query<ReplayParams>,
) -> ApiResult {
    let Some(detail) = state.store.get_event(id).await.map_err(store_error)? else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no event {id}"),
        ));
    };
    let created = replay::replay_event(
        &*state.store,
        state.ingest.router(),
        &detail.event,
        params.trigger.as_deref(),
    )
    .await
    .map_err(store_error)?;
    if created.is_empty() {
        return Err(Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no trigger of this event's source matches",
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveries": created }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadParams {
    trigger: Option<String>,
    limit: Option<u32>,
}

async fn list_dead(State(state): State<AppState>, Query(params): Query<DeadParams>) -> ApiResult {
    let query = DeadQuery {
        trigger: params.trigger,
        limit: params.limit.unwrap_or(50).min(1000),
        ..DeadQuery::default()
    };
    Ok(Json(state.store.list_dead(&query).await.map_err(store_error)?).into_response())
}

async fn replay_dead(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult {
    let created = state.store.replay_dead(&[id]).await.map_err(store_error)?;
    if created.is_empty() {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("delivery {id} is not a dead letter"),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveries": created }))).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn status(result: Result<(), Rejection>) -> Option<StatusCode> {
        result.err().map(|rejection| rejection.status)
    }

    #[test]
    fn loopback_hosts_with_or_without_a_port() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "console.localhost:1",
            "127.0.0.1",
            "127.8.9.10:65535",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            ".localhost",
            "notlocalhost",
            "10.0.0.1:8080",
            "[::2]:8080",
            "[::1]x",
            "localhost:http",
            "localhost:70000",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn same_origin_is_the_scheme_and_the_host() {
        assert!(is_same_origin(b"http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(is_same_origin(
            b"HTTPS://Switchyard.Example",
            "switchyard.example"
        ));
        assert!(!is_same_origin(b"http://evil.example", "127.0.0.1:8080"));
        assert!(!is_same_origin(b"http://127.0.0.1:9090", "127.0.0.1:8080"));
        assert!(!is_same_origin(b"null", "127.0.0.1:8080"));
        assert!(!is_same_origin(b"ftp://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!is_same_origin(b"http://127.0.0.1:8080/", "127.0.0.1:8080"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("BEARER  t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn without_a_token_only_loopback_peers_and_hosts_pass() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
        let remote = Some(SocketAddr::from(([192, 0, 2, 7], 40000)));
        let loopback_host = headers(&[(header::HOST, "localhost:8080")]);
        assert_eq!(status(admin_access(None, local, &loopback_host)), None);
        assert_eq!(
            status(admin_access(None, remote, &loopback_host)),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(admin_access(None, None, &loopback_host)),
            Some(StatusCode::FORBIDDEN),
            "an unknown peer is not loopback"
        );
        let foreign_host = headers(&[(header::HOST, "evil.example:8080")]);
        assert_eq!(
            status(admin_access(None, local, &foreign_host)),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(admin_access(None, local, &HeaderMap::new())),
            Some(StatusCode::FORBIDDEN),
            "no Host is not a loopback Host"
        );
    }

    #[test]
    fn a_token_admits_any_peer_and_host_but_not_a_foreign_origin() {
        let token = Secret::new("t0ken");
        let remote = Some(SocketAddr::from(([192, 0, 2, 7], 40000)));
        let authorized = headers(&[
            (header::HOST, "switchyard.example"),
            (header::AUTHORIZATION, "bearer t0ken"),
        ]);
        assert_eq!(
            status(admin_access(Some(&token), remote, &authorized)),
            None
        );
        let wrong = headers(&[
            (header::HOST, "switchyard.example"),
            (header::AUTHORIZATION, "Bearer t0ken2"),
        ]);
        assert_eq!(
            status(admin_access(Some(&token), remote, &wrong)),
            Some(StatusCode::UNAUTHORIZED)
        );
        let cross_site = headers(&[
            (header::HOST, "switchyard.example"),
            (header::AUTHORIZATION, "Bearer t0ken"),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert_eq!(
            status(admin_access(Some(&token), remote, &cross_site)),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
