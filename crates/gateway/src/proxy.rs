//! The data plane: Anthropic-compatible endpoints, forwarded to the upstream
//! with the client's credential replaced by the injected upstream key.
//!
//! Phases, in one direction:
//! `authenticate -> policy -> screen_request -> forward -> screen_response -> record`.
//! [`handle`] takes each request from the connection: it answers the open
//! routes, runs `authenticate` on everything else (deny by default), and the
//! rest run in [`forward`]; `record` runs from the response body's end or
//! drop ([`MeteredBody`]), so it also happens when the client disconnects.

use crate::authguard::Plane;
use crate::bodyscan::{refused_model, Budgeted, ScannedBody};
use crate::error::ApiError;
use crate::index::{Auth, KeyEntry};
use crate::meter::{settle, MeteredBody};
use crate::metrics::Refusal;
use crate::metrics::ShieldEvent;
use crate::shield::{self, StreamGate};
use crate::state::{now_ms, App};
use crate::upstream::{self, UpstreamBody};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, Limited};
use keyward_core::policy::ToolPolicy;
use keyward_core::prices::Day;
use keyward_core::usage::shield_flags;
use keyward_core::usage::UsageRecord;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Routes that answer without a credential.
pub const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz"];

/// Request headers copied to the upstream request; everything else (the
/// client's credential, hop-by-hop headers, cookies, proxies' headers) is dropped.
static REQUEST_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// Response headers copied back to the client, besides `anthropic-ratelimit-*`.
static RESPONSE_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::RETRY_AFTER,
    HeaderName::from_static("request-id"),
    HeaderName::from_static("x-should-retry"),
];

/// Largest non-streaming Messages response whose tool calls are checked (keys with
/// a tool allowlist); a larger one is refused (fail closed).
const MAX_CHECKED_BODY: usize = 16 << 20;

/// Messages bodies larger than this (or of unknown length) are forwarded as they
/// arrive when the key does not screen requests; smaller ones are read whole.
const STREAM_BODY_BYTES: u64 = 64 << 10;

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The endpoints the gateway forwards, with the label metering uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Messages,
    CountTokens,
    Models,
    Model,
    Batches,
    Batch,
    BatchCancel,
    BatchResults,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::Models => "/v1/models",
            Endpoint::Model => "/v1/models/{id}",
            Endpoint::Batches => "/v1/messages/batches",
            Endpoint::Batch => "/v1/messages/batches/{id}",
            Endpoint::BatchCancel => "/v1/messages/batches/{id}/cancel",
            Endpoint::BatchResults => "/v1/messages/batches/{id}/results",
        }
    }

    /// Requests whose body is a JSON object the gateway reads (model, stream).
    fn has_json_body(self, m: &Method) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::CountTokens) || (self == Endpoint::Batches && m == Method::POST)
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Allowlist of (method, path) pairs; anything else is 404 and never forwarded.
pub fn classify(m: &Method, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v1/")?;
    // at most four segments are known; a fifth (or more) matches nothing
    let mut segs = [""; 5];
    let mut n = 0;
    for seg in rest.splitn(5, '/') {
        segs[n] = seg;
        n += 1;
    }
    let get = m == Method::GET;
    let post = m == Method::POST;
    match &segs[..n] {
        ["messages"] if post => Some(Endpoint::Messages),
        ["messages", "count_tokens"] if post => Some(Endpoint::CountTokens),
        ["models"] if get => Some(Endpoint::Models),
        ["models", id] if get && is_id(id) => Some(Endpoint::Model),
        ["messages", "batches"] if get || post => Some(Endpoint::Batches),
        ["messages", "batches", id] if (get || m == Method::DELETE) && is_id(id) => Some(Endpoint::Batch),
        ["messages", "batches", id, "cancel"] if post && is_id(id) => Some(Endpoint::BatchCancel),
        ["messages", "batches", id, "results"] if get && is_id(id) => Some(Endpoint::BatchResults),
        _ => None,
    }
}

