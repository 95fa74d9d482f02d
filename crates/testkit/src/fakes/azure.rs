//! A fake Azure: the Microsoft identity platform token endpoint (client
//! credentials), the instance metadata service (managed identity) and Key
//! Vault's get-secret operation.
//!
//! - `POST /{tenant}/oauth2/v2.0/token`, form `client_id`, `client_secret`,
//!   `scope=https://vault.azure.net/.default`, `grant_type=client_credentials`
//!   → `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":..}`;
//!   an unknown tenant is 400 `invalid_request` (AADSTS90002), an unknown
//!   client 400 `unauthorized_client` (AADSTS700016), a wrong secret 401
//!   `invalid_client` (AADSTS7000215).
//! - `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net[&client_id=]`
//!   with `Metadata: true` → the token with string-valued `expires_in`.
//! - `GET /secrets/{name}[/{version}]?api-version=7.x` with `Host:
//!   {vault}.vault.azure.net` and `Authorization: Bearer` → `{"value","id","attributes",..}`;
//!   no token: 401 with the `WWW-Authenticate` challenge; denied 403
//!   `Forbidden`/`AccessDenied`; missing 404 `SecretNotFound`; a disabled
//!   version 403 `Forbidden`/`SecretDisabled`.

use super::{lock, parse_form, Recorded, Running, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const VAULT_SUFFIX: &str = "vault.azure.net";

struct Version {
    id: String,
    value: String,
    enabled: bool,
    created: u64,
}

#[derive(Default)]
struct Inner {
    tenant: String,
    client_id: String,
    client_secret: String,
    managed_identities: HashSet<String>,
    system_identity: bool,
    tokens: HashSet<String>,
    issued: u64,
    secrets: HashMap<(String, String), Vec<Version>>,
    denied: HashSet<(String, String)>,
    log: Vec<Recorded>,
}

pub struct FakeAzure {
    server: Running,
    state: Shared<Inner>,
}

impl FakeAzure {
    /// An Azure with one app registration (`tenant`, `client_id`,
    /// `client_secret`) allowed to read secrets.
    pub async fn start(tenant: &str, client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Inner {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..Inner::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        Ok(FakeAzure { server: Running::start(app).await?, state })
    }

    /// Base URL: the authority host (`AZURE_AUTHORITY_HOST`), the IMDS base
    /// and the Key Vault endpoint override all point here.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Give the VM a system-assigned identity (no `client_id`), or a
    /// user-assigned one with this client id.
    pub fn enable_managed_identity(&self, client_id: Option<&str>) {
        let mut s = lock(&self.state);
        match client_id {
            None => s.system_identity = true,
            Some(c) => {
                s.managed_identities.insert(c.to_string());
            }
        }
    }

    /// Add a version to `vault/name`; returns its version id (32 hex).
    pub fn set_secret(&self, vault: &str, name: &str, value: &str) -> String {
        let mut s = lock(&self.state);
        s.issued += 1;
        let n = s.issued;
        let vs = s.secrets.entry((vault.into(), name.into())).or_default();
        let id = format!("{:016x}{:016x}", 0x6b65_7977_6172_6400u64 + vs.len() as u64, n);
        vs.push(Version { id: id.clone(), value: value.to_string(), enabled: true, created: 1_767_225_600 + n });
        id
    }

    /// Disable the current version.
    pub fn disable_current(&self, vault: &str, name: &str) {
        let mut s = lock(&self.state);
        if let Some(v) = s.secrets.get_mut(&(vault.to_string(), name.to_string())).and_then(|vs| vs.last_mut()) {
            v.enabled = false;
        }
    }

    /// The access policy refuses `get` on this secret.
    pub fn deny(&self, vault: &str, name: &str) {
        lock(&self.state).denied.insert((vault.to_string(), name.to_string()));
    }

    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }
}

fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "error_codes": [description.split(':').next().unwrap_or("").trim_start_matches("AADSTS").parse::<u64>().unwrap_or(0)],
            "timestamp": "2026-01-01 00:00:00Z",
        })),
    )
        .into_response()
}

fn kv_error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut e = json!({"error": {"code": code, "message": message}});
    if let Some(i) = inner {
        e["error"]["innererror"] = json!({"code": i});
    }
    (status, axum::Json(e)).into_response()
}

