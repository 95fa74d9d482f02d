//! Small wire-level helpers shared by the mock's handlers: ids, timestamps,
//! the Anthropic error envelope and the rate-limit headers.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::StatusCode;
use serde::Serialize;

/// The id of the request being answered, put in the request's extensions by
/// the gate middleware and echoed in the `request-id` header and in every
/// error envelope.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub(crate) Arc<str>);

impl RequestId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generator of `req_…`, `msg_…` and `msgbatch_…` ids: 24 base62 characters
/// after the prefix. Lock-free (one atomic add); ids never repeat within a
/// process because the first 64 bits are a bijection of the counter.
#[derive(Debug)]
pub(crate) struct IdGen {
    seed: u64,
    seed2: u64,
    counter: AtomicU64,
}

impl IdGen {
    pub(crate) fn new() -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let mut h = random.build_hasher();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        let seed = h.finish();
        Self { seed, seed2: splitmix64(seed ^ GOLDEN), counter: AtomicU64::new(0) }
    }

    pub(crate) fn next(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // `seed + n * GOLDEN` is a bijection of n (GOLDEN is odd), and so is
        // splitmix64: `a` is unique per id.
        let a = splitmix64(self.seed.wrapping_add(n.wrapping_mul(GOLDEN)));
        let b = splitmix64(a ^ self.seed2);
        let c = splitmix64(b);
        let mut out = String::with_capacity(prefix.len() + 24);
        out.push_str(prefix);
        // 11 base62 digits hold 64 bits (62^11 > 2^64), so the first 11
        // characters encode `a` injectively; `b` and `c` fill the rest.
        push_base62(&mut out, a, 11);
        push_base62(&mut out, b, 11);
        push_base62(&mut out, c, 2);
        out
    }
}

fn push_base62(out: &mut String, mut x: u64, digits: usize) {
    for _ in 0..digits {
        out.push(char::from(BASE62[(x % 62) as usize]));
        x /= 62;
    }
}

/// Seconds and microseconds since the Unix epoch.
pub(crate) fn now_unix() -> (u64, u32) {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| (d.as_secs(), d.subsec_micros())).unwrap_or((0, 0))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u32, d as u32)
}

/// RFC 3339 UTC timestamp, with microseconds when given:
/// `2026-10-21T09:30:00Z` or `2026-10-21T09:30:00.123456Z`.
pub(crate) fn rfc3339(secs: u64, micros: Option<u32>) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    match micros {
        Some(us) => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{us:06}Z"),
        None => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    }
}

/// `error.type` for an HTTP status, as in the API's error table.
pub(crate) fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Invalid request",
        401 => "invalid x-api-key",
        402 => "Your credit balance is too low to access the Anthropic API",
        403 => "Your API key does not have permission to use the specified resource",
        404 => "Not found",
        413 => "Request exceeds the maximum allowed number of bytes",
        429 => "Number of requests has exceeded your per-minute rate limit",
        529 => "Overloaded",
        _ => "Internal server error",
    }
}

/// `retry-after` value the mock sends with every 429.
pub(crate) const RETRY_AFTER_SECS: u32 = 7;

/// An error answered with the Anthropic error envelope.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: Cow<'static, str>,
    pub(crate) request_id: RequestId,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<Cow<'static, str>>, request_id: &RequestId) -> Self {
        Self { status, kind: error_kind(status), message: message.into(), request_id: request_id.clone() }
    }

    /// The error the API gives for `status`, with its usual message.
    pub(crate) fn for_status(status: StatusCode, request_id: &RequestId) -> Self {
        Self::new(status, default_message(status), request_id)
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>, request_id: &RequestId) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, request_id)
    }

    pub(crate) fn not_found(message: impl Into<Cow<'static, str>>, request_id: &RequestId) -> Self {
        Self::new(StatusCode::NOT_FOUND, message, request_id)
    }
}

#[derive(Serialize)]
pub(crate) struct ErrorObject<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) message: &'a str,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    error: ErrorObject<'a>,
    request_id: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            ty: "error",
            error: ErrorObject { kind: self.kind, message: &self.message },
            request_id: self.request_id.as_str(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// `anthropic-ratelimit-<kind>-{limit,remaining,reset}` for each kind, with
/// the limit and remaining values the mock reports.
const RATE_LIMITS: [(HeaderName, HeaderName, HeaderName, u32, u32); 4] = [
    (
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
        4_000,
        3_999,
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
        2_000_000,
        1_999_000,
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
        1_600_000,
        1_599_000,
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
        400_000,
        400_000,
    ),
];

/// Adds the `anthropic-ratelimit-*` headers: fixed limits, remaining counts
/// just below them, and a reset at the start of the next minute (plausible
/// and cheap to compute).
pub(crate) fn add_rate_limit_headers(headers: &mut HeaderMap) {
    let (secs, _) = now_unix();
    let reset = match HeaderValue::try_from(rfc3339(secs - secs % 60 + 60, None)) {
        Ok(v) => v,
        Err(_) => return,
    };
    for (limit_name, remaining_name, reset_name, limit, remaining) in &RATE_LIMITS {
        headers.insert(limit_name.clone(), HeaderValue::from(*limit));
        headers.insert(remaining_name.clone(), HeaderValue::from(*remaining));
        headers.insert(reset_name.clone(), reset.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_792_575_000, Some(42)), "2026-10-21T09:30:00.000042Z");
    }

    #[test]
    fn ids_are_base62_and_distinct() {
        let g = IdGen::new();
        let a = g.next("req_");
        let b = g.next("req_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 24);
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
