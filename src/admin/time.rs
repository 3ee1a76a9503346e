//! The time endpoints of docs/admin-api.md: rewind a queue, list and cancel its scheduled
//! messages; and the RFC 3339 times they read and write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::broker::queue::rewind::RewindError;

use super::api::find_queue;
use super::auth::Caller;
use super::{AdminState, ApiError};

type Shared = State<Arc<AdminState>>;

/// Scheduled messages listed when the request names no `limit`.
const SCHEDULED_DEFAULT: usize = 100;

/// The most scheduled messages one request may list.
const SCHEDULED_MAX: usize = 10_000;

/// `POST /api/queues/{name}/rewind` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rewind {
    /// An RFC 3339 time, or seconds since the Unix epoch.
    to: Value,
}

/// One scheduled message in `GET /api/queues/{name}/scheduled`.
#[derive(Debug, Serialize)]
pub struct ScheduledView {
    id: u64,
    due: String,
    due_ms: i64,
    bytes: usize,
}

/// `POST /api/queues/{name}/rewind`
pub async fn rewind(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.may_manage(&name)?;
    let queue = find_queue(&state, &name)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "a rewind needs a body such as {\"to\": \"2026-11-23T17:20:00Z\"} or {\"to\": 1763918400}",
        ));
    }
    let asked = serde_json::from_slice::<Rewind>(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid rewind body: {e}")))?;
    let t_ms = rewind_time(&asked.to)?;
    match queue.rewind(t_ms) {
        Ok(n) => Ok(Json(json!({ "rewound": n })).into_response()),
        Err(RewindError::Off) => Err(ApiError::bad_request(format!(
            "rewind is off for queue '{name}': its rewind_seconds is 0, so it keeps no consumed \
             messages"
        ))),
        Err(RewindError::TooEarly { earliest_ms }) => {
            let earliest = rfc3339_ms(earliest_ms);
            let body = json!({
                "error": format!(
                    "cannot rewind queue '{name}' to {}: the earliest time it can rewind to is \
                     {earliest}",
                    rfc3339_ms(t_ms)
                ),
                "earliest": earliest,
                "earliest_ms": earliest_ms,
            });
            Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
        }
    }
}

/// `GET /api/queues/{name}/scheduled[?limit=N]`
pub async fn scheduled(
    State(state): Shared,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<ScheduledView>>, ApiError> {
    let queue = find_queue(&state, &name)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut limit = SCHEDULED_DEFAULT;
    for (key, value) in &query {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=SCHEDULED_MAX).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit: expected an integer from 1 to {SCHEDULED_MAX}, found '{value}'"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "'{other}' is not a parameter of this endpoint (only limit is)"
                )))
            }
        }
    }
    let listed = queue
        .scheduled(limit)
        .into_iter()
        .map(|s| ScheduledView {
            id: s.id,
            due: rfc3339_ms(s.due_ms),
            due_ms: s.due_ms,
            bytes: s.bytes,
        })
        .collect();
    Ok(Json(listed))
}

/// `DELETE /api/queues/{name}/scheduled/{id}`
pub async fn cancel_scheduled(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.may_manage(&name)?;
    let queue = find_queue(&state, &name)?;
    let number: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("'{id}' is not a scheduled message id (a number)"))
    })?;
    if !queue.cancel_scheduled(number) {
        return Err(ApiError::not_found(format!(
            "no scheduled message {number} in queue '{name}' (it may have become ready already)"
        )));
    }
    tracing::info!(queue = %name, id = number, "scheduled message cancelled by an administrator");
    Ok(Json(json!({ "cancelled": number })))
}

