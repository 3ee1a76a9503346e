//! Who may use the admin listener: with users configured, HTTP basic auth of a user with the
//! `admin` role; with none, loopback peers only, so an admin port opened to the network is
//! never open by accident.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{AdminState, ApiError};
use crate::config::{find_user, has_hashed_passwords, Action, Permissions};

/// The roles that may read the admin API (and metrics and the console): `admin` (everything),
/// `management` (queues, exchanges, connections; there is no user management over the API
/// yet, so today it can do what admin can), `monitoring` (read-only), as RabbitMQ names them.
const READ_ROLES: &[&str] = &["admin", "management", "monitoring"];
/// The roles that may change the broker through it.
const WRITE_ROLES: &[&str] = &["admin", "management"];

/// Lets the request through, or answers 401/403.
pub async fn require_admin(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.config.users.is_empty() {
        if peer.ip().is_loopback() {
            request.extensions_mut().insert(Caller::default());
            return next.run(request).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin API serves only loopback peers while no users are configured; \
             add a [[users]] entry with roles = [\"admin\"]",
        )
        .into_response();
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let Some((name, password)) = credentials else {
        return challenge("this API needs HTTP basic auth of a user with the admin role");
    };
    // A source or user name that failed too often is refused without a look at the password.
    let now = std::time::Instant::now();
    if !state.throttle.allows(peer.ip(), Some(&name), now) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address or for this user name; try again later",
        )
        .into_response();
    }
    let tried = name.clone();
    // Checking a hashed password takes milliseconds of CPU: off the async threads.
    let users = state.config.users.clone();
    let found = if has_hashed_passwords(&users) {
        tokio::task::spawn_blocking(move || find_user(&users, &name, &password).cloned())
            .await
            .ok()
            .flatten()
    } else {
        find_user(&users, &name, &password).cloned()
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let allowed: &[&str] = if reads { READ_ROLES } else { WRITE_ROLES };
    match found {
        None => {
            if state.throttle.failed(peer.ip(), Some(&tried), now) {
                tracing::warn!(%peer, user = %crate::logging::PeerText(&tried), "admin API login failed: wrong user name or password (more failures are summarised, a line a minute)");
            }
            challenge("wrong user name or password")
        }
        Some(u) if !u.roles.iter().any(|r| allowed.contains(&r.as_str())) => ApiError::new(
            StatusCode::FORBIDDEN,
            if reads {
                format!(
                    "user '{}' has none of the roles admin, management, monitoring",
                    u.name
                )
            } else {
                format!(
                    "user '{}' may not change the broker: that needs the admin or management role",
                    u.name
                )
            },
        )
        .into_response(),
        Some(u) => {
            request.extensions_mut().insert(Caller {
                name: Some(u.name.clone()),
                permissions: u.permissions.map(Arc::new),
            });
            next.run(request).await
        }
    }
}

/// Who is calling, for the handlers that create, change or delete a node: a user with
/// permissions needs `manage` on its name (the same permission as creating it by attach).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    name: Option<String>,
    permissions: Option<Arc<Permissions>>,
}

impl Caller {
    /// Refuses (403) unless the caller may manage the node called `name`.
    pub fn may_manage(&self, name: &str) -> Result<(), ApiError> {
        match &self.permissions {
            Some(p) if !p.allows(Action::Manage, name) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "user '{}' may not create, change or delete '{name}': no \"manage\" \
                     permission for that address",
                    self.name.as_deref().unwrap_or("")
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn challenge(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sluice\""),
    );
    response
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:s3:cret")
        );
        assert_eq!(
            basic_credentials(&value),
            Some(("ops".into(), "s3:cret".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
