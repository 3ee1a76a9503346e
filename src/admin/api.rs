//! The JSON endpoints of docs/admin-api.md.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::broker::{ConsumerInfo, GroupInfo, Queue, RouteError};
use crate::engine::SessionInfo;
use crate::transport::registry::{ConnectionEntry, Request};

use super::auth::Caller;
use super::rates::Rate;
use super::time::rfc3339_ms;
use super::{AdminState, ApiError};

/// How long a connection task may take to describe itself.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

type Shared = State<Arc<AdminState>>;

/// One queue in the list.
#[derive(Debug, Serialize)]
pub struct QueueView {
    name: String,
    durable: bool,
    dynamic: bool,
    ready: usize,
    unacked: usize,
    delayed: usize,
    consumers: usize,
    groups: usize,
    bytes: u64,
    enqueued: u64,
    delivered: u64,
    acked: u64,
    redelivered: u64,
    rejected: u64,
    expired: u64,
    dead_lettered: u64,
    overflowed: u64,
    timed_out: u64,
    cancelled: u64,
    rewound: u64,
    retained: usize,
    rates: Rate,
    settings: Value,
}

/// One queue with its consumers and groups.
#[derive(Debug, Serialize)]
pub struct QueueDetail {
    #[serde(flatten)]
    queue: QueueView,
    /// The earliest time a rewind can go back to (RFC 3339), or null when rewind is off.
    rewind_earliest: Option<String>,
    rewind_earliest_ms: Option<i64>,
    consumers_detail: Vec<ConsumerInfo>,
    groups_detail: Vec<GroupInfo>,
}

/// One connection in the list.
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    id: u64,
    peer: String,
    user: Option<String>,
    container_id: Option<String>,
    connected_at: String,
    sessions: usize,
    links: usize,
    bytes_in: u64,
    bytes_out: u64,
}

/// One connection with its sessions and links.
#[derive(Debug, Serialize)]
pub struct ConnectionDetail {
    #[serde(flatten)]
    connection: ConnectionView,
    sessions_detail: Vec<SessionInfo>,
}

/// `PUT /api/queues/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    #[serde(default)]
    settings: serde_json::Map<String, Value>,
}

/// `GET /api/overview`
pub async fn overview(State(state): Shared) -> Json<Value> {
    let queues = state.router.queues();
    let (mut ready, mut unacked, mut delayed) = (0, 0, 0);
    let (mut enqueued, mut delivered, mut acked) = (0, 0, 0);
    for q in &queues {
        let s = q.stats();
        ready += s.ready;
        unacked += s.unacked;
        delayed += s.delayed;
        enqueued += s.enqueued;
        delivered += s.delivered;
        acked += s.acked;
    }
    let connections = state.registry.all();
    let (sessions, links) = connections.iter().fold((0, 0), |(s, l), c| {
        let (cs, cl) = c.counts();
        (s + cs, l + cl)
    });
    let (bytes_in, bytes_out) = state.registry.total_bytes();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "connections": connections.len(),
        "sessions": sessions,
        "links": links,
        "queues": queues.len(),
        "messages": {"ready": ready, "unacked": unacked, "delayed": delayed},
        "totals": {"enqueued": enqueued, "delivered": delivered, "acked": acked},
        "rates": state.rates.total(),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "memory": memory_view(&state),
    }))
}

/// The memory account: bytes used, the watermarks (null when off), and whether producers are
/// held back.
fn memory_view(state: &AdminState) -> Value {
    let m = state.router.memory().status();
    let off_as_null = |w: u64| (w != u64::MAX).then_some(w);
    json!({
        "used": m.used,
        "high_watermark": off_as_null(m.high_watermark),
        "low_watermark": off_as_null(m.low_watermark),
        "alarm": m.alarm,
        "alarms": m.alarms,
        "store_full": m.store_full,
        "producers_blocked": m.producers_blocked,
    })
}

/// `GET /api/queues`
pub async fn queues(State(state): Shared) -> Json<Vec<QueueView>> {
    let mut queues = state.router.queues();
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    Json(queues.iter().map(|q| queue_view(&state, q)).collect())
}

/// `GET /api/queues/{name}`
pub async fn queue(State(state): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let queue = find_queue(&state, &name)?;
    Ok(Json(queue_detail(&state, &queue)).into_response())
}

/// `PUT /api/queues/{name}`
pub async fn declare(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.may_manage(&name)?;
    let declared = if body.iter().all(u8::is_ascii_whitespace) {
        Declare {
            settings: serde_json::Map::new(),
        }
    } else {
        serde_json::from_slice::<Declare>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid declare body: {e}")))?
    };
    let toml = settings_toml(&declared.settings)?;
    let settings = state
        .router
        .rules()
        .settings_with(&name, &toml, "the declared settings")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    match state.router.declare(&name, settings) {
        Ok((queue, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(queue_detail(&state, &queue))).into_response())
        }
        Err(e @ RouteError::Conflict(..)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ RouteError::Store(..)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// `DELETE /api/queues/{name}`
pub async fn delete_queue(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&name)?;
    let dropped = state.router.delete(&name).ok_or_else(|| no_queue(&name))?;
    Ok(Json(json!({ "deleted": name, "messages": dropped })))
}

/// `POST /api/queues/{name}/purge`
pub async fn purge(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&name)?;
    let purged = find_queue(&state, &name)?.purge();
    tracing::info!(queue = %name, purged, "queue purged by an administrator");
    Ok(Json(json!({ "purged": purged })))
}

