//! Message Batches, in memory. The mock processes a batch the moment it is
//! created, so every batch is `ended` with its results ready.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, CONTENT_TYPE};
use serde::Serialize;
use serde_json::Value;

use super::messages::{self, switch_for, Switch};
use super::models::{page, ListQuery};
use super::wire::{error_kind, now_unix, rfc3339, ApiError, ErrorObject, RequestId};
use super::Shared;

/// Batches kept before the oldest is forgotten (bounded memory).
const BATCH_CAPACITY: usize = 10_000;
/// Requests one batch may hold, as in the API.
const MAX_BATCH_REQUESTS: usize = 100_000;

#[derive(Serialize, Debug, Clone, Copy, Default)]
struct RequestCounts {
    processing: u64,
    succeeded: u64,
    errored: u64,
    canceled: u64,
    expired: u64,
}

#[derive(Serialize, Debug, Clone)]
struct BatchObject {
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
    processing_status: &'static str,
    request_counts: RequestCounts,
    ended_at: Option<String>,
    created_at: String,
    expires_at: String,
    archived_at: Option<String>,
    cancel_initiated_at: Option<String>,
    results_url: Option<String>,
}

#[derive(Debug)]
struct Batch {
    object: BatchObject,
    /// The results file (JSONL), built at creation.
    results: Bytes,
}

#[derive(Debug, Default)]
pub(crate) struct BatchStore {
    next_seq: u64,
    by_id: HashMap<String, (u64, Arc<Batch>)>,
    /// Creation order: sequence number to id.
    order: BTreeMap<u64, String>,
}

impl BatchStore {
    fn insert(&mut self, batch: Arc<Batch>) {
        if self.by_id.len() >= BATCH_CAPACITY {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.by_id.remove(&oldest);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, batch.object.id.clone());
        self.by_id.insert(batch.object.id.clone(), (seq, batch));
    }

    fn get(&self, id: &str) -> Option<Arc<Batch>> {
        self.by_id.get(id).map(|(_, b)| Arc::clone(b))
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Batch>> {
        let (seq, b) = self.by_id.remove(id)?;
        self.order.remove(&seq);
        Some(b)
    }

    /// Newest first, as the API lists them.
    fn newest_first(&self) -> Vec<Arc<Batch>> {
        self.order.values().rev().filter_map(|id| self.get(id)).collect()
    }
}

fn store(st: &Shared) -> MutexGuard<'_, BatchStore> {
    st.batches.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Serialize)]
struct ResultLine<'a> {
    custom_id: &'a str,
    result: BatchResult<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BatchResult<'a> {
    Succeeded { message: messages::MessageBody<'a> },
    Errored { error: ErrorResponse<'a> },
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    error: ErrorObject<'a>,
}

fn errored<'a>(kind: &'a str, message: &'a str) -> BatchResult<'a> {
    BatchResult::Errored { error: ErrorResponse { ty: "error", error: ErrorObject { kind, message } } }
}

/// Runs one batch request and appends its result line.
fn run_one(st: &Shared, custom_id: &str, params: &Value, counts: &mut RequestCounts, out: &mut Vec<u8>) {
    let mut write = |line: &ResultLine<'_>| {
        if serde_json::to_writer(&mut *out, line).is_ok() {
            out.push(b'\n');
        }
    };
    let Value::Object(obj) = params else {
        counts.errored += 1;
        write(&ResultLine { custom_id, result: errored("invalid_request_error", "params: Input should be an object") });
        return;
    };
    let p = match messages::parse_params(obj, true) {
        Ok(p) => p,
        Err(msg) => {
            counts.errored += 1;
            write(&ResultLine { custom_id, result: errored("invalid_request_error", &msg) });
            return;
        }
    };
    if let Switch::Error(code) = switch_for(p.model) {
        counts.errored += 1;
        let status = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        write(&ResultLine { custom_id, result: errored(error_kind(status), "simulated error (mock model switch)") });
        return;
    }
    let id = st.ids.next("msg_");
    let message = messages::complete(st, &p, &id);
    counts.succeeded += 1;
    write(&ResultLine { custom_id, result: BatchResult::Succeeded { message } });
}

