//! The Admin API usage report, simulated: `GET
//! /v1/organizations/usage_report/messages` reports the tokens of every
//! `/v1/messages` answer that passed through the mock, per upstream key
//! ([`super::api_key_id`]) and minute, in the wire format of the real report.
//!
//! `POST /_mock/usage` adds usage that did not pass through the mock (as if
//! the upstream key were used directly, out of band):
//! `{"api_key_id":"apikey_...","input_tokens":N,"output_tokens":N}`, with an
//! optional `"at":"RFC3339"` (default: now).
//!
//! Supported query parameters: `starting_at` (required), `ending_at`,
//! `bucket_width` (`1m`, `1h`, `1d`), `group_by[]=api_key_id`, `api_key_ids[]`,
//! `limit`. Every bucket in the range is listed, empty ones with no results.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::messages::InputUsage;
use super::wire::{now_unix, rfc3339, ApiError, RequestId};
use super::Shared;

/// The upstream key a `/v1` request authenticated with, by its id.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyId(pub(crate) String);

#[derive(Debug, Default, Clone, Copy)]
struct Tokens {
    uncached_input: u64,
    cache_5m: u64,
    cache_1h: u64,
    cache_read: u64,
    output: u64,
}

/// Tokens per (minute since the epoch, api key id).
#[derive(Debug, Default)]
pub(crate) struct UsageLedger {
    by_minute: Mutex<BTreeMap<(i64, String), Tokens>>,
}

impl UsageLedger {
    fn add(&self, minute: i64, key: &str, t: Tokens) {
        let mut m = self.by_minute.lock().unwrap_or_else(PoisonError::into_inner);
        let e = m.entry((minute, key.to_string())).or_default();
        e.uncached_input += t.uncached_input;
        e.cache_5m += t.cache_5m;
        e.cache_1h += t.cache_1h;
        e.cache_read += t.cache_read;
        e.output += t.output;
    }

    /// Record one answered request now.
    pub(crate) fn record(&self, key: Option<&ApiKeyId>, input: InputUsage, output: u64) {
        let Some(key) = key else { return };
        let minute = (now_unix().0 / 60) as i64;
        self.add(
            minute,
            &key.0,
            Tokens {
                uncached_input: input.input,
                cache_5m: input.cache_creation_5m,
                cache_1h: input.cache_creation_1h,
                cache_read: input.cache_read,
                output,
            },
        );
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)` to seconds since the epoch (UTC only).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let (h, mi, se): (i64, i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // H. Hinnant's days_from_civil
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v1/organizations/usage_report/messages`
pub(crate) async fn report(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut starting_at = None;
    let mut ending_at = None;
    let mut width = "1d".to_string();
    let mut group_by_key = false;
    let mut only: Vec<String> = Vec::new();
    let mut limit: Option<i64> = None;
    for pair in q.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match k.as_str() {
            "starting_at" => starting_at = Some(v),
            "ending_at" => ending_at = Some(v),
            "bucket_width" => width = v,
            "group_by[]" | "group_by" => group_by_key |= v == "api_key_id",
            "api_key_ids[]" | "api_key_ids" => only.push(v),
            "limit" => limit = v.parse().ok(),
            _ => {}
        }
    }
    let Some(start) = starting_at.as_deref().and_then(parse_rfc3339) else {
        return ApiError::invalid("starting_at: an RFC 3339 time is required", &rid).into_response();
    };
    let (width_s, default_limit, max_limit) = match width.as_str() {
        "1m" => (60, 60, 1440),
        "1h" => (3600, 24, 168),
        "1d" => (86_400, 7, 31),
        _ => return ApiError::invalid("bucket_width must be 1m, 1h or 1d", &rid).into_response(),
    };
    let limit = limit.unwrap_or(default_limit).clamp(1, max_limit);
    let start = start - start.rem_euclid(width_s);
    let end = match ending_at.as_deref() {
        Some(e) => match parse_rfc3339(e) {
            Some(e) => e.min(start + limit * width_s),
            None => return ApiError::invalid("ending_at: not an RFC 3339 time", &rid).into_response(),
        },
        None => start + limit * width_s,
    };
    let ledger = st.usage.by_minute.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut data = Vec::new();
    let mut b = start;
    while b < end {
        let mut groups: BTreeMap<Option<String>, Tokens> = BTreeMap::new();
        for ((minute, key), t) in ledger.range((b / 60, String::new())..((b + width_s) / 60, String::new())) {
            if *minute * 60 < b || !(only.is_empty() || only.contains(key)) {
                continue;
            }
            let g = groups.entry(group_by_key.then(|| key.clone())).or_default();
            g.uncached_input += t.uncached_input;
            g.cache_5m += t.cache_5m;
            g.cache_1h += t.cache_1h;
            g.cache_read += t.cache_read;
            g.output += t.output;
        }
        let results: Vec<Value> = groups
            .into_iter()
            .map(|(key, t)| {
                json!({
                    "uncached_input_tokens": t.uncached_input,
                    "cache_creation": {"ephemeral_1h_input_tokens": t.cache_1h, "ephemeral_5m_input_tokens": t.cache_5m},
                    "cache_read_input_tokens": t.cache_read,
                    "output_tokens": t.output,
                    "server_tool_use": {"web_search_requests": 0},
                    "api_key_id": key,
                    "workspace_id": null,
                    "model": null,
                    "service_tier": null,
                    "context_window": null,
                })
            })
            .collect();
        data.push(json!({
            "starting_at": rfc3339(b.max(0) as u64, None),
            "ending_at": rfc3339((b + width_s).max(0) as u64, None),
            "results": results,
        }));
        b += width_s;
    }
    Json(json!({"data": data, "has_more": false, "next_page": null})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inject {
    api_key_id: String,
    at: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
}

/// `POST /_mock/usage`: usage of a key that did not pass through the mock.
pub(crate) async fn inject(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Response {
    let req: Inject = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::invalid(
                format!("expected {{\"api_key_id\":...,\"input_tokens\":N,\"output_tokens\":N}}: {e}"),
                &rid,
            )
            .into_response()
        }
    };
    let at = match req.at.as_deref() {
        None => now_unix().0 as i64,
        Some(t) => match parse_rfc3339(t) {
            Some(s) => s,
            None => return ApiError::invalid("at: not an RFC 3339 time", &rid).into_response(),
        },
    };
    st.usage.add(
        at.div_euclid(60),
        &req.api_key_id,
        Tokens {
            uncached_input: req.input_tokens,
            output: req.output_tokens,
            cache_read: req.cache_read_input_tokens,
            ..Tokens::default()
        },
    );
    Json(json!({"api_key_id": req.api_key_id, "minute": rfc3339((at.div_euclid(60) * 60).max(0) as u64, None)}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escapes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.5Z"), Some(1_709_208_000));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00+01:00"), None);
        assert_eq!(percent_decode("group_by%5B%5D"), "group_by[]");
        assert_eq!(percent_decode("12%3A00%3A00Z"), "12:00:00Z");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
