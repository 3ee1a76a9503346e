//! The admin API over blocking HTTP (`ureq`): requests, credentials, and what a failure says.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::Failure;

/// Where the admin API is when neither `--admin` nor `SLUICE_ADMIN` says.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:8672";

/// Limit on one request, so a hung broker does not hang the command.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Limit on an answer's body; far above what a broker with many thousand queues answers.
const BODY_LIMIT: u64 = 256 * 1024 * 1024;

/// An HTTP method; a PUT carries a JSON body, and so may a POST.
pub(super) enum Method {
    Get,
    Post,
    PostJson(String),
    Put(String),
    Delete,
}

/// An answer: successful from [`Client::call`], any status from [`Client::send`].
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: String,
}

impl Answer {
    pub(super) fn json(&self) -> Result<Value, Failure> {
        serde_json::from_str(&self.body)
            .map_err(|e| Failure::Failed(format!("the admin API answered with no JSON: {e}")))
    }

    /// What an error answer means: its status and the API's message.
    pub(super) fn failure(&self) -> Failure {
        Failure::Failed(self.error())
    }

    /// An error answer's status and the API's message, as `sluice ctl` prints them.
    pub(super) fn error(&self) -> String {
        format!("{}: {}", self.status, api_error(&self.body))
    }
}

/// The admin API of one broker.
pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Client {
    /// A client of the admin API at `admin`, else `SLUICE_ADMIN`, else [`DEFAULT_ADMIN`];
    /// with basic auth when a user and password are given (or in the environment).
    pub(super) fn new(
        admin: Option<&str>,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Client, Failure> {
        let admin = admin
            .map(str::to_owned)
            .or_else(|| env("SLUICE_ADMIN"))
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
        let base = base_url(&admin)?;
        let user = user.map(str::to_owned).or_else(|| env("SLUICE_ADMIN_USER"));
        let password = password
            .map(str::to_owned)
            .or_else(|| env("SLUICE_ADMIN_PASSWORD"));
        let authorization = match (user, password) {
            (Some(user), Some(password)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(Failure::Usage(
                    "--user needs --password (or SLUICE_ADMIN_PASSWORD)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "--password needs --user (or SLUICE_ADMIN_USER)".into(),
                ))
            }
        };
        let config = ureq::Agent::config_builder()
            // Error statuses carry the API's message: read them rather than fail on them.
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            // The admin API is a broker's own port, usually loopback: never send it (and the
            // credentials) through an HTTP_PROXY meant for the outside world.
            .proxy(None)
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base,
            authorization,
        })
    }

    /// Sends a request to `path`; a 2xx answer is Ok, anything else the API's error.
    pub(super) fn call(&self, method: Method, path: &str) -> Result<Answer, Failure> {
        let answer = self.send(method, path)?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        Err(answer.failure())
    }

    /// Sends a request to `path`; any answer is Ok, only a failure to get one is not.
    pub(super) fn send(&self, method: Method, path: &str) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let sent = match method {
            Method::Get => self.authorize(self.agent.get(&url)).call(),
            // The API refuses a state-changing request that does not say it is JSON or sent
            // by a program (admin/guard.rs).
            Method::Delete => self
                .authorize(self.agent.delete(&url))
                .header("x-requested-with", "sluice-ctl")
                .call(),
            Method::Post => self
                .authorize(self.agent.post(&url))
                .content_type("application/json")
                .send_empty(),
            Method::PostJson(body) => self
                .authorize(self.agent.post(&url))
                .content_type("application/json")
                .send(body),
            Method::Put(body) => self
                .authorize(self.agent.put(&url))
                .content_type("application/json")
                .send(body),
        };
        let mut response = sent.map_err(|e| self.transport_failure(e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| self.transport_failure(e))?;
        Ok(Answer { status, body })
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    }

    fn transport_failure(&self, error: ureq::Error) -> Failure {
        let reason = match error {
            ureq::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => "timed out".to_owned(),
                _ => e.to_string(),
            },
            ureq::Error::Timeout(_) => {
                return Failure::Failed(format!(
                    "no answer from the admin API at {} within {} s",
                    self.base,
                    TIMEOUT.as_secs()
                ))
            }
            ureq::Error::HostNotFound => "host not found".to_owned(),
            ureq::Error::ConnectionFailed => "connection failed".to_owned(),
            ureq::Error::BadUri(e) => {
                return Failure::Usage(format!("bad admin URL {}: {e}", self.base))
            }
            other => {
                return Failure::Failed(format!("admin API at {}: {other}", self.base));
            }
        };
        Failure::Failed(format!(
            "cannot reach the admin API at {} ({reason}); is the broker running, and is [admin] \
             enabled?",
            self.base
        ))
    }
}

/// The message of an error answer: its `error` field, else its text.
fn api_error(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
    {
        Some(message) => message.to_owned(),
        None if body.trim().is_empty() => "(no message)".to_owned(),
        None => body.trim().chars().take(500).collect(),
    }
}

/// The admin URL without a trailing slash; `host:port` alone means `http://host:port`.
fn base_url(admin: &str) -> Result<String, Failure> {
    let admin = admin.trim().trim_end_matches('/');
    if admin.starts_with("https://") {
        return Err(Failure::Usage(format!(
            "{admin}: https is not supported; the admin API serves plain HTTP"
        )));
    }
    if admin.is_empty() {
        return Err(Failure::Usage("the admin URL is empty".into()));
    }
    if admin.contains("://") {
        if !admin.starts_with("http://") {
            return Err(Failure::Usage(format!(
                "{admin}: expected an http:// URL such as {DEFAULT_ADMIN}"
            )));
        }
        return Ok(admin.to_owned());
    }
    Ok(format!("http://{admin}"))
}

/// An environment variable, if set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_normalised() {
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(base_url("127.0.0.1:8672").unwrap(), "http://127.0.0.1:8672");
        assert!(matches!(base_url("https://h"), Err(Failure::Usage(_))));
        assert!(matches!(base_url("ftp://h"), Err(Failure::Usage(_))));
        assert!(matches!(base_url(""), Err(Failure::Usage(_))));
    }

    #[test]
    fn api_errors_show_their_message() {
        assert_eq!(
            api_error(r#"{"error": "no queue named 'x'"}"#),
            "no queue named 'x'"
        );
        assert_eq!(api_error("Bad Gateway\n"), "Bad Gateway");
        assert_eq!(api_error(""), "(no message)");
    }
}
