//! A fake HashiCorp Vault: KV version 2 secrets engine, token and AppRole
//! auth, namespaces. Follows the HTTP API documentation:
//!
//! - `GET /v1/{mount}/data/{path}[?version=N]` →
//!   `{"data":{"data":{..},"metadata":{"version":N,"created_time":..,"deletion_time":"","destroyed":false,"custom_metadata":null}}, ...}`;
//!   a missing secret or version is `404 {"errors":[]}`; a deleted or destroyed
//!   version is 404 with `data.data = null` and its metadata.
//! - `POST /v1/{mount}/data/{path}` with `{"data":{..},"options":{"cas":N}}` →
//!   `{"data":{"version":N+1,...}}`; a `cas` that does not match the current
//!   version is `400 {"errors":["check-and-set parameter did not match the current version"]}`.
//! - `POST /v1/auth/approle/login` with `{"role_id","secret_id"}` →
//!   `{"auth":{"client_token":..,"lease_duration":..,"renewable":true,...}}`;
//!   wrong credentials are `400 {"errors":["invalid role or secret ID"]}`.
//! - Every other request needs `X-Vault-Token` with a live token (else
//!   `403 {"errors":["permission denied"]}`) and, when the fake has a namespace,
//!   `X-Vault-Namespace` naming it (a token is valid in its namespace only).

use super::{lock, Recorded, Running, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Version {
    data: Map<String, Value>,
    created: u64,
    deleted: bool,
}

#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    approles: Vec<(String, String)>,
    lease_seconds: u64,
    namespace: Option<String>,
    mounts: HashSet<String>,
    kv: HashMap<(String, String), Vec<Version>>,
    denied: HashSet<(String, String)>,
    issued: u64,
    clock: u64,
    log: Vec<Recorded>,
}

pub struct FakeVault {
    server: Running,
    state: Shared<Inner>,
}

impl FakeVault {
    /// A Vault with a KV v2 engine mounted at `secret/`.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Inner {
            mounts: HashSet::from(["secret".to_string()]),
            lease_seconds: 3600,
            ..Inner::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        Ok(FakeVault { server: Running::start(app).await?, state })
    }

    /// The `VAULT_ADDR` of this fake.
    pub fn addr(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn add_token(&self, token: &str) {
        lock(&self.state).tokens.insert(token.to_string());
    }

    /// Revoke every token (AppRole tokens too): the next request with one is refused.
    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    pub fn add_approle(&self, role_id: &str, secret_id: &str) {
        lock(&self.state).approles.push((role_id.to_string(), secret_id.to_string()));
    }

    /// Require `X-Vault-Namespace: ns` on every request.
    pub fn set_namespace(&self, ns: &str) {
        lock(&self.state).namespace = Some(ns.to_string());
    }

    pub fn mount_kv(&self, mount: &str) {
        lock(&self.state).mounts.insert(mount.to_string());
    }

    /// Write a new version of `mount/path`; returns its version number.
    pub fn put(&self, mount: &str, path: &str, data: Value) -> u64 {
        let mut s = lock(&self.state);
        s.clock += 1;
        let created = s.clock;
        let versions = s.kv.entry((mount.into(), path.into())).or_default();
        versions.push(Version { data: data.as_object().cloned().unwrap_or_default(), created, deleted: false });
        versions.len() as u64
    }

    /// Soft-delete one version (`DELETE .../data` or `POST .../delete`).
    pub fn delete_version(&self, mount: &str, path: &str, version: u64) {
        let mut s = lock(&self.state);
        if let Some(v) =
            s.kv.get_mut(&(mount.to_string(), path.to_string()))
                .and_then(|vs| vs.get_mut(version.saturating_sub(1) as usize))
        {
            v.deleted = true;
        }
    }

    /// Policies refuse reading and writing `mount/path`.
    pub fn deny(&self, mount: &str, path: &str) {
        lock(&self.state).denied.insert((mount.to_string(), path.to_string()));
    }

    /// The data of the current version.
    pub fn current(&self, mount: &str, path: &str) -> Option<Value> {
        let s = lock(&self.state);
        s.kv.get(&(mount.to_string(), path.to_string())).and_then(|vs| vs.last()).map(|v| Value::Object(v.data.clone()))
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }
}

fn errors(status: StatusCode, msgs: &[&str]) -> Response {
    (status, axum::Json(json!({ "errors": msgs }))).into_response()
}

fn envelope(data: Value, auth: Value) -> Response {
    axum::Json(json!({
        "request_id": "8a6c3e3e-0000-4000-8000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": auth,
        "mount_type": "kv"
    }))
    .into_response()
}

fn timestamp(n: u64) -> String {
    format!("2026-01-01T00:{:02}:{:02}.000000000Z", (n / 60) % 60, n % 60)
}

