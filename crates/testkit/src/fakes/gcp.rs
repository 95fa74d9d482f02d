//! A fake Google Cloud: the OAuth 2.0 token endpoint (JWT bearer grant with
//! an RS256-signed service-account assertion), the metadata server's token
//! endpoint, and Secret Manager's `versions/V:access`.
//!
//! - `POST /token`, `application/x-www-form-urlencoded`,
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`:
//!   the JWT header must be `{"alg":"RS256","typ":"JWT","kid":KEY_ID}`, the
//!   claims `iss` = the service account, `aud` = this token URL, `scope`
//!   containing `cloud-platform`, `iat` within 5 minutes of now and
//!   `exp - iat` ≤ 3600; the signature is verified with the key's public half.
//!   A bad grant is `400 {"error":"invalid_grant",...}`.
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token` needs
//!   `Metadata-Flavor: Google` (else 403).
//! - `GET /v1/projects/P/secrets/S/versions/V:access` with `Authorization:
//!   Bearer TOKEN`: `{"name":"projects/NUMBER/secrets/S/versions/N","payload":{"data":B64,"dataCrc32c":"DEC"}}`;
//!   `latest` is the newest enabled version; errors are Google's
//!   `{"error":{"code","message","status"}}` with 401 UNAUTHENTICATED, 403
//!   PERMISSION_DENIED, 404 NOT_FOUND, 400 FAILED_PRECONDITION (disabled).

use super::{lock, parse_form, Recorded, Running, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A 2048-bit RSA key made for these tests only (PKCS#8 PEM). It signs
/// nothing outside this fake.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("gcp_test_key.pem");
pub const CLIENT_EMAIL: &str = "keyward-test@keyward-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
pub const PROJECT_NUMBER: &str = "123456789012";
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Version {
    data: Vec<u8>,
    enabled: bool,
}

#[derive(Default)]
struct Inner {
    base: String,
    public_key: Vec<u8>,
    tokens: HashSet<String>,
    issued: u64,
    secrets: HashMap<(String, String), Vec<Version>>,
    denied: HashSet<(String, String)>,
    log: Vec<Recorded>,
}

pub struct FakeGcp {
    server: Running,
    state: Shared<Inner>,
}

fn public_key_der() -> std::io::Result<Vec<u8>> {
    let b64: String = TEST_PRIVATE_KEY_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).map_err(|e| std::io::Error::other(e.to_string()))?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
}

impl FakeGcp {
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Inner { public_key: public_key_der()?, ..Inner::default() }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = Running::start(app).await?;
        lock(&state).base = format!("http://{}", server.addr);
        Ok(FakeGcp { server, state })
    }

    /// The Secret Manager endpoint (`KEYWARD_GCP_SECRETMANAGER_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    /// `host:port` for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.server.addr.to_string()
    }

    /// A service-account key file whose `token_uri` is this fake.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": "keyward-test",
            "private_key_id": KEY_ID,
            "private_key": TEST_PRIVATE_KEY_PEM,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    /// Add a version to `projects/project/secrets/secret`; returns its number.
    pub fn add_version(&self, project: &str, secret: &str, value: &str) -> u64 {
        let mut s = lock(&self.state);
        let vs = s.secrets.entry((project.to_string(), secret.to_string())).or_default();
        vs.push(Version { data: value.as_bytes().to_vec(), enabled: true });
        vs.len() as u64
    }

    pub fn disable_version(&self, project: &str, secret: &str, version: u64) {
        let mut s = lock(&self.state);
        if let Some(v) = s
            .secrets
            .get_mut(&(project.to_string(), secret.to_string()))
            .and_then(|vs| vs.get_mut(version.saturating_sub(1) as usize))
        {
            v.enabled = false;
        }
    }

    /// IAM refuses `secretmanager.versions.access` on this secret.
    pub fn deny(&self, project: &str, secret: &str) {
        lock(&self.state).denied.insert((project.to_string(), secret.to_string()));
    }

    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }
}

