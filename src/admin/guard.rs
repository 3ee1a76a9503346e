//! What keeps a web page from driving the admin API (issue 16): a browser lets any page send
//! a "simple" cross-origin request — a form POST, or `fetch` with `text/plain` — with the
//! user's loopback access and stored credentials, and a page on a name that merely resolves
//! to this machine (DNS rebinding) is not even cross-origin. So:
//!
//! - every request's `Host` must be an IP address, `localhost`, or a name in `admin.hosts`;
//! - a request that changes state (POST, PUT, PATCH, DELETE) must say `Content-Type:
//!   application/json` or carry an `X-Requested-With` header (neither can be sent cross-origin
//!   without a CORS preflight, which this API never grants), and its `Origin`, if any, must
//!   be this listener's own.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, ApiError};

/// Lets the request through, or answers 403/415 with why.
pub async fn same_site_only(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host {
        if !host_allowed(host, &state.config.admin.hosts) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host '{host}' is not a name of this admin listener; add it to admin.hosts in broker.toml"
                ),
            )
            .into_response();
        }
    }
    let changes_state = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes_state {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
            if Some(authority) != host {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("a request from another origin ({origin}) may not change the broker"),
                )
                .into_response();
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json && !headers.contains_key("x-requested-with") {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a request that changes the broker must be Content-Type: application/json \
                 (or carry an X-Requested-With header)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `host` (a `Host` header: a name or address, perhaps with a port) names this
/// listener: an IP address, `localhost`, or one of `configured`.
fn host_allowed(host: &str, configured: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<IpAddr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || configured.iter().any(|c| c.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_are_addresses_localhost_or_configured_names() {
        let configured = vec!["broker.example.com".to_owned()];
        for ok in [
            "127.0.0.1:8672",
            "10.1.2.3",
            "[::1]:8672",
            "localhost:8672",
            "LOCALHOST",
            "broker.example.com:8672",
        ] {
            assert!(host_allowed(ok, &configured), "{ok}");
        }
        for refused in ["evil.example.net:8672", "attacker.test", "[not-an-ip]:1"] {
            assert!(!host_allowed(refused, &configured), "{refused}");
        }
    }
}
