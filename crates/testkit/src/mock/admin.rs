//! The slice of the Anthropic Admin API keyward uses: API keys (list, get,
//! update status). Authenticated by the admin keys of [`super::MockConfig`].
//!
//! Every accepted upstream key has an id derived from its value
//! ([`api_key_id`]); setting it `inactive` or `archived` makes the mock refuse
//! that key on `/v1` from then on, as the real API would.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{now_unix, rfc3339, ApiError, RequestId};
use super::Shared;

/// The mock's id for an upstream key: `apikey_` + FNV-1a-64 of the value (hex).
pub fn api_key_id(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("apikey_{h:016x}")
}

fn hint(key: &str) -> String {
    let head: String = key.chars().take(14).collect();
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}...{tail}")
}

fn object(st: &Shared, key: &str) -> Value {
    let id = api_key_id(key);
    let status = st.key_status(&id);
    json!({
        "id": id,
        "type": "api_key",
        "name": format!("mock key {}", &id[7..11]),
        "status": status,
        "created_at": rfc3339(now_unix().0, None),
        "created_by": {"id": "user_mock", "type": "user"},
        "partial_key_hint": hint(key),
        "workspace_id": null,
        "expires_at": null,
    })
}

pub(crate) async fn list(State(st): State<Arc<Shared>>) -> Response {
    let data: Vec<Value> = st.accept_keys.iter().map(|k| object(&st, k)).collect();
    let first = data.first().map(|d| d["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|d| d["id"].clone()).unwrap_or(Value::Null);
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response()
}

fn find<'a>(st: &'a Shared, id: &str) -> Option<&'a String> {
    st.accept_keys.iter().find(|k| api_key_id(k) == id)
}

pub(crate) async fn get(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Response {
    match find(&st, &id) {
        Some(k) => Json(object(&st, k)).into_response(),
        None => ApiError::not_found("API key not found", &rid).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Update {
    status: Option<String>,
    #[allow(dead_code)]
    name: Option<String>,
}

pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(k) = find(&st, &id).cloned() else {
        return ApiError::not_found("API key not found", &rid).into_response();
    };
    let Ok(u) = serde_json::from_slice::<Update>(&body) else {
        return ApiError::invalid("body must be a JSON object", &rid).into_response();
    };
    if let Some(s) = u.status {
        if !["active", "inactive", "archived"].contains(&s.as_str()) {
            return ApiError::invalid("status must be active, inactive or archived", &rid).into_response();
        }
        st.set_key_status(&id, &s);
    }
    Json(object(&st, &k)).into_response()
}
