//! `GET /v1/models` and `GET /v1/models/{id}`, plus the paging shared with
//! the batch list.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::wire::{ApiError, RequestId};

#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct Model {
    #[serde(rename = "type")]
    ty: &'static str,
    id: &'static str,
    display_name: &'static str,
    created_at: &'static str,
}

/// The models the mock lists, newest first as the API orders them.
pub(crate) const MODELS: [Model; 3] = [
    Model { ty: "model", id: "claude-opus-4-7", display_name: "Claude Opus 4.7", created_at: "2026-04-16T00:00:00Z" },
    Model {
        ty: "model",
        id: "claude-sonnet-4-6",
        display_name: "Claude Sonnet 4.6",
        created_at: "2026-02-17T00:00:00Z",
    },
    Model {
        ty: "model",
        id: "claude-haiku-4-5-20251001",
        display_name: "Claude Haiku 4.5",
        created_at: "2025-10-01T00:00:00Z",
    },
];

/// Paging parameters of the list endpoints.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct ListQuery {
    limit: Option<u32>,
    after_id: Option<String>,
    before_id: Option<String>,
}

/// One page of `items` (already in list order): `limit` (1..=1000, default
/// 20) items after `after_id` or before `before_id`, and whether more exist
/// in that direction. An unknown cursor gives an empty page.
pub(crate) fn page<'a, T>(
    items: &'a [T],
    id_of: impl Fn(&T) -> &str,
    q: &ListQuery,
) -> Result<(&'a [T], bool), String> {
    let limit = match q.limit {
        None => 20,
        Some(n @ 1..=1000) => n as usize,
        Some(_) => return Err("limit: Input should be between 1 and 1000".into()),
    };
    let position = |id: &str| items.iter().position(|t| id_of(t) == id);
    match (&q.after_id, &q.before_id) {
        (Some(_), Some(_)) => Err("after_id and before_id cannot both be given".into()),
        (Some(after), None) => match position(after) {
            Some(p) => {
                let rest = &items[p + 1..];
                let n = rest.len().min(limit);
                Ok((&rest[..n], rest.len() > n))
            }
            None => Ok((&items[..0], false)),
        },
        (None, Some(before)) => match position(before) {
            Some(p) => {
                let start = p.saturating_sub(limit);
                Ok((&items[start..p], start > 0))
            }
            None => Ok((&items[..0], false)),
        },
        (None, None) => {
            let n = items.len().min(limit);
            Ok((&items[..n], items.len() > n))
        }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    data: &'a [Model],
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// `GET /v1/models`
pub(crate) async fn list(
    Extension(rid): Extension<RequestId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text(), &rid))?;
    let (data, has_more) = page(&MODELS, |m| m.id, &q).map_err(|m| ApiError::invalid(m, &rid))?;
    Ok(Json(ModelList { data, has_more, first_id: data.first().map(|m| m.id), last_id: data.last().map(|m| m.id) })
        .into_response())
}

/// `GET /v1/models/{id}`
pub(crate) async fn get(
    Extension(rid): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path.map(|Path(id)| id).map_err(|_| ApiError::not_found("Not found", &rid))?;
    match MODELS.iter().find(|m| m.id == id) {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(ApiError::not_found(format!("model: {id}"), &rid)),
    }
}
