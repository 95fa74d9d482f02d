//! The admin plane: `/admin/v1/...` JSON REST, `/metrics`, `/healthz`,
//! `/readyz`, on its own listener. Every route but the open ones needs an
//! admin token (`Authorization: Bearer kwa_...`) whose role allows the action.

use crate::index::TokenEntry;
use crate::keys::{KeyUpdate, NewKey};
use crate::state::{now_ms, App, OpError};
use crate::upstreams::UpstreamSecret;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward_core::policy::KeyPolicy;
use keyward_store::KeyStatus;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz", "/admin/v1/openapi.json"];
const OPENAPI: &str = include_str!("openapi.json");

/// What a request asks to do, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    ManageTokens,
}

pub fn role_allows(role: &str, action: Action) -> bool {
    match role {
        "owner" => true,
        "operator" => action != Action::ManageTokens,
        "auditor" => action == Action::Read,
        // service-owner scoping is enforced per object; until then it may only read
        "service-owner" => action == Action::Read,
        _ => false,
    }
}

fn admin_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        match &self {
            OpError::Invalid(m) => admin_error(StatusCode::BAD_REQUEST, "invalid_request_error", m),
            OpError::NotFound(m) => admin_error(StatusCode::NOT_FOUND, "not_found_error", &format!("{m} not found")),
            OpError::Conflict(m) => admin_error(StatusCode::CONFLICT, "conflict_error", &format!("{m} already exists")),
            OpError::Store(e) => {
                tracing::error!(error = %e, "admin operation failed in the store");
                admin_error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal error")
            }
        }
    }
}

/// Authenticate the admin token and check its role against the method.
async fn admin_auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if OPEN_ROUTES.contains(&path) {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(entry) = token.and_then(|t| app.tokens.authenticate(&app.digester.digest(t), now_ms())) else {
        tracing::warn!(path = %path, "admin authentication failed");
        return admin_error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid admin token");
    };
    let action = if path.starts_with("/admin/v1/tokens") {
        Action::ManageTokens
    } else if req.method() == Method::GET || req.method() == Method::HEAD {
        Action::Read
    } else {
        Action::Write
    };
    if !role_allows(&entry.role, action) {
        return admin_error(StatusCode::FORBIDDEN, "permission_error", "this token's role does not allow this action");
    }
    req.extensions_mut().insert(entry);
    next.run(req).await
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/admin/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/admin/v1/services", get(list_services).post(create_service))
        .route("/admin/v1/services/{name}", get(get_service))
        .route("/admin/v1/services/{name}/decommission", post(decommission_service))
        .route("/admin/v1/upstreams", get(list_upstreams).post(create_upstream))
        .route("/admin/v1/upstreams/{name}/rotate", post(rotate_upstream))
        .route("/admin/v1/upstreams/{name}/retire", post(retire_upstream))
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", get(get_key).patch(update_key))
        .route("/admin/v1/keys/{id}/rotate", post(rotate_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{id}/suspend", post(suspend_key))
        .route("/admin/v1/keys/{id}/resume", post(resume_key))
        .route("/admin/v1/review", get(review))
        .route("/admin/v1/scan/classify", post(classify))
        .route("/admin/v1/usage", get(usage))
        .route("/admin/v1/alerts", get(list_alerts))
        .route("/admin/v1/alerts/{id}", get(get_alert))
        .route("/admin/v1/alerts/{id}/ack", post(ack_alert))
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::proxy::healthz))
        .route("/readyz", get(crate::proxy::healthz))
        .fallback(|| async { admin_error(StatusCode::NOT_FOUND, "not_found_error", "no such admin route") })
        // authentication wraps every route; the open ones are named in OPEN_ROUTES
        .layer(axum::middleware::from_fn_with_state(app.clone(), admin_auth))
        .with_state(app)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewService {
    name: String,
    owner: String,
}

async fn create_service(State(app): State<Arc<App>>, Json(b): Json<NewService>) -> Result<Response, OpError> {
    let s = app.create_service(&b.name, &b.owner).await?;
    tracing::info!(service_id = %s.id, service = %s.name, "service created");
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn list_services(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "data": app.list_services() }))
}