/// The client's credential: `x-api-key`, or `Authorization: Bearer`.
fn presented_credential(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(&X_API_KEY) {
        return v.to_str().ok();
    }
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// One data-plane request, straight from the connection (no router, no
/// middleware stack): the open routes, then phase `authenticate` (deny by
/// default), then [`forward`].
pub async fn handle<B>(app: Arc<App>, peer: SocketAddr, req: http::Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if OPEN_ROUTES.contains(&req.uri().path()) {
        return match *req.method() {
            Method::GET | Method::HEAD => health().into_response(),
            _ => (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET,HEAD")]).into_response(),
        };
    }
    match authenticate(&app, peer.ip(), req.headers()) {
        Ok(key) => forward(app, key, peer.ip(), req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Phase `authenticate`: virtual key -> key record, in memory. Unknown,
/// malformed, revoked, suspended, expired and rotated-out keys get the same answer.
fn authenticate(app: &App, ip: IpAddr, headers: &HeaderMap) -> Result<Arc<KeyEntry>, ApiError> {
    let now = now_ms();
    let auth = presented_credential(headers).map(|k| app.keys.authenticate(&app.digester.digest(k), now));
    match auth {
        // a valid key is served even while its address backs off: services that share
        // an egress address must not be locked out by a neighbour's bad or revoked key
        Some(Auth::Ok(e)) => Ok(e),
        other => {
            // the address is backing off: refused and counted, not a new failure
            if let Some(wait) = app.auth_guard.check(Plane::Data, ip, now) {
                app.metrics.refused_auth();
                let message = "too many failed authentications from this address; retry later".to_string();
                return Err(ApiError::RateLimited { message, retry_after_s: wait });
            }
            if let Some(Auth::Stale(e)) = other {
                // someone still holds a secret of this key that no longer works
                e.note_stale(now);
                app.monitor.presented_stale(&e.id, Some(ip), now);
            }
            // unknown, malformed and stale secrets take the same path from here
            app.auth_guard.failed(Plane::Data, ip, now);
            app.metrics.refused_auth();
            Err(ApiError::Unauthenticated)
        }
    }
}

#[derive(Deserialize)]
struct Probe {
    model: Option<String>,
    stream: Option<bool>,
    /// Batch creation: each request names its own model.
    requests: Option<Vec<BatchProbe>>,
}

#[derive(Deserialize)]
struct BatchProbe {
    params: Option<BatchParams>,
}

#[derive(Deserialize)]
struct BatchParams {
    model: Option<String>,
}

/// Everything after authentication for one request.
async fn forward<B>(app: Arc<App>, key: Arc<KeyEntry>, peer: IpAddr, req: http::Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let Some(endpoint) = classify(&parts.method, parts.uri.path()) else {
        return ApiError::NotFound.into_response();
    };
    let mut record = UsageRecord {
        ts_ms: now_ms(),
        request_id: String::new(),
        key_id: key.id.clone(),
        service_id: key.service_id.clone(),
        upstream_id: None,
        env: key.env.as_str().to_string(),
        endpoint: endpoint.label().to_string(),
        model: None,
        status: 0,
        usage: Default::default(),
        cost_usd: None,
        latency_ms: 0,
        streamed: false,
        client_disconnected: false,
        shield_flags: 0,
        shield_score: None,
        source_ip: Some(peer),
    };
    // a refusal after authentication is recorded too (phase `record`)
    let fail = |mut record: UsageRecord, e: ApiError, holds_slot: bool| {
        record.status = e.status().as_u16();
        record.latency_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        app.meter.price(&mut record);
        settle(&key, &record, holds_slot);
        app.meter.send(record);
        match &e {
            ApiError::RateLimited { .. } => app.metrics.refused(Refusal::Rate),
            ApiError::BudgetExceeded => app.metrics.refused(Refusal::Budget),
            ApiError::Forbidden(_) => app.metrics.refused(Refusal::Policy),
            _ => {}
        }
        e.into_response()
    };
    let eff = key.policy();

    // phase `policy`, part 1: where the request comes from
    if !eff.cidrs.is_empty() {
        let ip = record.source_ip;
        if !ip.is_some_and(|ip| eff.cidrs.iter().any(|c| c.contains(ip))) {
            return fail(record, ApiError::Forbidden("this key may not be used from this network".into()), false);
        }
    }

    // read the body, bounded: 413 without reading past the limit
    let max = app.cfg.max_body_bytes;
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return fail(record, ApiError::TooLarge, false);
    }
    // a large Messages body, for a key that neither screens nor rewrites requests,
    // is forwarded as it arrives, its checks made on the way (`bodyscan`); any other
    // body is read whole first
    let streams = matches!(endpoint, Endpoint::Messages | Endpoint::CountTokens)
        && eff.request_plan.is_none()
        && declared.is_none_or(|n| n > STREAM_BODY_BYTES);
    let (bytes, pending, share) = if streams {
        (Bytes::new(), Some(body), None)
    } else {
        // bounded in time too: a body holding a share of the budget must not hold it for long
        match tokio::time::timeout(app.cfg.body_timeout, read_body(body, max as usize, declared))
            .await
            .unwrap_or(Err(BodyError::Slow))
        {
            Ok((b, share)) => (b, None, share),
            Err(BodyError::Slow) => return fail(record, ApiError::BodyTimeout, false),
            Err(BodyError::TooLarge) => return fail(record, ApiError::TooLarge, false),
            Err(BodyError::Read) => {
                return fail(record, ApiError::InvalidRequest("could not read the request body".into()), false)
            }
        }
    };

    let mut streamed = false;
    // models named by a batch's requests (a Messages request names one, kept in the record)
    let mut batch_models: Vec<String> = Vec::new();
    if pending.is_none() && endpoint.has_json_body(&parts.method) {
        match serde_json::from_slice::<Probe>(&bytes) {
            Ok(p) => {
                streamed = endpoint == Endpoint::Messages && p.stream == Some(true);
                batch_models.extend(p.requests.into_iter().flatten().filter_map(|r| r.params.and_then(|p| p.model)));
                record.model = p.model;
            }
            Err(e) => {
                let msg =
                    if e.is_data() { "request body must be a JSON object" } else { "request body is not valid JSON" };
                return fail(record, ApiError::InvalidRequest(msg.into()), false);
            }
        }
    }
    record.streamed = streamed;

    // phase `policy`, part 2: what the request asks for, then budget and limits
    // (a streamed body's model is checked as it passes)
    if let Some(message) = refused_model(&eff, record.model.iter().chain(&batch_models).map(String::as_str)) {
        return fail(record, ApiError::Forbidden(message), false);
    }
    // budget: checked when a request starts; the request that crosses the line completes
    if let Some(budget) = eff.policy.budget_usd {
        if key.spend.get(Day::of_ms(record.ts_ms).month()) >= budget {
            return fail(record, ApiError::BudgetExceeded, false);
        }
    }
    let now = Instant::now();
    if let Some(rpm) = eff.policy.rpm {
        if let Err(retry_after_s) = key.rpm.take(rpm as f64, now) {
            let message = format!("rate limit of {rpm} requests per minute exceeded for this key");
            return fail(record, ApiError::RateLimited { message, retry_after_s }, false);
        }
    }
    if let Some(tpm) = eff.policy.tpm {
        if let Err(retry_after_s) = key.tpm.check_positive(tpm as f64, now) {
            let message = format!("rate limit of {tpm} tokens per minute exceeded for this key");
            return fail(record, ApiError::RateLimited { message, retry_after_s }, false);
        }
    }
    let holds_slot = match eff.policy.max_concurrent {
        Some(max) if !key.inflight.try_acquire(max) => {
            let message = format!("more than {max} concurrent requests for this key");
            return fail(record, ApiError::RateLimited { message, retry_after_s: 1 }, false);
        }
        Some(_) => true,
        None => false,
    };

    // phase `screen_request`: only keys with an injection policy pay for it
    let mut bytes = bytes;
    let mut shield_header = None;
    let gated = eff.request_plan.is_some() || eff.tool_gate.is_some();
    if gated && endpoint == Endpoint::Batches && parts.method == Method::POST {
        // a batch's requests and results would bypass screening and the tool allowlist
        let message = "message batches are not available to keys with a prompt-injection or tool policy";
        return fail(record, ApiError::Forbidden(message.into()), holds_slot);
    }
    if let Some(plan) = eff.request_plan.as_ref().filter(|_| pending.is_none() && endpoint.has_json_body(&parts.method))
    {
        let prepared = if plan.screens_inline(bytes.len()) {
            shield::prepare(app.screener(&key.id), plan, &bytes)
        } else {
            // a screening of milliseconds (a large body, or the deep stage): off the
            // data-plane thread, so the other connections it serves are not held up;
            // at most one screening per core at a time (more would not finish
            // sooner, and each holds several copies of its text)
            let Ok(_slot) = screen_slots().acquire().await else {
                return fail(record, ApiError::Internal, holds_slot);
            };
            let (app, key, plan, body) = (app.clone(), key.clone(), plan.clone(), bytes.clone());
            match tokio::task::spawn_blocking(move || shield::prepare(app.screener(&key.id), &plan, &body)).await {
                Ok(p) => p,
                Err(_) => return fail(record, ApiError::Internal, holds_slot),
            }
        };
        match prepared {
            Ok(p) => {
                record.shield_score = p.score;
                if p.flagged {
                    record.shield_flags |= shield_flags::REQUEST_FLAGGED;
                    app.metrics.shield(&key, ShieldEvent::RequestFlagged);
                    shield_header = p.score.and_then(|s| HeaderValue::from_str(&shield::flag_header(s)).ok());
                }
                if let Some(rewritten) = p.body {
                    bytes = rewritten;
                }
            }
            Err(r) => {
                record.shield_score = r.score;
                if r.by_shield {
                    record.shield_flags |= shield_flags::REQUEST_BLOCKED;
                    app.metrics.shield(&key, ShieldEvent::RequestBlocked);
                    tracing::info!(key_id = %key.id, "request refused by the prompt-injection policy");
                    audit_block(&app, &key, Some(peer), "shield.block", serde_json::json!({ "score": r.score }));
                }
                return fail(record, r.error, holds_slot);
            }
        }
    }

    // phase `forward`: inject the upstream credential of the key's environment
    let Some(upstream) = app.upstreams.get(key.env) else {
        let e = ApiError::BadGateway("no upstream credential is configured for this key's environment");
        return fail(record, e, holds_slot);
    };
    record.upstream_id = Some(upstream.id.clone());
    let cred = match app.secrets.get(&upstream.secret).await {
        Ok(c) => Ok(c),
        // during an upstream rotation's grace window the old key is still loaded
        Err(e) => match &upstream.previous {
            Some((prev, until)) if now_ms() < *until => app.secrets.get(prev).await,
            _ => Err(e),
        },
    };
    let Ok(cred) = cred else {
        return fail(record, ApiError::BadGateway("the upstream credential is unavailable"), holds_slot);
    };
    let Some(uri) = build_uri(&app.upstream_base, &parts.uri) else {
        return fail(record, ApiError::InvalidRequest("invalid request path".into()), holds_slot);
    };
    let build = |cred: &keyward_secrets::Credential, body: UpstreamBody| {
        let mut up = http::Request::builder().method(parts.method.clone()).uri(uri.clone());
        if let Some(h) = up.headers_mut() {
            for name in &REQUEST_HEADERS {
                for v in parts.headers.get_all(name) {
                    h.append(name.clone(), v.clone());
                }
            }
            h.insert(X_API_KEY.clone(), cred.header().clone());
        }
        up.body(body)
    };
    // only a small body read whole is kept for a retry: a streamed one has gone,
    // and a large one read whole releases its memory once it has gone upstream
    let retry = pending.is_none() && share.is_none();
    let (body, verdict) = match (pending, share) {
        (Some(b), _) => {
            let (scanned, v) = ScannedBody::new(b, max, eff.clone());
            (Either::Right(UnsyncBoxBody::new(scanned)), Some(v))
        }
        (None, Some(share)) => {
            let whole = Full::new(std::mem::take(&mut bytes)).map_err(|never| match never {});
            (Either::Right(UnsyncBoxBody::new(Budgeted::new(whole, share))), None)
        }
        (None, None) => (upstream::full(bytes.clone()), None),
    };
    let Ok(up) = build(&cred, body) else {
        return fail(record, ApiError::Internal, holds_slot);
    };
    drop(cred);
    let send = |up| tokio::time::timeout(app.cfg.response_timeout, crate::upstream::request(&app.client, up));
    let sent = Instant::now();
    app.metrics.overhead.observe(sent.duration_since(started));
    let first = send(up).await;
    app.metrics.upstream_latency.observe(sent.elapsed());
    // a streamed body: refused on the way (cut off before its end), or what it said
    match verdict.as_ref().and_then(|v| v.get()) {
        Some(Err(fault)) => return fail(record, fault.to_api_error(), holds_slot),
        Some(Ok(scanned)) => record.model.clone_from(&scanned.model),
        None => {}
    }
    let mut resp = match first {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(key_id = %key.id, error = %ErrorChain(&*e), "upstream request failed");
            return fail(record, ApiError::BadGateway("the upstream API could not be reached"), holds_slot);
        }
        Err(_) => return fail(record, ApiError::Timeout, holds_slot),
    };
    // a request that raced a rotation at the secret source: the upstream refused
    // the new value, so retry once with the previous one while its grace lasts
    // (not for a large body, see `retry`)
    if resp.status() == StatusCode::UNAUTHORIZED && retry {
        if let Some(prev) = app.secrets.previous(&upstream.secret) {
            if let Ok(up) = build(&prev, upstream::full(bytes)) {
                tracing::warn!(key_id = %key.id, upstream_id = %upstream.id, "upstream refused the current key; retrying with the previous one");
                match send(up).await {
                    Ok(Ok(r)) => resp = r,
                    Ok(Err(_)) => {
                        return fail(record, ApiError::BadGateway("the upstream API could not be reached"), holds_slot)
                    }
                    Err(_) => return fail(record, ApiError::Timeout, holds_slot),
                }
            }
        }
    }

    // phase `screen_response` comes with the tool-call allowlist; build the client response
    let (up_parts, up_body) = resp.into_parts();
    record.status = up_parts.status.as_u16();
    if let Some(id) = up_parts.headers.get("request-id").and_then(|v| v.to_str().ok()) {
        record.request_id = id.to_string();
    }
    let is_sse = up_parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    record.streamed = is_sse;

    // phase `screen_response`: tool calls of a complete message are checked before any byte goes out
    let mut tool_header = None;
    let tool_gate = eff.tool_gate.as_ref().filter(|_| endpoint == Endpoint::Messages && up_parts.status.is_success());
    let up_body = match tool_gate {
        Some(gate) if !is_sse => {
            let collect = Limited::new(up_body, MAX_CHECKED_BODY).collect();
            let body = match tokio::time::timeout(app.cfg.idle_timeout, collect).await {
                Ok(Ok(c)) => c.to_bytes(),
                Ok(Err(_)) => {
                    return fail(record, ApiError::BadGateway("the upstream response could not be read"), holds_slot)
                }
                Err(_) => return fail(record, ApiError::Timeout, holds_slot),
            };
            if let Err(v) = gate.check_message(&body) {
                match gate.policy {
                    ToolPolicy::Block => {
                        if let Some((model, u)) = keyward_core::usage::from_message_body(&body) {
                            record.usage = u;
                            record.model = model.or(record.model);
                        }
                        record.shield_flags |= shield_flags::TOOL_BLOCKED;
                        app.metrics.shield(&key, ShieldEvent::ToolBlocked);
                        tracing::info!(key_id = %key.id, "response withheld: a tool call outside the key's allowlist");
                        audit_block(&app, &key, Some(peer), "shield.tool_block", serde_json::json!({ "tool": v.tool }));
                        return fail(record, v.error(), holds_slot);
                    }
                    ToolPolicy::Flag => {
                        record.shield_flags |= shield_flags::TOOL_FLAGGED;
                        app.metrics.shield(&key, ShieldEvent::ToolFlagged);
                        tool_header = HeaderValue::from_str(&format!("flagged; tool={}", v.tool)).ok();
                    }
                }
            }
            Either::Right(Full::new(body))
        }
        _ => Either::Left(up_body),
    };
    let stream_gate = tool_gate.filter(|_| is_sse).map(|g| StreamGate::new(g.clone()));
    // phase `record` runs when this body ends, fails or is dropped
    let metered = MeteredBody::new(
        up_body,
        is_sse,
        record,
        app.meter.clone(),
        started,
        app.cfg.idle_timeout,
        key.clone(),
        holds_slot,
    );
    let metered = match stream_gate {
        Some(g) => {
            let (app, key, source) = (app.clone(), key.clone(), Some(peer));
            metered.with_gate(
                g,
                Box::new(move |tool: &str| {
                    let summary = serde_json::json!({ "tool": tool, "streamed": true });
                    audit_block(&app, &key, source, "shield.tool_block", summary)
                }),
            )
        }
        None => metered,
    };
    let mut out = Response::new(Body::new(metered));
    *out.status_mut() = up_parts.status;
    // the upstream's own header map, minus what is not passed on: moving it costs
    // nothing, where copying would clone (and allocate) every custom header name
    let mut h = up_parts.headers;
    while let Some(name) = h.keys().find(|n| !passes_to_client(n)).cloned() {
        h.remove(&name);
    }
    *out.headers_mut() = h;
    let h = out.headers_mut();
    if is_sse {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if tool_gate.is_some() {
            // the gate may replace a held tool call with an `error` event
            h.remove(header::CONTENT_LENGTH);
        }
    }
    if let Some(v) = shield_header {
        h.insert(HeaderName::from_static(shield::SHIELD_HEADER), v);
    }
    if let Some(v) = tool_header {
        h.insert(HeaderName::from_static(shield::TOOL_HEADER), v);
    }
    out
}

/// Large request bodies read whole (keys that screen requests, batches) take
/// at most this much memory at once: a body over [`BUDGET_UNIT`] waits for its
/// share before it is read (a body of unknown length, once it passes that
/// size), so that many large requests at once are held back by TCP instead of
/// filling memory. Smaller bodies do not count.
const BUFFERED_BODIES_BYTES: usize = 16 << 20;
const BUDGET_UNIT: usize = 64 << 10;

fn body_budget() -> &'static Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(BUFFERED_BODIES_BYTES / BUDGET_UNIT)))
}

/// A share of the budget for a body of `n` bytes: every unit it starts, and at
/// most the whole budget (a body larger than that is read alone).
async fn budget_share(n: u64) -> Result<tokio::sync::OwnedSemaphorePermit, BodyError> {
    let units = n.div_ceil(BUDGET_UNIT as u64).min((BUFFERED_BODIES_BYTES / BUDGET_UNIT) as u64) as u32;
    body_budget().clone().acquire_many_owned(units).await.map_err(|_| BodyError::Read)
}

/// Screenings of large bodies running on the blocking pool: one per core.
fn screen_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
}

enum BodyError {
    TooLarge,
    Read,
    /// Not all there within `server.body_timeout`.
    Slow,
}

/// The whole request body, at most `max` bytes, with its share of the budget
/// for large bodies when it is one. A body that arrives in one frame is kept as
/// it is; a longer one is gathered into one buffer sized from `content-length`,
/// so a large body is held once (not as frames plus a copy).
async fn read_body<B>(
    body: B,
    max: usize,
    declared: Option<u64>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), BodyError>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut share = match declared {
        Some(n) if n > BUDGET_UNIT as u64 => Some(budget_share(n).await?),
        _ => None,
    };
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if held + data.len() > max {
            return Err(BodyError::TooLarge);
        }
        if held + data.len() > BUDGET_UNIT && share.is_none() {
            // of unknown length and now large: one share, for the largest it may be
            share = Some(budget_share(max as u64).await?);
        }
        if first.is_none() && buf.is_empty() {
            first = Some(data);
            continue;
        }
        // a second frame: from here on the body is gathered in `buf`
        if let Some(earlier) = first.take() {
            let expect = declared.map_or(0, |n| n.min(max as u64) as usize);
            buf.reserve(expect.max(earlier.len() + data.len()));
            buf.extend_from_slice(&earlier);
        }
        buf.extend_from_slice(&data);
    }
    Ok((first.unwrap_or_else(|| buf.freeze()), share))
}

