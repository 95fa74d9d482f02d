//! The admin plane: `/admin/v1/...` JSON REST, `/metrics`, `/healthz`,
//! `/readyz`, on its own listener. Every route but the open ones needs an
//! admin token (`Authorization: Bearer kwa_...`) whose role allows the action.

use crate::index::TokenEntry;
use crate::state::{now_ms, App, OpError};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward_store::KeyStatus;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

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
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        match &self {
            OpError::Invalid(m) => admin_error(StatusCode::BAD_REQUEST, "invalid_request_error", m),
            OpError::NotFound(m) => admin_error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("{m} not found"),
            ),
            OpError::Conflict(m) => admin_error(
                StatusCode::CONFLICT,
                "conflict_error",
                &format!("{m} already exists"),
            ),
            OpError::Store(e) => {
                tracing::error!(error = %e, "admin operation failed in the store");
                admin_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "internal error",
                )
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
    let Some(entry) =
        token.and_then(|t| app.tokens.authenticate(&app.digester.digest(t), now_ms()))
    else {
        tracing::warn!(path = %path, "admin authentication failed");
        return admin_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid admin token",
        );
    };
    let action = if path.starts_with("/admin/v1/tokens") {
        Action::ManageTokens
    } else if req.method() == Method::GET || req.method() == Method::HEAD {
        Action::Read
    } else {
        Action::Write
    };
    if !role_allows(&entry.role, action) {
        return admin_error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "this token's role does not allow this action",
        );
    }
    req.extensions_mut().insert(entry);
    next.run(req).await
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/admin/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(
            "/admin/v1/services",
            get(list_services).post(create_service),
        )
        .route("/admin/v1/services/{name}", get(get_service))
        .route(
            "/admin/v1/upstreams",
            get(list_upstreams).post(create_upstream),
        )
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", get(get_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/usage", get(usage))
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::proxy::healthz))
        .route("/readyz", get(crate::proxy::healthz))
        .fallback(|| async {
            admin_error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "no such admin route",
            )
        })
        // authentication wraps every route; the open ones are named in OPEN_ROUTES
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admin_auth,
        ))
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
    Json(b): Json<NewService>,
) -> Result<Response, OpError> {
    let s = app.create_service(&b.name, &b.owner).await?;
    tracing::info!(service_id = %s.id, service = %s.name, "service created");
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn list_services(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "data": app.list_services() }))
}

async fn get_service(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, OpError> {
    Ok(Json(app.get_service(&name)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpstream {
    name: String,
    env: String,
    value: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

async fn create_upstream(
    State(app): State<Arc<App>>,
    Json(b): Json<NewUpstream>,
) -> Result<Response, OpError> {
    let value = b.value.map(SecretString::from);
    let u = app
        .create_upstream(&b.name, &b.env, value, b.reference.as_deref())
        .await?;
    tracing::info!(upstream_id = %u.id, upstream = %u.name, env = %u.env, "upstream key added");
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

async fn list_upstreams(State(app): State<Arc<App>>) -> Result<Response, OpError> {
    Ok(Json(json!({ "data": app.list_upstreams().await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    service: String,
    env: String,
    name: Option<String>,
}

async fn create_key(
    State(app): State<Arc<App>>,
    Extension(_who): Extension<Arc<TokenEntry>>,
    Json(b): Json<NewKey>,
) -> Result<Response, OpError> {
    let (view, secret) = app
        .create_key(&b.service, &b.env, b.name.as_deref())
        .await?;
    tracing::info!(key_id = %view.id, service = %view.service, env = %view.env, "virtual key created");
    let mut body = serde_json::to_value(&view).map_err(|e| OpError::Store(e.to_string()))?;
    body["secret"] = json!(secret.expose_secret());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct KeyFilter {
    service: Option<String>,
    env: Option<String>,
    status: Option<String>,
}

async fn list_keys(
    State(app): State<Arc<App>>,
    Query(f): Query<KeyFilter>,
) -> Result<Response, OpError> {
    let keys: Vec<_> = app
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| {
            f.service
                .as_ref()
                .is_none_or(|s| &k.service == s || &k.service_id == s)
        })
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
struct Revoke {
    reason: Option<String>,
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<Revoke>>,
) -> Result<Response, OpError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let k = app
        .set_key_status(&id, KeyStatus::Revoked, reason.as_deref())
        .await?;
    tracing::info!(key_id = %k.id, "virtual key revoked");
    Ok(Json(k).into_response())
}

#[derive(Deserialize)]
struct UsageQuery {
    since: Option<String>,
}

async fn usage(
    State(app): State<Arc<App>>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, OpError> {
    let since = match q.since.as_deref() {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(s) => keyward_core::config::parse_duration("since", s)
            .map_err(|e| OpError::Invalid(e.to_string()))?,
    };
    let since_ms = now_ms() - since.as_millis().min(i64::MAX as u128) as i64;
    let rows = app.usage_by_key(since_ms).await?;
    let services = app.list_services();
    let data: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let svc = services
                .iter()
                .find(|s| s.id == r.service_id)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["service"] = json!(svc);
            v
        })
        .collect();
    Ok(Json(json!({ "since": crate::state::rfc3339(since_ms), "data": data })).into_response())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let body = app.metrics.render(
        &app.keys,
        app.meter.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub fn data_plane_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(crate::proxy::healthz))
        .route("/readyz", get(crate::proxy::healthz))
        .fallback(crate::proxy::forward)
        // deny by default: authentication wraps every data-plane route
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::proxy::authenticate,
        ))
        .with_state(app)
}
