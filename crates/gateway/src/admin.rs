//! The admin plane: `/admin/v1/...` JSON REST, `/metrics`, `/healthz`,
//! `/readyz`, on its own listener. Every route but the open ones needs an
//! admin token (`Authorization: Bearer kwa_...`) whose role allows the action.

use crate::audit::Actor;
use crate::authguard::Plane;
use crate::index::TokenEntry;
use crate::keys::{KeyUpdate, NewKey};
use crate::state::{now_ms, App, NewToken, OpError};
use crate::upstreams::UpstreamSecret;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward_core::policy::{ClientSystem, KeyPolicy, ShieldMode, ToolPolicy};
use keyward_store::KeyStatus;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz", "/admin/v1/openapi.json"];
const OPENAPI: &str = include_str!("openapi.json");

/// The parts of the admin API a role is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Services,
    Keys,
    Upstreams,
    Tokens,
    Audit,
    Usage,
    Review,
    Scan,
    Metrics,
    Alerts,
}

/// What a request asks to do, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Read(Area),
    Write(Area),
}

/// The permission an admin route needs, from its method and path.
pub fn permission(method: &Method, path: &str) -> Perm {
    let read = method == Method::GET || method == Method::HEAD;
    let rest = path.strip_prefix("/admin/v1/").unwrap_or("");
    let area = match rest.split('/').next().unwrap_or("") {
        _ if path == "/metrics" => Area::Metrics,
        "services" => Area::Services,
        "keys" => Area::Keys,
        "upstreams" => Area::Upstreams,
        "tokens" => Area::Tokens,
        // signing the head adds no entry: part of reading (exporting) the log
        "audit" if rest == "audit/checkpoint" => return Perm::Read(Area::Audit),
        "audit" => Area::Audit,
        "usage" => Area::Usage,
        "review" => Area::Review,
        // classification reads the inventory; it changes nothing
        "scan" if rest == "scan/classify" => return Perm::Read(Area::Scan),
        "scan" => Area::Scan,
        "alerts" => Area::Alerts,
        // unknown routes: the strictest area (they answer 404 to those allowed)
        _ => Area::Tokens,
    };
    if read {
        Perm::Read(area)
    } else {
        Perm::Write(area)
    }
}

/// The role table. `service-owner` is further limited to its services by
/// the handlers (objects of other services answer 403 too).
pub fn role_allows(role: &str, perm: Perm) -> bool {
    use Area::*;
    match (role, perm) {
        ("owner", _) => true,
        ("operator", Perm::Read(a) | Perm::Write(a)) if matches!(a, Tokens | Audit) => false,
        ("operator", Perm::Read(_)) => true,
        ("operator", Perm::Write(a)) => matches!(a, Services | Keys | Upstreams | Scan | Alerts),
        ("auditor", p) => matches!(p, Perm::Read(_)),
        ("service-owner", Perm::Read(a)) => matches!(a, Services | Keys | Usage | Alerts),
        ("service-owner", Perm::Write(a)) => matches!(a, Keys | Alerts),
        _ => false,
    }
}

/// The authenticated caller of an admin request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Arc<TokenEntry>,
    pub actor: Actor,
}

impl Caller {
    /// Service names this caller is limited to (`None`: all).
    pub fn scope(&self) -> Option<&[String]> {
        (self.token.role == "service-owner").then_some(self.token.services.as_slice())
    }
    pub fn sees_service(&self, name: &str) -> bool {
        self.scope().is_none_or(|s| s.iter().any(|n| n == name))
    }
}

fn admin_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

const FORBIDDEN: &str = "this token's role does not allow this action";

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        match &self {
            OpError::Invalid(m) => admin_error(StatusCode::BAD_REQUEST, "invalid_request_error", m),
            OpError::NotFound(m) => admin_error(StatusCode::NOT_FOUND, "not_found_error", &format!("{m} not found")),
            OpError::Conflict(m) => admin_error(StatusCode::CONFLICT, "conflict_error", &format!("{m} already exists")),
            OpError::Forbidden => admin_error(StatusCode::FORBIDDEN, "permission_error", FORBIDDEN),
            OpError::Store(e) => {
                tracing::error!(error = %e, "admin operation failed in the store");
                admin_error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal error")
            }
        }
    }
}