/// The latest time RFC 3339 can write (the end of year 9999), in ms since the Unix epoch.
const RFC3339_MAX_MS: i64 = 253_402_300_799_999;

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds, clamped to what RFC 3339
/// can write (1970 to 9999; the `_ms` field next to it has the exact value).
pub(super) fn rfc3339_ms(ms: i64) -> String {
    let ms = u64::try_from(ms.clamp(0, RFC3339_MAX_MS)).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The `to` of a rewind, in ms since the Unix epoch: an RFC 3339 time or epoch seconds.
fn rewind_time(to: &Value) -> Result<i64, ApiError> {
    let bad = |what: String| {
        ApiError::bad_request(format!(
            "to: expected an RFC 3339 time such as \"2026-11-23T17:20:00Z\" or seconds since the \
             Unix epoch, found {what}"
        ))
    };
    match to {
        Value::String(text) => parse_rfc3339(text).ok_or_else(|| bad(format!("\"{text}\""))),
        Value::Number(n) => {
            let ms = match n.as_i64() {
                Some(seconds) => seconds.checked_mul(1000),
                None => n
                    .as_f64()
                    .map(|seconds| (seconds * 1000.0).round())
                    .filter(|ms| ms.is_finite() && ms.abs() <= RFC3339_MAX_MS as f64)
                    // In range, checked just above: the cast is exact for whole milliseconds.
                    .map(|ms| ms as i64),
            };
            ms.ok_or_else(|| bad(format!("{n}, out of range")))
        }
        other => Err(bad(other.to_string())),
    }
}

/// An RFC 3339 time in ms since the Unix epoch. Beyond what `humantime` reads (UTC, `T` or a
/// space, optional fraction), it takes a numeric offset such as `+01:00` and lower-case `t`
/// and `z`.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim().to_ascii_uppercase();
    let (local, offset) = split_offset(&text);
    // `humantime` lets a few characters after the seconds through unchecked ("...:00Zjunk"):
    // what follows them must be a fraction, then `Z` unless an offset follows.
    let tail = local.get(19..)?;
    let tail = match offset {
        Some(_) => tail,
        None => tail.strip_suffix('Z').unwrap_or(tail),
    };
    let fraction_ok = match tail.strip_prefix('.') {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => tail.is_empty(),
    };
    if !fraction_ok {
        return None;
    }
    let offset_s = offset.unwrap_or(0);
    let time = humantime::parse_rfc3339_weak(local).ok()?;
    let ms = i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    ms.checked_sub(offset_s * 1000)
}

/// Splits a trailing `±HH:MM` offset off a time; returns the rest and the offset in seconds.
fn split_offset(text: &str) -> (&str, Option<i64>) {
    let b = text.as_bytes();
    // The offset follows the seconds, which end at byte 19.
    if b.len() < 25 || !b.is_ascii() {
        return (text, None);
    }
    let at = b.len() - 6;
    let sign = match b[at] {
        b'+' => 1,
        b'-' => -1,
        _ => return (text, None),
    };
    let digits = |i: usize| -> Option<i64> {
        let (hi, lo) = (b[i], b[i + 1]);
        (hi.is_ascii_digit() && lo.is_ascii_digit())
            .then(|| i64::from(hi - b'0') * 10 + i64::from(lo - b'0'))
    };
    match (digits(at + 1), b[at + 3], digits(at + 4)) {
        (Some(h), b':', Some(m)) if h <= 23 && m <= 59 => {
            (&text[..at], Some(sign * (h * 3600 + m * 60)))
        }
        _ => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewind_times_are_rfc3339_or_epoch_seconds() {
        let ms = |to: Value| rewind_time(&to).ok();
        let at = 1_795_886_400_000; // 2026-11-28T17:20:00Z
        assert_eq!(ms(json!("2026-11-28T17:20:00Z")), Some(at));
        assert_eq!(ms(json!("2026-11-28T17:20:00.250Z")), Some(at + 250));
        assert_eq!(ms(json!("2026-11-28 17:20:00")), Some(at));
        assert_eq!(ms(json!("2026-11-28t17:20:00z")), Some(at));
        assert_eq!(ms(json!("2026-11-28T17:20:00+00:00")), Some(at));
        assert_eq!(ms(json!("2026-11-28T18:50:00+01:30")), Some(at));
        assert_eq!(ms(json!("2026-11-28T12:20:00.5-05:00")), Some(at + 500));
        assert_eq!(ms(json!(1_795_886_400)), Some(at));
        assert_eq!(ms(json!(1_795_886_400.25)), Some(at + 250));
        assert_eq!(ms(json!(-1)), Some(-1000));
        for bad in [
            json!("yesterday"),
            json!("2026-11-28"),
            json!("2026-11-28T14:00:00+25:00"),
            json!("2026-13-28T14:00:00Z"),
            json!("2026-11-28T17:20:00Zé"),
            json!("2026-11-28T17:20:00Zjunk"),
            json!("2026-11-28T17:20:00.Z"),
            json!("2026-11-28T17:20:00Z+01:00"),
            json!("2026-11-28T17:20:00+1:00"),
            json!("2026-11-28T17:20"),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
            json!(true),
            json!(null),
            json!([1]),
        ] {
            assert_eq!(ms(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn times_are_written_in_utc_with_milliseconds_within_what_rfc3339_can_say() {
        assert_eq!(rfc3339_ms(1_795_886_400_250), "2026-11-28T17:20:00.250Z");
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
