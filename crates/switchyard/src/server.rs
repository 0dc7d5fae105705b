//! The one HTTP listener: HTTP sources, health, metrics and the admin API.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
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
use crate::engine::Parts;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::replay;
use crate::sources::http::{self as http_source, Rejection, SourceState};

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    ingest: Ingest,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
}

/// Builds the listener's routes for `config`.
pub fn router(config: &Config, parts: &Parts) -> Router {
    let state = AppState {
        store: parts.store.clone(),
        ingest: parts.ingest.clone(),
        dispatcher: parts.dispatcher.clone(),
        metrics: parts.metrics.clone(),
    };
    let mut app = Router::new();
    for source in &parts.http_sources {
        let source_state = SourceState {
            source: source.clone(),
            ingest: parts.ingest.clone(),
            metrics: parts.metrics.clone(),
        };
        app = app.route(
            &source.config.path,
            post(http_source::accept)
                .put(http_source::accept)
                .with_state(source_state),
        );
    }
    let api = Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/events/{id}/replay", post(replay_event))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/dead-letters", get(list_dead))
        .route("/dead-letters/{id}/replay", post(replay_dead))
        .layer(middleware::from_fn_with_state(
            config.http.admin_token.clone(),
            require_token,
        ));
    app.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {error}"),
        )
        .into_response(),
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

async fn require_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Comparing digests keeps the comparison constant-time in the token's length too.
        let (given, expected) = (
            Sha256::digest(given.as_bytes()),
            Sha256::digest(token.expose().as_bytes()),
        );
        if !bool::from(given.as_slice().ct_eq(expected.as_slice())) {
            return Rejection::new(
                StatusCode::UNAUTHORIZED,
                "the admin API needs Authorization: Bearer <admin_token>",
            )
            .into_response();
        }
    }
    next.run(request).await
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