fn metadata(v: &Version, number: u64) -> Value {
    json!({
        "created_time": timestamp(v.created),
        "custom_metadata": null,
        "deletion_time": if v.deleted { timestamp(v.created + 1) } else { String::new() },
        "destroyed": false,
        "version": number
    })
}

async fn handle(
    State(state): State<Shared<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = lock(&state);
    s.log.push(Recorded::of(&method, &uri, &headers));
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return errors(StatusCode::NOT_FOUND, &[]);
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(ns) = &s.namespace {
        if header("x-vault-namespace").as_deref() != Some(ns.as_str()) {
            // in another namespace, the token and the path mean nothing
            return errors(StatusCode::FORBIDDEN, &["permission denied"]);
        }
    }

    // AppRole login: the only unauthenticated route
    if let Some(mount) = rest.strip_prefix("auth/").and_then(|r| r.strip_suffix("/login")) {
        if method != Method::POST || mount != "approle" {
            return errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]);
        }
        let Ok(req) = serde_json::from_slice::<Value>(&body) else {
            return errors(StatusCode::BAD_REQUEST, &["failed to parse JSON input"]);
        };
        let (Some(role), Some(secret)) = (req["role_id"].as_str(), req["secret_id"].as_str()) else {
            return errors(StatusCode::BAD_REQUEST, &["missing role_id"]);
        };
        if !s.approles.iter().any(|(r, sid)| r == role && sid == secret) {
            return errors(StatusCode::BAD_REQUEST, &["invalid role or secret ID"]);
        }
        s.issued += 1;
        let token = format!("hvs.fake-approle-{}", s.issued);
        s.tokens.insert(token.clone());
        let lease = s.lease_seconds;
        return envelope(
            Value::Null,
            json!({
                "client_token": token,
                "accessor": format!("accessor-{}", s.issued),
                "policies": ["default", "keyward"],
                "token_policies": ["default", "keyward"],
                "metadata": {"role_name": "keyward"},
                "lease_duration": lease,
                "renewable": true,
                "entity_id": "",
                "token_type": "service",
                "orphan": true
            }),
        );
    }

    match header("x-vault-token") {
        Some(t) if s.tokens.contains(&t) => {}
        _ => return errors(StatusCode::FORBIDDEN, &["permission denied"]),
    }

    // KV v2 data path: {mount}/data/{path}
    let Some((mount, kv_path)) = rest.split_once("/data/") else {
        return errors(StatusCode::NOT_FOUND, &["no handler for route"]);
    };
    if !s.mounts.contains(mount) || kv_path.is_empty() {
        return errors(StatusCode::NOT_FOUND, &[&format!("no handler for route \"{rest}\". route entry not found.")]);
    }
    let key = (mount.to_string(), kv_path.to_string());
    if s.denied.contains(&key) {
        return errors(StatusCode::FORBIDDEN, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    match method {
        Method::GET => {
            let query = super::parse_form(uri.query().unwrap_or(""));
            let wanted: u64 = match query.get("version").map(|v| v.parse::<u64>()) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return errors(StatusCode::BAD_REQUEST, &["invalid version"]),
            };
            let Some(versions) = s.kv.get(&key) else {
                return errors(StatusCode::NOT_FOUND, &[]);
            };
            let number = if wanted == 0 { versions.len() as u64 } else { wanted };
            let Some(v) = versions.get(number.saturating_sub(1) as usize) else {
                return errors(StatusCode::NOT_FOUND, &[]);
            };
            if number == 0 {
                return errors(StatusCode::NOT_FOUND, &[]);
            }
            if v.deleted {
                // Vault: 404 with the metadata and no data
                let body = json!({"data": {"data": null, "metadata": metadata(v, number)}});
                return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            }
            envelope(json!({"data": v.data, "metadata": metadata(v, number)}), Value::Null)
        }
        Method::POST | Method::PUT => {
            let Ok(req) = serde_json::from_slice::<Value>(&body) else {
                return errors(StatusCode::BAD_REQUEST, &["failed to parse JSON input"]);
            };
            let Some(data) = req.get("data").and_then(Value::as_object).cloned() else {
                return errors(StatusCode::BAD_REQUEST, &["no data provided"]);
            };
            let current = s.kv.get(&key).map_or(0, |v| v.len() as u64);
            if let Some(cas) = req.pointer("/options/cas") {
                if cas.as_u64() != Some(current) {
                    return errors(
                        StatusCode::BAD_REQUEST,
                        &["check-and-set parameter did not match the current version"],
                    );
                }
            }
            s.clock += 1;
            let created = s.clock;
            let versions = s.kv.entry(key).or_default();
            versions.push(Version { data, created, deleted: false });
            let number = versions.len() as u64;
            let meta = versions.last().map(|v| metadata(v, number)).unwrap_or(Value::Null);
            envelope(meta, Value::Null)
        }
        _ => errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]),
    }
}
