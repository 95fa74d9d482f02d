//! A simulated Anthropic API, run by `keyward mock-upstream` for demos,
//! tests and benchmarks.
//!
//! # Endpoints
//!
//! * `POST /v1/messages` (plain and `"stream": true`),
//!   `POST /v1/messages/count_tokens`, `GET /v1/models`,
//!   `GET /v1/models/{id}`, and the Message Batches endpoints under
//!   `/v1/messages/batches`.
//! * The Admin API's API-key endpoints: `GET /v1/organizations/api_keys`,
//!   `GET|POST /v1/organizations/api_keys/{id}` (ids from [`api_key_id`]),
//!   authenticated by [`MockConfig::admin_keys`]. A key set `inactive` is
//!   refused on `/v1` from then on.
//! * The Admin API usage report, `GET /v1/organizations/usage_report/messages`
//!   (1-minute buckets, grouped by `api_key_id`): the tokens of every Messages
//!   answer, per upstream key and minute (see the `usage` module).
//! * Control and observation, without authentication: `POST /_mock/fail`
//!   (`{"status":529,"count":3}`), `GET /_mock/fail`,
//!   `GET /_mock/requests` and `DELETE /_mock/requests`, and `POST /_mock/usage`
//!   (`{"api_key_id":"apikey_...","input_tokens":N,"output_tokens":N}`) to add
//!   usage that did not pass through the mock (out-of-band use of a key).
//!
//! # Every `/v1` request
//!
//! In order: the body is read (413 `request_too_large` over 32 MB, 256 MB for
//! batches) and the request logged for `/_mock/requests`; then
//! [`MockConfig::latency`] is waited; then `x-api-key` is checked (401, and
//! `Authorization: Bearer` is never taken as a key); then
//! `anthropic-version` must be present (400); then a failure armed with
//! `/_mock/fail` is consumed, if any. Every response, on any path, has a
//! `request-id` header; successful `/v1` responses also carry the
//! `anthropic-ratelimit-*` headers.
//!
//! # Token counting
//!
//! Text counted: `system` (string or text blocks) and each message's
//! `content` (string, text blocks, and `tool_result` content as string or
//! text blocks). A block with `cache_control` is a cached unit worth
//! `ceil(chars / 4)` tokens: the first time this process sees its exact text
//! it counts as cache creation (`ttl: "1h"` in the 1-hour bucket), then as a
//! cache read. Other text gives `input_tokens = ceil(chars / 4)`; a request
//! that counts nothing at all still has one input token. Without
//! `cache_control` this is `max(1, ceil(chars / 4))`. `count_tokens` returns
//! the sum of the three, without touching the cache.
//!
//! The reply is the words of [`REPLY_WORDS`], cut
//! to `max_tokens` words (`stop_reason: "max_tokens"`, else `"end_turn"`);
//! one output token per word.
//!
//! # Tool calls
//!
//! A request that declares `tools` and whose last user turn contains
//! `mock:tool_use NAME {json input}` (one per line) is answered with the
//! reply text followed by one `tool_use` block per directive
//! (`stop_reason: "tool_use"`); streamed, each tool block starts with an
//! empty `input` and sends its JSON in three `input_json_delta`s.
//! `/_mock/requests` shows each small request's `body` (up to 64 KiB) as
//! received, so tests can check what a gateway sent upstream.
//!
//! # Switches, chosen by the request's `model`
//!
//! `mock-error-429` (with `retry-after: 7`), `mock-error-529`,
//! `mock-error-500`, `mock-stream-error` (streaming: three deltas, then an
//! `overloaded_error` event and the end of the stream), `mock-slow-stream`
//! (150 ms between events), `mock-hang` (no answer for an hour, or until the
//! server shuts down).

mod admin;
mod batches;
mod control;
mod messages;
mod models;
mod usage;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::HeaderValue;
use http::StatusCode;
use tokio::sync::watch;