async fn get_service(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Response, OpError> {
    Ok(Json(app.get_service(&name)?).into_response())
}

fn dur(field: &'static str, v: &str) -> Result<Duration, OpError> {
    keyward_core::config::parse_duration(field, v).map_err(|e| OpError::Invalid(e.to_string()))
}

fn opt_dur(field: &'static str, v: &Option<String>) -> Result<Option<Duration>, OpError> {
    v.as_deref().map(|t| dur(field, t)).transpose()
}

/// `null` clears a field, absence leaves it alone.
fn double<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpstream {
    name: String,
    env: String,
    value: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    anthropic_key_id: Option<String>,
}

fn upstream_secret(value: Option<String>, reference: Option<String>) -> Result<UpstreamSecret, OpError> {
    match (value, reference) {
        (Some(v), None) => Ok(UpstreamSecret::Value(SecretString::from(v))),
        (None, Some(r)) => Ok(UpstreamSecret::Ref(r)),
        _ => Err(OpError::Invalid("give the upstream key either by value (stdin) or by --ref, not both".into())),
    }
}

async fn create_upstream(State(app): State<Arc<App>>, Json(b): Json<NewUpstream>) -> Result<Response, OpError> {
    let secret = upstream_secret(b.value, b.reference)?;
    let u = app.create_upstream(&b.name, &b.env, secret, b.anthropic_key_id).await?;
    tracing::info!(upstream_id = %u.id, upstream = %u.name, env = %u.env, "upstream key added");
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

async fn list_upstreams(State(app): State<Arc<App>>) -> Result<Response, OpError> {
    Ok(Json(json!({ "data": app.list_upstreams().await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateUpstream {
    value: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    grace: Option<String>,
    anthropic_key_id: Option<String>,
}

async fn rotate_upstream(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(b): Json<RotateUpstream>,
) -> Result<Response, OpError> {
    let secret = upstream_secret(b.value, b.reference)?;
    let grace = opt_dur("grace", &b.grace)?;
    let u = app.rotate_upstream(&name, secret, grace, b.anthropic_key_id).await?;
    tracing::info!(upstream_id = %u.id, upstream = %u.name, "upstream key rotated");
    Ok(Json(u).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Retire {
    #[serde(default)]
    force: bool,
}

async fn retire_upstream(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Option<Json<Retire>>,
) -> Result<Response, OpError> {
    let force = body.map(|Json(b)| b.force).unwrap_or(false);
    let u = app.retire_upstream(&name, force).await?;
    tracing::info!(upstream_id = %u.id, upstream = %u.name, force, "upstream key retired");
    Ok(Json(u).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    service: String,
    env: String,
    name: Option<String>,
    expires_in: Option<String>,
    rotate_every: Option<String>,
    deliver_to: Option<String>,
    rpm: Option<u32>,
    tpm: Option<u64>,
    max_concurrent: Option<u32>,
    budget_usd: Option<f64>,
    models: Option<Vec<String>>,
    allow_cidr: Option<Vec<String>>,
}

async fn create_key(
    State(app): State<Arc<App>>,
    Extension(_who): Extension<Arc<TokenEntry>>,
    Json(b): Json<NewKeyBody>,
) -> Result<Response, OpError> {
    let n = NewKey {
        expires_in: opt_dur("expires_in", &b.expires_in)?,
        rotate_every: opt_dur("rotate_every", &b.rotate_every)?,
        service: b.service,
        env: b.env,
        name: b.name,
        deliver_to: b.deliver_to,
        policy: KeyPolicy {
            rpm: b.rpm,
            tpm: b.tpm,
            max_concurrent: b.max_concurrent,
            budget_usd: b.budget_usd,
            models: b.models,
            allow_cidr: b.allow_cidr,
        },
    };
    let (view, secret) = app.create_key(n).await?;
    tracing::info!(key_id = %view.id, service = %view.service, env = %view.env, "virtual key created");
    let mut body = serde_json::to_value(&view).map_err(|e| OpError::Store(e.to_string()))?;
    body["secret"] = json!(secret.expose_secret());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPatch {
    #[serde(default, deserialize_with = "double")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    expires_in: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    rotate_every: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    deliver_to: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    max_concurrent: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double")]
    budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double")]
    models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    allow_cidr: Option<Option<Vec<String>>>,
}

async fn update_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Json(b): Json<KeyPatch>,
) -> Result<Response, OpError> {
    let now = now_ms();
    let u = KeyUpdate {
        name: b.name,
        expires_at_ms: match b.expires_in {
            None => None,
            Some(None) => Some(None),
            Some(Some(t)) => Some(Some(now + dur("expires_in", &t)?.as_millis() as i64)),
        },
        rotate_every: match b.rotate_every {
            None => None,
            Some(None) => Some(None),
            Some(Some(t)) => Some(Some(dur("rotate_every", &t)?)),
        },
        deliver_to: b.deliver_to,
        rpm: b.rpm,
        tpm: b.tpm,
        max_concurrent: b.max_concurrent,
        budget_usd: b.budget_usd,
        models: b.models,
        allow_cidr: b.allow_cidr,
    };
    let k = app.update_key(&id, u).await?;
    tracing::info!(key_id = %k.id, "virtual key updated");
    Ok(Json(k).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    grace: Option<String>,
    idempotency_key: Option<String>,
}

async fn rotate_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<RotateKey>>,
) -> Result<Response, OpError> {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let grace = opt_dur("grace", &b.grace)?;
    let r = app.rotate_key(&id, grace, b.idempotency_key.as_deref()).await?;
    tracing::info!(key_id = %r.key.id, "virtual key rotated");
    let mut body = serde_json::to_value(&r.key).map_err(|e| OpError::Store(e.to_string()))?;
    body["secret"] = json!(r.secret.expose_secret());
    body["old_secret_valid_until"] = json!(r.old_secret_valid_until);
    body["delivery"] = match r.delivery {
        None => json!(null),
        Some(Ok(t)) => json!({"delivered_to": t}),
        Some(Err(e)) => json!({"error": e}),
    };
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct KeyFilter {
    service: Option<String>,
    env: Option<String>,
    status: Option<String>,
}

async fn list_keys(State(app): State<Arc<App>>, Query(f): Query<KeyFilter>) -> Result<Response, OpError> {
    let keys: Vec<_> = app
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| f.service.as_ref().is_none_or(|s| &k.service == s || &k.service_id == s))
        .filter(|k| f.env.as_ref().is_none_or(|e| &k.env == e))
        .filter(|k| f.status.as_ref().is_none_or(|s| k.status.as_str() == s))
        .collect();
    Ok(Json(json!({ "data": keys })).into_response())
}

async fn get_key(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, OpError> {
    Ok(Json(app.get_key(&id).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

async fn set_status(app: &App, id: &str, status: KeyStatus, body: Option<Json<Reason>>) -> Result<Response, OpError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let k = app.set_key_status(id, status, reason.as_deref()).await?;
    tracing::info!(key_id = %k.id, status = status.as_str(), "virtual key status changed");
    Ok(Json(k).into_response())
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &id, KeyStatus::Revoked, body).await
}

async fn suspend_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &id, KeyStatus::Suspended, body).await
}

async fn resume_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &id, KeyStatus::Active, body).await
}

async fn decommission_service(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let (svc, revoked) = app.decommission_service(&name, reason.as_deref()).await?;
    tracing::info!(service_id = %svc.id, revoked, "service decommissioned");
    Ok(Json(json!({"service": svc, "revoked_keys": revoked})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Classify {
    secrets: Vec<String>,
}

/// Classify secrets found by `keyward scan --check-inventory`. The secrets
/// arrive in the body (admin channel) and are never logged or echoed.
async fn classify(State(app): State<Arc<App>>, Json(b): Json<Classify>) -> Result<Response, OpError> {
    if b.secrets.len() > 10_000 {
        return Err(OpError::Invalid("at most 10000 secrets per request".into()));
    }
    let secrets: Vec<SecretString> = b.secrets.into_iter().map(SecretString::from).collect();
    Ok(Json(json!({ "data": app.classify_secrets(&secrets).await })).into_response())
}

async fn review(State(app): State<Arc<App>>) -> Result<Response, OpError> {
    Ok(Json(json!({ "data": app.review().await? })).into_response())
}

#[derive(Deserialize)]
struct UsageQuery {
    since: Option<String>,
}

async fn usage(State(app): State<Arc<App>>, Query(q): Query<UsageQuery>) -> Result<Response, OpError> {
    let since = match q.since.as_deref() {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(s) => keyward_core::config::parse_duration("since", s).map_err(|e| OpError::Invalid(e.to_string()))?,
    };
    let since_ms = now_ms() - since.as_millis().min(i64::MAX as u128) as i64;
    let rows = app.usage_by_key(since_ms).await?;
    let services = app.list_services();
    let data: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let svc = services.iter().find(|s| s.id == r.service_id).map(|s| s.name.clone()).unwrap_or_default();
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["service"] = json!(svc);
            v
        })
        .collect();
    Ok(Json(json!({ "since": crate::state::rfc3339(since_ms), "data": data })).into_response())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.monitor_events_dropped.store(app.monitor.dropped(), std::sync::atomic::Ordering::Relaxed);
    let mut body = app.metrics.render(
        &app.keys,
        app.meter.dropped.load(std::sync::atomic::Ordering::Relaxed),
        &app.service_names(),
    );
    let st = app.secrets.stats();
    body.push_str("# HELP keyward_secret_fetches_total Fetches from secret sources, by outcome.\n# TYPE keyward_secret_fetches_total counter\n");
    body.push_str(&format!(
        "keyward_secret_fetches_total{{outcome=\"ok\"}} {}\n",
        st.fetches.saturating_sub(st.failures)
    ));
    body.push_str(&format!("keyward_secret_fetches_total{{outcome=\"failed\"}} {}\n", st.failures));
    body.push_str("# HELP keyward_secret_stale_serves_total Reads served with the last good value while the source failed.\n# TYPE keyward_secret_stale_serves_total counter\n");
    body.push_str(&format!("keyward_secret_stale_serves_total {}\n", st.stale_serves));
    body.push_str("# HELP keyward_secret_unavailable_total Reads refused: source failed beyond the stale window.\n# TYPE keyward_secret_unavailable_total counter\n");
    body.push_str(&format!("keyward_secret_unavailable_total {}\n", st.unavailable));
    body.push_str("# HELP keyward_secret_rotations_total Value changes seen at a source.\n# TYPE keyward_secret_rotations_total counter\n");
    body.push_str(&format!("keyward_secret_rotations_total {}\n", st.rotations));
    crate::metrics::header(
        &mut body,
        "keyward_upstream_secret_age_seconds",
        "gauge",
        "Age of the upstream key value in use, by upstream; above the cache TTL it is served stale.",
    );
    let mut ups = app.upstreams.all();
    ups.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    for (_, u) in ups {
        if let Some(age) = u.secret.age() {
            body.push_str(&format!(
                "keyward_upstream_secret_age_seconds{{upstream=\"{}\"}} {}\n",
                crate::metrics::escape(&u.name),
                age.as_secs_f64()
            ));
        }
    }
    body.push_str("# HELP keyward_secret_cache_ttl_seconds Secret cache TTL: values older than this are stale.\n# TYPE keyward_secret_cache_ttl_seconds gauge\n");
    body.push_str(&format!("keyward_secret_cache_ttl_seconds {}\n", app.cfg.secrets_cache_ttl.as_secs_f64()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    open: Option<bool>,
    limit: Option<usize>,
}

async fn list_alerts(State(app): State<Arc<App>>, Query(q): Query<AlertQuery>) -> Result<Response, OpError> {
    let rows = app.store.list_alerts(q.open.unwrap_or(false), q.limit.unwrap_or(500).min(10_000)).await?;
    let data: Vec<_> = rows.iter().map(crate::alerts::alert_view).collect();
    Ok(Json(json!({ "data": data })).into_response())
}

fn alert_not_found(id: &str) -> impl FnOnce(keyward_store::StoreError) -> OpError + '_ {
    move |e| match e {
        keyward_store::StoreError::NotFound(_) => OpError::NotFound(format!("alert {id:?}")),
        other => other.into(),
    }
}

async fn get_alert(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, OpError> {
    let a = app.store.get_alert(&id).await.map_err(alert_not_found(&id))?;
    let mut v = crate::alerts::alert_view(&a);
    let deliveries = app.store.list_deliveries(&id).await?;
    v["deliveries"] = deliveries
        .iter()
        .map(|d| {
            json!({"sink": d.sink, "event": d.event, "status": d.status, "attempts": d.attempts,
                   "last_error": d.last_error, "delivered_at": d.done_at_ms.filter(|_| d.status == "delivered").map(crate::state::rfc3339)})
        })
        .collect();
    Ok(Json(v).into_response())
}

async fn ack_alert(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Arc<TokenEntry>>,
    Path(id): Path<String>,
) -> Result<Response, OpError> {
    let a = app.store.ack_alert(&id, &who.id, now_ms()).await.map_err(alert_not_found(&id))?;
    tracing::info!(alert_id = %a.id, token_id = %who.id, "alert acknowledged");
    Ok(Json(crate::alerts::alert_view(&a)).into_response())
}

pub fn data_plane_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(crate::proxy::healthz))
        .route("/readyz", get(crate::proxy::healthz))
        .fallback(crate::proxy::forward)
        // deny by default: authentication wraps every data-plane route
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::proxy::authenticate))
        .with_state(app)
}