/// `POST /v1/messages/batches`
pub(crate) async fn create(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = messages::parse_object(&body).map_err(|m| ApiError::invalid(m, &rid))?;
    let requests = match obj.get("requests") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("requests: at least one request is required", &rid)),
        None | Some(Value::Null) => return Err(ApiError::invalid("requests: Field required", &rid)),
        Some(_) => return Err(ApiError::invalid("requests: Input should be a valid list", &rid)),
    };
    if requests.len() > MAX_BATCH_REQUESTS {
        return Err(ApiError::invalid(format!("requests: at most {MAX_BATCH_REQUESTS} requests are allowed"), &rid));
    }
    // Validate the envelope of every request before running any of them.
    let mut entries = Vec::with_capacity(requests.len());
    let mut seen = HashSet::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let custom_id = match r.get("custom_id") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.as_str(),
            _ => {
                return Err(ApiError::invalid(
                    format!("requests.{i}.custom_id: a string of 1 to 64 characters is required"),
                    &rid,
                ))
            }
        };
        if !seen.insert(custom_id) {
            return Err(ApiError::invalid(format!("requests.{i}.custom_id: duplicate custom_id '{custom_id}'"), &rid));
        }
        let Some(params) = r.get("params") else {
            return Err(ApiError::invalid(format!("requests.{i}.params: Field required"), &rid));
        };
        entries.push((custom_id, params));
    }

    let mut counts = RequestCounts::default();
    let mut results = Vec::with_capacity(entries.len() * 512);
    for (custom_id, params) in entries {
        run_one(&st, custom_id, params, &mut counts, &mut results);
    }
    let (secs, micros) = now_unix();
    let created_at = rfc3339(secs, Some(micros));
    let id = st.ids.next("msgbatch_");
    let object = BatchObject {
        results_url: Some(format!("/v1/messages/batches/{id}/results")),
        id,
        ty: "message_batch",
        processing_status: "ended",
        request_counts: counts,
        ended_at: Some(created_at.clone()),
        expires_at: rfc3339(secs + 86_400, Some(micros)),
        created_at,
        archived_at: None,
        cancel_initiated_at: None,
    };
    let batch = Arc::new(Batch { object: object.clone(), results: Bytes::from(results) });
    store(&st).insert(batch);
    Ok(Json(object).into_response())
}

fn batch_id(path: Result<Path<String>, PathRejection>, rid: &RequestId) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|_| ApiError::not_found("Not found", rid))
}

fn lookup(st: &Shared, id: &str, rid: &RequestId) -> Result<Arc<Batch>, ApiError> {
    store(st).get(id).ok_or_else(|| ApiError::not_found(format!("message batch not found: {id}"), rid))
}

/// `GET /v1/messages/batches/{id}`
pub(crate) async fn get(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(path, &rid)?;
    let batch = lookup(&st, &id, &rid)?;
    Ok(Json(&batch.object).into_response())
}

/// `POST /v1/messages/batches/{id}/cancel`: every mock batch has already
/// ended, so canceling changes nothing and returns the batch.
pub(crate) async fn cancel(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(path, &rid)?;
    let batch = lookup(&st, &id, &rid)?;
    Ok(Json(&batch.object).into_response())
}

/// `GET /v1/messages/batches/{id}/results` (JSONL)
pub(crate) async fn results(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(path, &rid)?;
    let batch = lookup(&st, &id, &rid)?;
    let mut resp = Response::new(axum::body::Body::from(batch.results.clone()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-jsonl"));
    Ok(resp)
}

#[derive(Serialize)]
struct Deleted {
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
}

/// `DELETE /v1/messages/batches/{id}`
pub(crate) async fn delete(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(path, &rid)?;
    let removed = store(&st).remove(&id);
    match removed {
        Some(_) => Ok(Json(Deleted { id, ty: "message_batch_deleted" }).into_response()),
        None => Err(ApiError::not_found(format!("message batch not found: {id}"), &rid)),
    }
}

#[derive(Serialize)]
struct BatchList<'a> {
    data: Vec<&'a BatchObject>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// `GET /v1/messages/batches` (newest first; `limit`, `after_id`,
/// `before_id` as in the API).
pub(crate) async fn list(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text(), &rid))?;
    let all = store(&st).newest_first();
    let objects: Vec<&BatchObject> = all.iter().map(|b| &b.object).collect();
    let (items, has_more) = page(&objects, |b| b.id.as_str(), &q).map_err(|m| ApiError::invalid(m, &rid))?;
    let list = BatchList {
        first_id: items.first().map(|b| b.id.as_str()),
        last_id: items.last().map(|b| b.id.as_str()),
        data: items.to_vec(),
        has_more,
    };
    Ok(Json(list).into_response())
}