use self::control::{FailSwitch, LoggedRequest, RequestLog};
use self::messages::PromptCache;
use self::wire::{add_rate_limit_headers, ApiError, IdGen, RequestId, REQUEST_ID};

pub use self::admin::api_key_id;
pub use self::messages::{REPLY_WORDS, TOOL_DIRECTIVE};

/// Largest body accepted on `/v1/messages` and the other non-batch paths.
const MESSAGES_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest body accepted on `/v1/messages/batches`.
const BATCH_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// Configuration of the simulated API.
#[derive(Clone, Default)]
pub struct MockConfig {
    /// Keys accepted in `x-api-key`. Empty: any non-empty key is accepted.
    pub accept_keys: Vec<String>,
    /// Delay before the response headers of every `/v1` request.
    pub latency: Duration,
    /// Keys accepted on the Admin API (`/v1/organizations/...`).
    pub admin_keys: Vec<String>,
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("accept_keys", &format_args!("[{} redacted]", self.accept_keys.len()))
            .field("latency", &self.latency)
            .field("admin_keys", &format_args!("[{} redacted]", self.admin_keys.len()))
            .finish()
    }
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub(crate) accept_keys: Vec<String>,
    admin_keys: Vec<String>,
    /// Admin API key statuses other than `active`, by key id.
    key_statuses: Mutex<std::collections::HashMap<String, String>>,
    latency: Duration,
    pub(crate) ids: IdGen,
    pub(crate) log: RequestLog,
    pub(crate) fail: FailSwitch,
    pub(crate) cache: PromptCache,
    pub(crate) batches: Mutex<batches::BatchStore>,
    /// Tokens answered per upstream key and minute, for the usage report.
    pub(crate) usage: usage::UsageLedger,
    /// Becomes `true` when the server shuts down, to release `mock-hang`.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn new(cfg: MockConfig) -> Self {
        Self {
            accept_keys: cfg.accept_keys,
            admin_keys: cfg.admin_keys,
            key_statuses: Mutex::default(),
            latency: cfg.latency,
            ids: IdGen::new(),
            log: RequestLog::default(),
            fail: FailSwitch::default(),
            cache: PromptCache::default(),
            batches: Mutex::default(),
            usage: usage::UsageLedger::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    fn key_accepted(&self, key: Option<&HeaderValue>, admin: bool) -> bool {
        match key {
            Some(k) if !k.is_empty() && admin => self.admin_keys.iter().any(|a| a.as_bytes() == k.as_bytes()),
            Some(k) if !k.is_empty() => {
                let listed =
                    self.accept_keys.is_empty() || self.accept_keys.iter().any(|a| a.as_bytes() == k.as_bytes());
                // a key set inactive through the Admin API no longer works
                listed && k.to_str().map_or(true, |k| self.key_status(&admin::api_key_id(k)) == "active")
            }
            _ => false,
        }
    }

    pub(crate) fn key_status(&self, id: &str) -> String {
        let map = self.key_statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id).cloned().unwrap_or_else(|| "active".to_string())
    }

    pub(crate) fn set_key_status(&self, id: &str, status: &str) {
        let mut map = self.key_statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(id.to_string(), status.to_string());
    }

    /// Waits for [`messages::HANG`], or until the server shuts down.
    pub(crate) async fn hang(&self) {
        let mut rx = self.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(messages::HANG) => {}
            _ = rx.wait_for(|down| *down) => {}
        }
    }
}

/// The whole simulated API, with its state inside.
pub fn router(cfg: MockConfig) -> Router {
    build(Arc::new(Shared::new(cfg)))
}

fn build(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages::create_message))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/messages/batches", post(batches::create).get(batches::list))
        .route("/v1/messages/batches/{id}", get(batches::get).delete(batches::delete))
        .route("/v1/messages/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/messages/batches/{id}/results", get(batches::results))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/organizations/api_keys", get(admin::list))
        .route("/v1/organizations/api_keys/{id}", get(admin::get).post(admin::update))
        .route("/v1/organizations/usage_report/messages", get(usage::report))
        .route("/_mock/usage", post(usage::inject))
        .route("/_mock/requests", get(control::list_requests).delete(control::clear_requests))
        .route("/_mock/fail", post(control::set_failure).get(control::get_failure))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&st), gate))
        // `/v1` bodies were already read within their limit by the gate.
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT))
        .with_state(st)
}