/// Authenticate the admin token and check its role against the route.
async fn admin_auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if OPEN_ROUTES.contains(&path) {
        return next.run(req).await;
    }
    let now = now_ms();
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(wait) = ip.and_then(|ip| app.auth_guard.check(Plane::Admin, ip, now)) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.to_string())],
            Json(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "too many failed authentications from this address; retry later"}})),
        )
            .into_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(entry) = token.and_then(|t| app.tokens.authenticate(&app.digester.digest(t), now)) else {
        if let Some(ip) = ip {
            app.auth_guard.failed(Plane::Admin, ip, now);
        }
        tracing::warn!(path = %path, "admin authentication failed");
        return admin_error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid admin token");
    };
    app.tokens.touch(&entry.id, now);
    if !role_allows(&entry.role, permission(req.method(), path)) {
        return OpError::Forbidden.into_response();
    }
    let actor = Actor::token(&entry, ip.map(|i| i.to_string()));
    req.extensions_mut().insert(Caller { token: entry, actor });
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
        .route("/admin/v1/upstreams/{name}/compromised", post(upstream_compromised))
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", get(get_key).patch(update_key))
        .route("/admin/v1/keys/{id}/rotate", post(rotate_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{id}/suspend", post(suspend_key))
        .route("/admin/v1/keys/{id}/resume", post(resume_key))
        .route("/admin/v1/tokens", get(list_tokens).post(create_token))
        .route("/admin/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/v1/audit", get(audit_entries))
        .route("/admin/v1/audit/pubkey", get(audit_pubkey))
        .route("/admin/v1/audit/checkpoint", post(audit_checkpoint))
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

async fn create_service(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewService>,
) -> Result<Response, OpError> {
    let s = app.create_service(&c.actor, &b.name, &b.owner).await?;
    tracing::info!(service_id = %s.id, service = %s.name, "service created");
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn list_services(State(app): State<Arc<App>>, Extension(c): Extension<Caller>) -> Json<serde_json::Value> {
    let data: Vec<_> = app.list_services().into_iter().filter(|s| c.sees_service(&s.name)).collect();
    Json(json!({ "data": data }))
}

async fn get_service(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, OpError> {
    match app.get_service(&name) {
        Ok(s) if c.sees_service(&s.name) => Ok(Json(s).into_response()),
        // nothing about services the caller cannot see, not even whether they exist
        _ if c.scope().is_some() => Err(OpError::Forbidden),
        r => Ok(Json(r?).into_response()),
    }
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

async fn create_upstream(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewUpstream>,
) -> Result<Response, OpError> {
    let secret = upstream_secret(b.value, b.reference)?;
    let u = app.create_upstream(&c.actor, &b.name, &b.env, secret, b.anthropic_key_id).await?;
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
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Json(b): Json<RotateUpstream>,
) -> Result<Response, OpError> {
    let secret = upstream_secret(b.value, b.reference)?;
    let grace = opt_dur("grace", &b.grace)?;
    let u = app.rotate_upstream(&c.actor, &name, secret, grace, b.anthropic_key_id).await?;
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
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Option<Json<Retire>>,
) -> Result<Response, OpError> {
    let force = body.map(|Json(b)| b.force).unwrap_or(false);
    let u = app.retire_upstream(&c.actor, &name, force).await?;
    tracing::info!(upstream_id = %u.id, upstream = %u.name, force, "upstream key retired");
    Ok(Json(u).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Compromised {
    /// Where it was found (a path, a commit): recorded in the audit entry.
    found_in: Option<String>,
}

async fn upstream_compromised(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Option<Json<Compromised>>,
) -> Result<Response, OpError> {
    let found_in = body.and_then(|Json(b)| b.found_in);
    let u = app.mark_upstream_compromised(&c.actor, &name, found_in.as_deref()).await?;
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
    shield: Option<ShieldMode>,
    shield_threshold: Option<f32>,
    shield_deep: Option<keyward_core::policy::DeepStage>,
    pin_system: Option<String>,
    client_system: Option<ClientSystem>,
    guard_instruction: Option<bool>,
    spotlight: Option<bool>,
    allow_tools: Option<Vec<String>>,
    tool_policy: Option<ToolPolicy>,
    tool_rules: Option<Vec<String>>,
}

async fn create_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewKeyBody>,
) -> Result<Response, OpError> {
    if c.scope().is_some() {
        let visible = app.get_service(&b.service).ok().is_some_and(|s| c.sees_service(&s.name));
        if !visible {
            return Err(OpError::Forbidden);
        }
    }
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
            shield: b.shield,
            shield_threshold: b.shield_threshold,
            shield_deep: b.shield_deep,
            pin_system: b.pin_system,
            client_system: b.client_system,
            guard_instruction: b.guard_instruction,
            spotlight: b.spotlight,
            allow_tools: b.allow_tools,
            tool_policy: b.tool_policy,
            tool_rules: b.tool_rules,
        },
    };
    let (view, secret) = app.create_key(&c.actor, n).await?;
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
    #[serde(default, deserialize_with = "double")]
    shield: Option<Option<ShieldMode>>,
    #[serde(default, deserialize_with = "double")]
    shield_threshold: Option<Option<f32>>,
    #[serde(default, deserialize_with = "double")]
    shield_deep: Option<Option<keyward_core::policy::DeepStage>>,
    #[serde(default, deserialize_with = "double")]
    pin_system: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    client_system: Option<Option<ClientSystem>>,
    #[serde(default, deserialize_with = "double")]
    guard_instruction: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double")]
    spotlight: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double")]
    allow_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    tool_policy: Option<Option<ToolPolicy>>,
    #[serde(default, deserialize_with = "double")]
    tool_rules: Option<Option<Vec<String>>>,
}

async fn update_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<KeyPatch>,
) -> Result<Response, OpError> {
    in_scope(&app, &c, &id).await?;
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
        shield: b.shield,
        shield_threshold: b.shield_threshold,
        shield_deep: b.shield_deep,
        pin_system: b.pin_system,
        client_system: b.client_system,
        guard_instruction: b.guard_instruction,
        spotlight: b.spotlight,
        allow_tools: b.allow_tools,
        tool_policy: b.tool_policy,
        tool_rules: b.tool_rules,
    };
    let k = app.update_key(&c.actor, &id, u).await?;
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
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<RotateKey>>,
) -> Result<Response, OpError> {
    in_scope(&app, &c, &id).await?;
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let grace = opt_dur("grace", &b.grace)?;
    let r = app.rotate_key(&c.actor, &id, grace, b.idempotency_key.as_deref()).await?;
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

async fn list_keys(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Query(f): Query<KeyFilter>,
) -> Result<Response, OpError> {
    let keys: Vec<_> = app
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| c.sees_service(&k.service))
        .filter(|k| f.service.as_ref().is_none_or(|s| &k.service == s || &k.service_id == s))
        .filter(|k| f.env.as_ref().is_none_or(|e| &k.env == e))
        .filter(|k| f.status.as_ref().is_none_or(|s| k.status.as_str() == s))
        .collect();
    Ok(Json(json!({ "data": keys })).into_response())
}

async fn get_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, OpError> {
    in_scope(&app, &c, &id).await?;
    Ok(Json(app.get_key(&id).await?).into_response())
}

/// A service-owner may touch only keys of its services; any other key id,
/// existing or not, is refused the same way.
async fn in_scope(app: &App, c: &Caller, key_id: &str) -> Result<(), OpError> {
    if c.scope().is_none() {
        return Ok(());
    }
    match app.get_key(key_id).await {
        Ok(k) if c.sees_service(&k.service) => Ok(()),
        _ => Err(OpError::Forbidden),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

async fn set_status(
    app: &App,
    c: &Caller,
    id: &str,
    status: KeyStatus,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    in_scope(app, c, id).await?;
    let reason = body.and_then(|Json(b)| b.reason);
    let k = app.set_key_status(&c.actor, id, status, reason.as_deref()).await?;
    tracing::info!(key_id = %k.id, status = status.as_str(), "virtual key status changed");
    Ok(Json(k).into_response())
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &c, &id, KeyStatus::Revoked, body).await
}

async fn suspend_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &c, &id, KeyStatus::Suspended, body).await
}

async fn resume_key(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    set_status(&app, &c, &id, KeyStatus::Active, body).await
}

async fn decommission_service(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Response, OpError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let (svc, revoked) = app.decommission_service(&c.actor, &name, reason.as_deref()).await?;
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

async fn usage(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, OpError> {
    let since = match q.since.as_deref() {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(s) => keyward_core::config::parse_duration("since", s).map_err(|e| OpError::Invalid(e.to_string()))?,
    };
    let since_ms = now_ms() - since.as_millis().min(i64::MAX as u128) as i64;
    let rows = app.usage_by_key(since_ms).await?;
    let services = app.list_services();
    let data: Vec<_> = rows
        .into_iter()
        .filter_map(|r| {
            let svc = services.iter().find(|s| s.id == r.service_id).map(|s| s.name.clone()).unwrap_or_default();
            if !c.sees_service(&svc) {
                return None;
            }
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["service"] = json!(svc);
            Some(v)
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
    let (hits, misses) = app.shield_cache.stats();
    crate::metrics::header(
        &mut body,
        "keyward_shield_cache_total",
        "counter",
        "Screened parts of at least 256 bytes, by whether their score was remembered from an earlier request of the same key.",
    );
    body.push_str(&format!("keyward_shield_cache_total{{result=\"hit\"}} {hits}\n"));
    body.push_str(&format!("keyward_shield_cache_total{{result=\"miss\"}} {misses}\n"));
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

async fn create_token(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewToken>,
) -> Result<Response, OpError> {
    let (view, secret) = app.create_token(&c.actor, b).await?;
    tracing::info!(token_id = %view.id, role = %view.role, "admin token created");
    let mut body = serde_json::to_value(&view).map_err(|e| OpError::Store(e.to_string()))?;
    body["secret"] = json!(secret.expose_secret());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_tokens(State(app): State<Arc<App>>) -> Result<Response, OpError> {
    Ok(Json(json!({ "data": app.list_tokens().await? })).into_response())
}

async fn revoke_token(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, OpError> {
    let t = app.revoke_token(&c.actor, &id).await?;
    tracing::info!(token_id = %t.id, "admin token revoked");
    Ok(Json(t).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<u64>,
    /// Entries at or after this time (RFC 3339).
    since: Option<String>,
    limit: Option<usize>,
}

/// A page of the chain with the checkpoints that fall in it, in export order:
/// `{"data":[{"type":"entry",...},{"type":"checkpoint",...}], "next_after": N}`.
async fn audit_entries(State(app): State<Arc<App>>, Query(q): Query<AuditQuery>) -> Result<Response, OpError> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = q.after.unwrap_or(0);
    let since_ms = match q.since.as_deref() {
        None => None,
        Some(t) => Some(
            humantime::parse_rfc3339_weak(t)
                .map_err(|_| OpError::Invalid(format!("since: {t:?} is not an RFC 3339 time")))?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
    };
    let entries = app.store.audit_entries(after, limit).await?;
    let next_after = entries.last().map(|e| e.seq);
    let checkpoints = app.store.checkpoints(after, next_after.unwrap_or(after)).await?;
    let entries: Vec<_> = match since_ms {
        None => entries,
        Some(t) => entries.into_iter().filter(|e| crate::audit::ts_ms_of(e).is_none_or(|ms| ms >= t)).collect(),
    };
    let lines = crate::audit::export_lines(&entries, &checkpoints);
    let head_seq = app.store.audit_head().await?.map_or(0, |h| h.seq);
    Ok(Json(json!({ "data": lines, "next_after": next_after, "head_seq": head_seq })).into_response())
}

async fn audit_pubkey(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "public_key": app.audit_public_key() }))
}

/// Sign the chain head now (an export ends with one, so that truncating its
/// tail is detected).
async fn audit_checkpoint(State(app): State<Arc<App>>) -> Result<Response, OpError> {
    Ok(Json(json!({ "checkpoint": app.checkpoint().await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    open: Option<bool>,
    limit: Option<usize>,
}

/// A service-owner sees alerts of its services' keys only (read from the
/// in-memory index, not the store).
fn sees_alert(app: &App, c: &Caller, a: &keyward_store::AlertRow) -> bool {
    if c.scope().is_none() {
        return true;
    }
    let Some(entry) = a.key_id.as_deref().and_then(|id| app.keys.get(id)) else { return false };
    app.service(&entry.service_id).is_some_and(|s| c.sees_service(&s.name))
}

async fn list_alerts(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Query(q): Query<AlertQuery>,
) -> Result<Response, OpError> {
    let rows = app.store.list_alerts(q.open.unwrap_or(false), q.limit.unwrap_or(500).min(10_000)).await?;
    let mut data = Vec::with_capacity(rows.len());
    for a in &rows {
        if sees_alert(&app, &c, a) {
            data.push(crate::alerts::alert_view(a));
        }
    }
    Ok(Json(json!({ "data": data })).into_response())
}

fn alert_not_found(id: &str) -> impl FnOnce(keyward_store::StoreError) -> OpError + '_ {
    move |e| match e {
        keyward_store::StoreError::NotFound(_) => OpError::NotFound(format!("alert {id:?}")),
        other => other.into(),
    }
}

async fn get_alert(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, OpError> {
    let a = match app.store.get_alert(&id).await {
        Ok(a) if sees_alert(&app, &c, &a) => a,
        _ if c.scope().is_some() => return Err(OpError::Forbidden),
        Err(e) => return Err(alert_not_found(&id)(e)),
        Ok(_) => return Err(OpError::Forbidden),
    };
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
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, OpError> {
    if c.scope().is_some() {
        let visible = match app.store.get_alert(&id).await {
            Ok(a) => sees_alert(&app, &c, &a),
            Err(_) => false,
        };
        if !visible {
            return Err(OpError::Forbidden);
        }
    }
    let a = app.store.ack_alert(&id, &c.token.id, now_ms()).await.map_err(alert_not_found(&id))?;
    app.audit_event(
        &c.actor,
        "alert.ack",
        vec![a.id.clone()],
        json!({ "rule": a.rule, "key_id": a.key_id, "upstream": a.upstream }),
    )
    .await?;
    tracing::info!(alert_id = %a.id, token_id = %c.token.id, "alert acknowledged");
    Ok(Json(crate::alerts::alert_view(&a)).into_response())
}

#[cfg(test)]
mod openapi_tests {
    /// Every route the router serves is in the OpenAPI document, with its methods.
    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let src = include_str!("admin.rs");
        let mut seen = 0;
        for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let path = line.split('"').nth(1).unwrap();
            let entry = paths.get(path).unwrap_or_else(|| panic!("{path} is not in openapi.json"));
            for m in ["get", "post", "patch", "delete"] {
                if line.contains(&format!("{m}(")) {
                    assert!(entry.get(m).is_some(), "{m} {path} is not in openapi.json");
                }
            }
            seen += 1;
        }
        assert!(seen > 25, "found only {seen} routes");
    }
}