fn google_error(status: StatusCode, name: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": name}})))
        .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn issue(s: &mut Inner) -> Response {
    s.issued += 1;
    let token = format!("ya29.fake-{}", s.issued);
    s.tokens.insert(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

/// Check a JWT-bearer assertion as Google's token endpoint does.
fn check_assertion(s: &Inner, jwt: &str) -> Result<(), &'static str> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("Invalid JWT: not three segments");
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| "Invalid JWT: bad base64url");
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| "Invalid JWT header")?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| "Invalid JWT claims")?;
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err("Invalid JWT: alg must be RS256");
    }
    if header["kid"] != KEY_ID {
        return Err("Invalid JWT Signature.");
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &s.public_key)
        .verify(format!("{h}.{c}").as_bytes(), &decode(sig)?)
        .map_err(|_| "Invalid JWT Signature.")?;
    if claims["iss"] != CLIENT_EMAIL {
        return Err("Invalid JWT: iss is not the service account");
    }
    if claims["aud"] != format!("{}/token", s.base).as_str() {
        return Err("Invalid JWT: Failed audience check.");
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|sc| sc == "https://www.googleapis.com/auth/cloud-platform") {
        return Err("Invalid JWT: no usable scope");
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("Invalid JWT: iat and exp are required");
    };
    if (iat - now()).abs() > 300 || exp <= iat || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    Ok(())
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
    let path = uri.path();

    if path == "/token" {
        if method != Method::POST || !header("content-type").starts_with("application/x-www-form-urlencoded") {
            return oauth_error("invalid_request", "Invalid request");
        }
        let form = parse_form(&String::from_utf8_lossy(&body));
        if form.get("grant_type").map(String::as_str) != Some(JWT_GRANT) {
            return oauth_error("unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = form.get("assertion") else {
            return oauth_error("invalid_request", "Missing required parameter: assertion");
        };
        return match check_assertion(&s, assertion) {
            Ok(()) => issue(&mut s),
            Err(why) => oauth_error("invalid_grant", why),
        };
    }

    if path == "/computeMetadata/v1/instance/service-accounts/default/token" {
        if header("metadata-flavor") != "Google" {
            return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
        }
        return issue(&mut s);
    }

    // /v1/projects/P/secrets/S/versions/V:access
    let Some(rest) = path.strip_prefix("/v1/projects/") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found");
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, secret, version) = match segs.as_slice() {
        [p, "secrets", sec, "versions", v] => match v.strip_suffix(":access") {
            Some(v) => (p.to_string(), sec.to_string(), v.to_string()),
            None => return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method"),
        },
        _ => return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
    };
    if method != Method::GET {
        return google_error(StatusCode::METHOD_NOT_ALLOWED, "INVALID_ARGUMENT", "Use GET");
    }
    let token = header("authorization").strip_prefix("Bearer ").unwrap_or("");
    if !s.tokens.contains(token) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let key = (project.clone(), secret.clone());
    if s.denied.contains(&key) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("Permission 'secretmanager.versions.access' denied for resource 'projects/{project}/secrets/{secret}/versions/{version}' (or it may not exist)."),
        );
    }
    let Some(versions) = s.secrets.get(&key) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] not found or has no versions."),
        );
    };
    let number = if version == "latest" {
        match versions.iter().rposition(|v| v.enabled) {
            Some(i) => i + 1,
            None => return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Secret Version [latest] not found."),
        }
    } else {
        match version.parse::<usize>() {
            Ok(n) if n >= 1 && n <= versions.len() => n,
            Ok(_) => {
                return google_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!(
                        "Secret Version [projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{version}] not found."
                    ),
                )
            }
            Err(_) => return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid version id"),
        }
    };
    let v = &versions[number - 1];
    if !v.enabled {
        return google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            &format!(
                "Secret Version [projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{number}] is in DISABLED state."
            ),
        );
    }
    axum::Json(json!({
        "name": format!("projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{number}"),
        "payload": {
            "data": STANDARD.encode(&v.data),
            "dataCrc32c": crc32c(&v.data).to_string(),
        }
    }))
    .into_response()
}

/// CRC-32C (Castagnoli).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