fn issue(s: &mut Inner) -> String {
    s.issued += 1;
    let token = format!("eyJ0eXAiOiJKV1QifQ.fake-aad-{}", s.issued);
    s.tokens.insert(token.clone());
    token
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
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let path = uri.path().to_string();
    let query = parse_form(uri.query().unwrap_or(""));

    // AAD v2 token endpoint
    if let Some(tenant) = path.strip_prefix('/').and_then(|p| p.strip_suffix("/oauth2/v2.0/token")) {
        if method != Method::POST || !header("content-type").starts_with("application/x-www-form-urlencoded") {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
            );
        }
        if tenant != s.tenant {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("AADSTS90002: Tenant '{tenant}' not found."),
            );
        }
        let form = parse_form(&String::from_utf8_lossy(&body));
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "client_credentials" {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            );
        }
        if get("scope") != "https://vault.azure.net/.default" {
            return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.");
        }
        if get("client_id") != s.client_id {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        }
        if get("client_secret") != s.client_secret {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            );
        }
        let token = issue(&mut s);
        return axum::Json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token
        }))
        .into_response();
    }

    // IMDS managed identity
    if path == "/metadata/identity/oauth2/token" {
        if header("metadata") != "true" {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
                ),
            )
                .into_response();
        }
        if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_request", "error_description": "Invalid api-version"})),
            )
                .into_response();
        }
        if query.get("resource").map(String::as_str) != Some("https://vault.azure.net") {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_resource", "error_description": "AADSTS500011: The resource principal was not found."}))).into_response();
        }
        let allowed = match query.get("client_id") {
            Some(c) => s.managed_identities.contains(c),
            None => s.system_identity,
        };
        if !allowed {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_request", "error_description": "Identity not found"})),
            )
                .into_response();
        }
        let token = issue(&mut s);
        return axum::Json(json!({
            "access_token": token,
            "client_id": query.get("client_id").cloned().unwrap_or_else(|| "system-assigned".into()),
            "expires_in": "86399",
            "expires_on": "1767312000",
            "ext_expires_in": "86399",
            "not_before": "1767225300",
            "resource": "https://vault.azure.net",
            "token_type": "Bearer"
        }))
        .into_response();
    }

    // Key Vault: GET /secrets/{name}[/{version}]
    let Some(rest) = path.strip_prefix("/secrets/") else {
        return kv_error(StatusCode::NOT_FOUND, "NotFound", "Not found", None);
    };
    let host = header("host").to_string();
    let Some(vault) = host.strip_suffix(&format!(".{VAULT_SUFFIX}")) else {
        return kv_error(StatusCode::NOT_FOUND, "NotFound", "Unknown vault host", None);
    };
    if method != Method::GET {
        return kv_error(StatusCode::METHOD_NOT_ALLOWED, "BadParameter", "Method not allowed", None);
    }
    if !query.get("api-version").is_some_and(|v| v.starts_with("7.")) {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version parameter.",
            None,
        );
    }
    let token = header("authorization").strip_prefix("Bearer ").unwrap_or("");
    if token.is_empty() {
        let mut r = kv_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            None,
        );
        if let Ok(v) = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
            s.tenant
        )
        .parse()
        {
            r.headers_mut().insert("www-authenticate", v);
        }
        return r;
    }
    if !s.tokens.contains(token) {
        return kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", "AKV10022: Invalid audience or token.", None);
    }
    let (name, version) = match rest.trim_end_matches('/').split_once('/') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (rest.trim_end_matches('/').to_string(), None),
    };
    let key = (vault.to_string(), name.clone());
    if s.denied.contains(&key) {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The user, group or application does not have secrets get permission on key vault.",
            Some("AccessDenied"),
        );
    }
    let not_found = || {
        kv_error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault."),
            None,
        )
    };
    let Some(versions) = s.secrets.get(&key) else {
        return not_found();
    };
    let found = match &version {
        None => versions.last(),
        Some(id) => versions.iter().find(|v| &v.id == id),
    };
    let Some(v) = found else {
        return not_found();
    };
    if !v.enabled {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    axum::Json(json!({
        "value": v.value,
        "id": format!("https://{vault}.{VAULT_SUFFIX}/secrets/{name}/{}", v.id),
        "attributes": {
            "enabled": true,
            "created": v.created,
            "updated": v.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90
        },
        "tags": {}
    }))
    .into_response()
}
