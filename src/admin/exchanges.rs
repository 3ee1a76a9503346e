//! The exchange and binding endpoints of docs/admin-api.md: list, declare and delete
//! exchanges; list, make and remove bindings.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::broker::routing::definitions::matcher_of;
use crate::broker::routing::exchange::{
    BindingInfo, Exchange, ExchangeKind, ExchangeSpec, Matcher, Unroutable,
};
use crate::broker::routing::exchanges::ExchangeError;
use crate::broker::RouteError;
use crate::config::ArgumentValue;

use super::auth::Caller;
use super::{AdminState, ApiError};

type Shared = State<Arc<AdminState>>;

/// One exchange.
#[derive(Debug, Serialize)]
pub struct ExchangeView {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    durable: bool,
    unroutable: &'static str,
    alternate_exchange: Option<String>,
    bindings: usize,
}

/// One binding.
#[derive(Debug, Serialize)]
pub struct BindingView {
    exchange: String,
    queue: String,
    key: String,
    arguments: serde_json::Map<String, Value>,
}

fn exchange_view(x: &Exchange) -> ExchangeView {
    let spec = x.spec();
    ExchangeView {
        name: spec.name.clone(),
        kind: spec.kind.name(),
        durable: spec.durable,
        unroutable: spec.unroutable.name(),
        alternate_exchange: spec.alternate_exchange.clone(),
        bindings: x.binding_count(),
    }
}

fn binding_view(b: &BindingInfo) -> BindingView {
    let mut arguments = serde_json::Map::new();
    if let Matcher::Headers(h) = &b.matcher {
        let x_match = if h.any { "any" } else { "all" };
        arguments.insert("x-match".into(), json!(x_match));
        for (name, value) in &h.values {
            arguments.insert(name.clone(), json!(value.to_text()));
        }
    }
    BindingView {
        exchange: b.exchange.clone(),
        queue: b.queue.clone(),
        key: b.matcher.key().to_owned(),
        arguments,
    }
}

/// `GET /api/exchanges`
pub async fn list(State(state): Shared) -> Json<Vec<ExchangeView>> {
    Json(
        state
            .router
            .exchanges()
            .all()
            .iter()
            .map(|x| exchange_view(x))
            .collect(),
    )
}

/// The body of `PUT /api/exchanges/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    durable: bool,
    #[serde(default)]
    unroutable: Option<String>,
    #[serde(default)]
    alternate_exchange: Option<String>,
}

fn yes() -> bool {
    true
}

/// `PUT /api/exchanges/{name}`: 201 created, 200 when an equal one exists, 409 when one with
/// other properties does.
pub async fn declare(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.may_manage(&name)?;
    let d: Declare = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid exchange declaration: {e}")))?;
    let kind = ExchangeKind::parse(&d.kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "type '{}': expected direct, fanout, topic or headers",
            d.kind
        ))
    })?;
    let unroutable = match d.unroutable.as_deref() {
        None => Unroutable::Release,
        Some(u) => Unroutable::parse(u).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unroutable '{u}': expected release, reject or drop"
            ))
        })?,
    };
    let spec = ExchangeSpec {
        name,
        kind,
        durable: d.durable,
        unroutable,
        alternate_exchange: d.alternate_exchange,
    };
    match state.router.declare_exchange(spec) {
        Ok((x, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(exchange_view(&x))).into_response())
        }
        Err(e) => Err(route_error(e)),
    }
}

/// `DELETE /api/exchanges/{name}`
pub async fn delete(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&name)?;
    match state.router.delete_exchange(&name) {
        Ok(true) => {
            tracing::info!(exchange = %name, "exchange deleted by an administrator");
            Ok(Json(json!({ "deleted": name })))
        }
        Ok(false) => Err(ApiError::not_found(format!("no exchange named '{name}'"))),
        Err(e) => Err(route_error(e)),
    }
}

/// `GET /api/bindings`
pub async fn bindings(State(state): Shared) -> Json<Vec<BindingView>> {
    let all = state.router.exchanges().all();
    Json(
        all.iter()
            .flat_map(|x| x.bindings())
            .map(|b| binding_view(&b))
            .collect(),
    )
}

/// The body of `POST /api/bindings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bind {
    exchange: String,
    queue: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

/// `POST /api/bindings`: 201 made, 200 when it exists; the queue must exist.
pub async fn bind(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: Bind = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid binding: {e}")))?;
    // A binding changes both ends: what the exchange routes, what the queue receives.
    caller.may_manage(&b.exchange)?;
    caller.may_manage(&b.queue)?;
    let exchange = state
        .router
        .exchanges()
        .get(&b.exchange)
        .ok_or_else(|| ApiError::not_found(format!("no exchange named '{}'", b.exchange)))?;
    let mut arguments = Vec::new();
    for (name, value) in &b.arguments {
        let value = match value {
            Value::String(s) => ArgumentValue::Str(s.clone()),
            Value::Bool(v) => ArgumentValue::Bool(*v),
            Value::Number(n) => ArgumentValue::Int(n.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("arguments.{name}: {n} is not an integer"))
            })?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "arguments.{name}: expected a string, integer or boolean, found {other}"
                )))
            }
        };
        arguments.push((name.clone(), value));
    }
    let matcher = matcher_of(exchange.spec().kind, &b.key, &arguments);
    match state.router.bind(&b.exchange, &b.queue, matcher) {
        Ok(created) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let view = json!({ "exchange": b.exchange, "queue": b.queue, "key": b.key });
            Ok((status, Json(view)).into_response())
        }
        Err(e) => Err(route_error(e)),
    }
}

/// The query of `DELETE /api/bindings`.
#[derive(Debug, Deserialize)]
pub struct Unbind {
    exchange: String,
    queue: String,
    #[serde(default)]
    key: String,
}

/// `DELETE /api/bindings?exchange=X&queue=Q&key=K`
pub async fn unbind(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Query(u): Query<Unbind>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&u.exchange)?;
    caller.may_manage(&u.queue)?;
    match state
        .router
        .unbind(&u.exchange, &u.queue, &u.key)
        .map_err(route_error)?
    {
        0 => Err(ApiError::not_found(format!(
            "no binding of queue '{}' to '{}' with key '{}'",
            u.queue, u.exchange, u.key
        ))),
        n => Ok(Json(json!({ "unbound": n }))),
    }
}

fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::Exchange(ExchangeError::Conflict(..)) | RouteError::Conflict(..) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        RouteError::NotFound(_) | RouteError::NoExchange(_) => ApiError::not_found(e.to_string()),
        RouteError::Exchange(ExchangeError::Reserved(_)) => {
            ApiError::new(StatusCode::FORBIDDEN, e.to_string())
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}