/// Response headers the client gets from the upstream: an allowlist.
fn passes_to_client(name: &HeaderName) -> bool {
    RESPONSE_HEADERS.contains(name) || name.as_str().starts_with("anthropic-ratelimit-")
}

fn build_uri(base: &str, client: &Uri) -> Option<Uri> {
    let pq = client.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut s = String::with_capacity(base.len() + pq.len());
    s.push_str(base);
    s.push_str(pq);
    s.parse().ok()
}

/// Display an error with its sources, for logs (never includes headers).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

pub async fn healthz() -> impl IntoResponse {
    health()
}

fn health() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"status\":\"ok\"}")
}

/// A refusal by the shield is a security event: audited off the request path
/// (the key is the actor; nothing of the content is recorded).
fn audit_block(
    app: &Arc<App>,
    key: &KeyEntry,
    source: Option<std::net::IpAddr>,
    action: &'static str,
    summary: serde_json::Value,
) {
    let actor = crate::audit::Actor { name: key.id.clone(), source: source.map(|ip| ip.to_string()) };
    let (app, target) = (app.clone(), vec![key.id.clone(), key.service_id.clone()]);
    // on the main runtime: a data-plane thread's runtime ends with its listener
    let bg = app.background.clone();
    bg.spawn(async move { app.audit_event_logged(&actor, action, target, summary).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_is_an_allowlist() {
        assert_eq!(classify(&Method::POST, "/v1/messages"), Some(Endpoint::Messages));
        assert_eq!(classify(&Method::GET, "/v1/messages"), None);
        assert_eq!(classify(&Method::POST, "/v1/messages/count_tokens"), Some(Endpoint::CountTokens));
        assert_eq!(classify(&Method::GET, "/v1/models/claude-sonnet-4-6"), Some(Endpoint::Model));
        assert_eq!(classify(&Method::DELETE, "/v1/messages/batches/msgbatch_1"), Some(Endpoint::Batch));
        assert_eq!(classify(&Method::GET, "/v1/messages/batches/msgbatch_1/results"), Some(Endpoint::BatchResults));
        assert_eq!(classify(&Method::GET, "/v1/models/../organizations/api_keys"), None);
        assert_eq!(classify(&Method::GET, "/v1/organizations/api_keys"), None);
        assert_eq!(classify(&Method::GET, "/v1/models/a%2Fb"), None);
        assert_eq!(classify(&Method::GET, "/v1/messages/batches/msgbatch_1/results/x"), None);
        assert_eq!(classify(&Method::GET, "/v1/messages/batches/msgbatch_1/results/"), None);
        assert_eq!(classify(&Method::POST, "/v1/messages/"), None);
        assert_eq!(classify(&Method::POST, "/v1/"), None);
    }

    fn frames(parts: &[&'static [u8]]) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> =
            parts.iter().map(|p| Ok(http_body::Frame::data(Bytes::from_static(p)))).collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn request_bodies_are_read_whole_and_bounded() {
        let one = read_body(frames(&[b"{\"model\":\"x\"}"]), 100, Some(13)).await.ok().unwrap().0;
        assert_eq!(&one[..], b"{\"model\":\"x\"}");
        let many = read_body(frames(&[b"{\"mo", b"del\":", b"", b"\"x\"}"]), 100, Some(13)).await.ok().unwrap().0;
        assert_eq!(&many[..], b"{\"model\":\"x\"}");
        // content-length missing or wrong changes nothing but the first allocation
        let many = read_body(frames(&[b"ab", b"cd", b"ef"]), 100, None).await.ok().unwrap().0;
        assert_eq!(&many[..], b"abcdef");
        let many = read_body(frames(&[b"ab", b"cd", b"ef"]), 100, Some(1)).await.ok().unwrap().0;
        assert_eq!(&many[..], b"abcdef");
        assert_eq!(&read_body(frames(&[]), 100, None).await.ok().unwrap().0[..], b"");
        // exactly at the limit passes; one byte over does not, however it is split
        assert!(read_body(frames(&[b"abc", b"def"]), 6, None).await.is_ok());
        assert!(matches!(read_body(frames(&[b"abc", b"defg"]), 6, None).await, Err(BodyError::TooLarge)));
        assert!(matches!(read_body(frames(&[b"abcdefg"]), 6, None).await, Err(BodyError::TooLarge)));
        let failing = http_body_util::StreamBody::new(futures_util::stream::iter(vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ]));
        assert!(matches!(read_body(failing, 100, None).await, Err(BodyError::Read)));
    }

    #[tokio::test]
    async fn large_bodies_read_whole_hold_a_share_of_the_budget() {
        let total = BUFFERED_BODIES_BYTES / BUDGET_UNIT;
        let big: &'static [u8] = Box::leak(vec![b' '; BUDGET_UNIT + 1].into_boxed_slice());
        // small: no share; declared large: its units; unknown length: the most it may be
        let (_, share) = read_body(frames(&[b"{}"]), 1 << 30, Some(2)).await.ok().unwrap();
        assert!(share.is_none());
        let (_, share) = read_body(frames(&[big]), 1 << 30, Some(big.len() as u64)).await.ok().unwrap();
        assert_eq!(share.map(|s| s.num_permits()), Some(2));
        let (_, share) = read_body(frames(&[b"ab", big]), 4 * BUDGET_UNIT, None).await.ok().unwrap();
        assert_eq!(share.as_ref().map(|s| s.num_permits()), Some(4));
        assert_eq!(body_budget().available_permits(), total - 4);
        // a body larger than the whole budget takes all of it, and the next waits
        drop(share);
        let (_, all) = read_body(frames(&[big]), usize::MAX, Some(u64::MAX)).await.ok().unwrap();
        assert_eq!(all.as_ref().map(|s| s.num_permits()), Some(total));
        let next = read_body(frames(&[big]), 1 << 30, Some(big.len() as u64));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), next).await;
        assert!(waited.is_err(), "a body was read past the budget");
        // the share goes back once the body has been handed on
        let mut held = Budgeted::new(Full::new(Bytes::from_static(big)), all.unwrap());
        assert_eq!(body_budget().available_permits(), 0);
        while let Some(f) = held.frame().await {
            assert!(f.is_ok());
        }
        assert_eq!(body_budget().available_permits(), total);
    }

    #[test]
    fn credentials_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer kw_dev_abc"));
        assert_eq!(presented_credential(&h), Some("kw_dev_abc"));
        h.insert("x-api-key", HeaderValue::from_static("kw_dev_xyz"));
        assert_eq!(presented_credential(&h), Some("kw_dev_xyz"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_credential(&h), None);
    }
}