/// `POST /api/queues/{name}/reset-groups`
pub async fn reset_groups(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&name)?;
    let reset = find_queue(&state, &name)?.reset_groups();
    Ok(Json(json!({ "reset": reset })))
}

/// `POST /api/tls/reload`: reads the TLS certificates and keys again. New connections use
/// them, open ones keep theirs; a file that cannot be used leaves the old configuration in
/// place and is named in the answer (409).
pub async fn reload_tls(State(state): Shared) -> Result<Json<Value>, ApiError> {
    if state.tls.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "TLS is not configured ([tls] or [admin] cert)",
        ));
    }
    for tls in &state.tls {
        tls.reload().map_err(|e| {
            tracing::warn!("TLS certificates not reloaded, the old ones stay in use: {e}");
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("not reloaded, the old certificates stay in use: {e}"),
            )
        })?;
    }
    tracing::info!("TLS certificates reloaded by an administrator");
    Ok(Json(json!({ "reloaded": state.tls.len() })))
}

/// `GET /api/connections`
pub async fn connections(State(state): Shared) -> Json<Vec<ConnectionView>> {
    Json(
        state
            .registry
            .all()
            .iter()
            .map(|c| connection_view(c))
            .collect(),
    )
}

/// `GET /api/connections/{id}`
pub async fn connection(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<ConnectionDetail>, ApiError> {
    let entry = find_connection(&state, &id)?;
    let (reply, answer) = oneshot::channel();
    entry.ask(Request::Describe(reply));
    let sessions = tokio::time::timeout(DESCRIBE_TIMEOUT, answer)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("connection {id} did not answer within {DESCRIBE_TIMEOUT:?}"),
            )
        })?
        // The task ended before it answered: the connection closed meanwhile.
        .map_err(|_| ApiError::not_found(format!("connection {id} has closed")))?;
    Ok(Json(ConnectionDetail {
        connection: connection_view(&entry),
        sessions_detail: sessions,
    }))
}

/// `DELETE /api/connections/{id}`
pub async fn close_connection(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = find_connection(&state, &id)?;
    tracing::info!(connection = entry.id, peer = %entry.peer, "closing connection on an administrator's request");
    entry.ask(Request::Close);
    Ok((StatusCode::ACCEPTED, Json(json!({ "closing": entry.id }))).into_response())
}

pub(super) fn find_queue(state: &AdminState, name: &str) -> Result<Arc<Queue>, ApiError> {
    state.router.get(name).ok_or_else(|| no_queue(name))
}

fn no_queue(name: &str) -> ApiError {
    ApiError::not_found(format!("no queue named '{name}'"))
}

fn find_connection(state: &AdminState, id: &str) -> Result<Arc<ConnectionEntry>, ApiError> {
    let number: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not a connection id (a number)")))?;
    state
        .registry
        .get(number)
        .ok_or_else(|| ApiError::not_found(format!("no open connection with id {number}")))
}

fn queue_view(state: &AdminState, queue: &Queue) -> QueueView {
    let s = queue.stats();
    QueueView {
        name: queue.name().to_owned(),
        durable: queue.settings().durable,
        dynamic: queue.is_dynamic(),
        ready: s.ready,
        unacked: s.unacked,
        delayed: s.delayed,
        consumers: s.consumers,
        groups: s.groups,
        bytes: s.ready_bytes,
        enqueued: s.enqueued,
        delivered: s.delivered,
        acked: s.acked,
        redelivered: s.returned,
        rejected: s.rejected,
        expired: s.expired,
        dead_lettered: s.dead_lettered,
        overflowed: s.overflowed,
        timed_out: s.timed_out,
        cancelled: s.cancelled,
        rewound: s.rewound,
        retained: s.retained,
        rates: state.rates.queue(queue.name()),
        settings: queue.settings().to_json(),
    }
}

fn queue_detail(state: &AdminState, queue: &Queue) -> QueueDetail {
    let earliest = queue.rewind_earliest();
    QueueDetail {
        queue: queue_view(state, queue),
        rewind_earliest: earliest.map(rfc3339_ms),
        rewind_earliest_ms: earliest,
        consumers_detail: queue.consumers(),
        groups_detail: queue.groups(),
    }
}

fn connection_view(entry: &ConnectionEntry) -> ConnectionView {
    let (sessions, links) = entry.counts();
    let (bytes_in, bytes_out) = entry.bytes();
    ConnectionView {
        id: entry.id,
        peer: entry.peer.to_string(),
        user: entry.user.clone(),
        container_id: entry.container_id().map(str::to_owned),
        connected_at: humantime::format_rfc3339_seconds(entry.connected_at).to_string(),
        sessions,
        links,
        bytes_in,
        bytes_out,
    }
}

/// Declared settings as the body of a `[queues."name"]` table, so they are checked exactly as
/// broker.toml is.
fn settings_toml(settings: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    let mut text = String::new();
    for (key, value) in settings {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(ApiError::bad_request(format!(
                "'{key}' is not a queue setting; see the queues keys in docs/admin-api.md"
            )));
        }
        let value = match value {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.to_string(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "{key}: {n} is not an integer"
                    )))
                }
            },
            Value::String(s) => toml::Value::String(s.clone()).to_string(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{key}: expected a string, number or boolean, found {other}"
                )))
            }
        };
        text.push_str(&format!("{key} = {value}\n"));
    }
    Ok(text)
}
