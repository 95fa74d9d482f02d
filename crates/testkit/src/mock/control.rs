//! The test-facing side of the mock: the log of `/v1` requests
//! (`/_mock/requests`) and the failure injector (`/_mock/fail`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::wire::{ApiError, RequestId};
use super::Shared;

/// How many requests `/_mock/requests` remembers.
pub(crate) const LOG_CAPACITY: usize = 1000;
/// Request bodies up to this size are kept and shown (`body`), so tests can
/// check what a gateway sent upstream; larger ones only by size.
pub(crate) const BODY_LOG_LIMIT: usize = 64 * 1024;

/// What the mock remembers of one `/v1` request. Header *values* are kept
/// only for `anthropic-version` and `anthropic-beta`: never the key or
/// the `authorization` header.
#[derive(Debug, Clone)]
pub(crate) struct LoggedRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// Names as `HeaderMap` stores them (already lowercase), unsorted;
    /// cloning a `HeaderName` is cheap, so sorting waits for a reader.
    pub(crate) header_names: Vec<HeaderName>,
    pub(crate) anthropic_version: Option<HeaderValue>,
    pub(crate) anthropic_beta: Option<HeaderValue>,
    pub(crate) key_accepted: bool,
    pub(crate) authorization_present: bool,
    pub(crate) body_bytes: usize,
    /// The body, when it is at most [`BODY_LOG_LIMIT`] bytes (a cheap reference, not a copy).
    pub(crate) body: Option<Bytes>,
    pub(crate) request_id: RequestId,
}

#[derive(Serialize)]
struct LoggedRequestView<'a> {
    method: &'a str,
    path: &'a str,
    header_names: Vec<&'a str>,
    anthropic_version: Option<&'a str>,
    anthropic_beta: Option<&'a str>,
    key_accepted: bool,
    authorization_present: bool,
    body_bytes: usize,
    /// The JSON body as received (small bodies only; `null` otherwise).
    body: Option<serde_json::Value>,
    request_id: &'a str,
}

impl LoggedRequest {
    fn view(&self) -> LoggedRequestView<'_> {
        let mut header_names: Vec<&str> = self.header_names.iter().map(HeaderName::as_str).collect();
        header_names.sort_unstable();
        header_names.dedup();
        LoggedRequestView {
            method: self.method.as_str(),
            path: &self.path,
            header_names,
            anthropic_version: self.anthropic_version.as_ref().and_then(|v| v.to_str().ok()),
            anthropic_beta: self.anthropic_beta.as_ref().and_then(|v| v.to_str().ok()),
            key_accepted: self.key_accepted,
            authorization_present: self.authorization_present,
            body_bytes: self.body_bytes,
            body: self.body.as_ref().and_then(|b| serde_json::from_slice(b).ok()),
            request_id: self.request_id.as_str(),
        }
    }
}

/// Bounded log of the last [`LOG_CAPACITY`] requests; the lock is held only
/// to push, clear or clone.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<VecDeque<LoggedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RequestLog {
    pub(crate) fn push(&self, entry: LoggedRequest) {
        let evicted = {
            let mut q = lock(&self.entries);
            let evicted = if q.len() >= LOG_CAPACITY { q.pop_front() } else { None };
            q.push_back(entry);
            evicted
        };
        // Dropped outside the lock.
        drop(evicted);
    }

    fn snapshot(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).iter().cloned().collect()
    }

    fn clear(&self) {
        let old = std::mem::take(&mut *lock(&self.entries));
        drop(old);
    }
}

/// Failures injected by `/_mock/fail`: status in the high 32 bits, the
/// number of requests still to fail in the low 32, in one atomic so the
/// common case (nothing injected) is one load.
#[derive(Debug, Default)]
pub(crate) struct FailSwitch(AtomicU64);

impl FailSwitch {
    pub(crate) fn set(&self, status: u16, count: u32) {
        self.0.store((u64::from(status) << 32) | u64::from(count), Ordering::Release);
    }

    /// Consumes one injected failure, if any is left, and returns its status.
    pub(crate) fn take(&self) -> Option<StatusCode> {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur & 0xFFFF_FFFF == 0 {
                return None;
            }
            match self.0.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return StatusCode::from_u16((cur >> 32) as u16).ok(),
                Err(now) => cur = now,
            }
        }
    }

    fn remaining(&self) -> (u16, u32) {
        let cur = self.0.load(Ordering::Acquire);
        ((cur >> 32) as u16, (cur & 0xFFFF_FFFF) as u32)
    }
}

/// `GET /_mock/requests`
pub(crate) async fn list_requests(State(st): State<Arc<Shared>>) -> Response {
    let entries = st.log.snapshot();
    let views: Vec<LoggedRequestView<'_>> = entries.iter().map(LoggedRequest::view).collect();
    Json(views).into_response()
}

/// `DELETE /_mock/requests`
pub(crate) async fn clear_requests(State(st): State<Arc<Shared>>) -> StatusCode {
    st.log.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct FailRequest {
    status: u16,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize)]
struct FailState {
    status: u16,
    count: u32,
}

/// `POST /_mock/fail` with `{"status":529,"count":3}`: the next `count`
/// requests to `/v1` (that pass authentication) answer `status` with the
/// matching error type. `count: 0` clears.
pub(crate) async fn set_failure(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Response {
    let req: FailRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::invalid(format!("expected {{\"status\":<400..599>,\"count\":N}}: {e}"), &rid)
                .into_response()
        }
    };
    if !(400..=599).contains(&req.status) {
        return ApiError::invalid("status must be within 400..=599", &rid).into_response();
    }
    st.fail.set(req.status, req.count);
    let (status, count) = st.fail.remaining();
    Json(FailState { status, count }).into_response()
}

/// `GET /_mock/fail`: what is still to fail.
pub(crate) async fn get_failure(State(st): State<Arc<Shared>>) -> Response {
    let (status, count) = st.fail.remaining();
    Json(FailState { status, count }).into_response()
}
