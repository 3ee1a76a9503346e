//! The management listener: a JSON API, Prometheus metrics and the web console, over HTTP
//! (docs/admin-api.md).
//!
//! It reads the broker through the same handles the engine uses (the router's queues and the
//! connection registry) and never holds a queue's lock longer than one snapshot.

mod api;
mod auth;
mod console;
mod exchanges;
mod guard;
mod https;
mod metrics;
mod rates;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::transport::shutdown::Shutdown;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::serve::ListenerExt;
use axum::Json;
use tokio::net::TcpListener;

use crate::broker::Router;
use crate::config::Config;
use crate::transport::registry::Registry;
use crate::transport::tls::TlsContext;

pub use rates::Rates;

/// What every admin request can reach.
#[derive(Debug)]
pub struct AdminState {
    /// The queues.
    pub router: Arc<Router>,
    /// The open connections.
    pub registry: Arc<Registry>,
    /// The configuration: its users with the `admin` role may call the API.
    pub config: Config,
    /// When the broker started.
    pub started: Instant,
    /// Message rates, sampled in the background.
    pub rates: Arc<Rates>,
    /// The journal of durable queues, for its metrics.
    pub journal: Option<Arc<crate::store::Journal>>,
    /// Failed logins per source and user name, shared with the AMQP listener.
    pub throttle: Arc<crate::transport::login_throttle::LoginThrottle>,
    /// The TLS configurations in use (AMQP's, and the admin listener's own if it has one):
    /// reloaded by `POST /api/tls/reload`, counted in `/metrics`.
    pub tls: Vec<Arc<TlsContext>>,
}

/// Serves the admin API on `listener` (over TLS with `https`) until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    https: Option<Arc<TlsContext>>,
    state: Arc<AdminState>,
    mut shutdown: Shutdown,
) {
    let sampler = tokio::spawn(rates::sample(
        state.router.clone(),
        state.rates.clone(),
        shutdown.clone(),
    ));
    let app = axum::Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .route("/metrics", get(metrics::metrics))
        .route("/api/overview", get(api::overview))
        .route("/api/queues", get(api::queues))
        .route(
            "/api/queues/{name}",
            get(api::queue).put(api::declare).delete(api::delete_queue),
        )
        .route("/api/queues/{name}/purge", post(api::purge))
        .route("/api/queues/{name}/reset-groups", post(api::reset_groups))
        .route("/api/queues/{name}/rewind", post(time::rewind))
        .route("/api/queues/{name}/scheduled", get(time::scheduled))
        .route(
            "/api/queues/{name}/scheduled/{id}",
            delete(time::cancel_scheduled),
        )
        .route("/api/exchanges", get(exchanges::list))
        .route(
            "/api/exchanges/{name}",
            put(exchanges::declare).delete(exchanges::delete),
        )
        .route(
            "/api/bindings",
            get(exchanges::bindings)
                .post(exchanges::bind)
                .delete(exchanges::unbind),
        )
        .route("/api/tls/reload", post(api::reload_tls))
        .route("/api/connections", get(api::connections))
        .route(
            "/api/connections/{id}",
            get(api::connection).delete(api::close_connection),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/admin-api.md") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        // Outermost: a forged request is refused before it is authenticated.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::same_site_only,
        ))
        .with_state(state);
    let stopping = shutdown.clone();
    let stopped = async move {
        shutdown.stopping().await;
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = match https {
        Some(tls) => {
            // tap_io only for its ConnectInfo: axum gives the peer's SocketAddr to the handlers
            // of any tapped listener, and to no other listener but its own TcpListener.
            let listener = https::HttpsListener::new(listener, tls, stopping).tap_io(|_| {});
            axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!("admin listener failed: {e}");
    }
    sampler.abort();
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}