async fn not_found(Extension(rid): Extension<RequestId>) -> ApiError {
    ApiError::not_found("Not found", &rid)
}

async fn method_not_allowed(Extension(rid): Extension<RequestId>) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &rid)
}

fn is_v1(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Runs around every request: assigns the request id, and for `/v1` paths
/// logs, delays, authenticates and injects failures.
async fn gate(State(st): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let rid = RequestId(st.ids.next("req_").into());
    req.extensions_mut().insert(rid.clone());
    let mut resp = if is_v1(req.uri().path()) { v1_gate(&st, &rid, req, next).await } else { next.run(req).await };
    if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

async fn v1_gate(st: &Shared, rid: &RequestId, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit =
        if parts.uri.path().starts_with("/v1/messages/batches") { BATCH_BODY_LIMIT } else { MESSAGES_BODY_LIMIT };
    let admin = parts.uri.path().starts_with("/v1/organizations/");
    let key_accepted = st.key_accepted(parts.headers.get("x-api-key"), admin);
    let body = to_bytes(body, limit).await;
    st.log.push(LoggedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        header_names: parts.headers.keys().cloned().collect(),
        anthropic_version: parts.headers.get("anthropic-version").cloned(),
        anthropic_beta: parts.headers.get("anthropic-beta").cloned(),
        key_accepted,
        authorization_present: parts.headers.contains_key(http::header::AUTHORIZATION),
        body_bytes: body.as_ref().map_or(0, |b| b.len()),
        body: body.as_ref().ok().filter(|b| b.len() <= control::BODY_LOG_LIMIT).cloned(),
        request_id: rid.clone(),
    });
    if !st.latency.is_zero() {
        tokio::time::sleep(st.latency).await;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {limit} bytes"), rid)
            } else {
                ApiError::invalid("failed to read the request body", rid)
            }
            .into_response();
        }
    };
    if !key_accepted {
        return ApiError::for_status(StatusCode::UNAUTHORIZED, rid).into_response();
    }
    if parts.headers.get("anthropic-version").is_none_or(HeaderValue::is_empty) {
        return ApiError::invalid("anthropic-version: header is required", rid).into_response();
    }
    if let Some(status) = st.fail.take() {
        return ApiError::for_status(status, rid).into_response();
    }
    let mut parts = parts;
    if !admin {
        if let Some(k) = parts.headers.get("x-api-key").and_then(|k| k.to_str().ok()) {
            parts.extensions.insert(usage::ApiKeyId(admin::api_key_id(k)));
        }
    }
    let mut resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    if resp.status().is_success() {
        add_rate_limit_headers(resp.headers_mut());
    }
    resp
}

/// Serves the simulated API on `listener` until ctrl-c or SIGTERM, then
/// finishes the requests in flight (a `mock-hang` request is released with
/// an `overloaded_error`).
pub async fn serve(listener: tokio::net::TcpListener, cfg: MockConfig) -> std::io::Result<()> {
    serve_until(listener, cfg, shutdown_signal()).await
}

/// [`serve`] until `stop` resolves (for a caller that installed the signal
/// handlers itself, before it said it was listening).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    cfg: MockConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let st = Arc::new(Shared::new(cfg));
    let app = build(Arc::clone(&st));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mock upstream listening");
    }
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|t| {
        let _ = t.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("mock upstream shutting down");
            st.shutdown.send_replace(true);
        })
        .await
}

/// Resolves on ctrl-c or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent right after
/// the listening line is printed stops the mock cleanly. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (term, int) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                // no handler could be installed: never trigger from here
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
