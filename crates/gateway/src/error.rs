//! The one error type at the HTTP edge: Anthropic's envelope and statuses, so
//! SDKs raise their usual exceptions. 5xx bodies say nothing internal.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Unknown, malformed, revoked or suspended credential: one answer for all.
    Unauthenticated,
    Forbidden(String),
    InvalidRequest(String),
    NotFound,
    TooLarge,
    RateLimited {
        message: String,
        retry_after_s: u64,
    },
    /// The key's monthly budget is spent: 429 without `retry-after`, with
    /// `error.details.error_code = "budget_exceeded"`, so SDKs do not retry.
    BudgetExceeded,
    /// The upstream could not be reached, or no usable upstream credential.
    BadGateway(&'static str),
    Timeout,
    /// The client did not send its request body within `server.body_timeout`.
    BodyTimeout,
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "authentication_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::InvalidRequest(_) | ApiError::BodyTimeout => "invalid_request_error",
            ApiError::NotFound => "not_found_error",
            ApiError::TooLarge => "request_too_large",
            ApiError::RateLimited { .. } | ApiError::BudgetExceeded => "rate_limit_error",
            ApiError::BadGateway(_) | ApiError::Timeout | ApiError::Internal => "api_error",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated => "invalid x-api-key".into(),
            ApiError::Forbidden(m) | ApiError::InvalidRequest(m) => m.clone(),
            ApiError::NotFound => "not found".into(),
            ApiError::TooLarge => "request exceeds the maximum allowed size".into(),
            ApiError::RateLimited { message, .. } => message.clone(),
            ApiError::BudgetExceeded => "this key's monthly budget is exhausted".into(),
            ApiError::BadGateway(m) => (*m).into(),
            ApiError::Timeout => "the upstream API did not answer in time".into(),
            ApiError::BodyTimeout => "the request body did not arrive in time".into(),
            ApiError::Internal => "internal error".into(),
        }
    }

    /// The JSON body: `{"type":"error","error":{"type":..,"message":..}}`.
    pub fn body(&self) -> String {
        let mut error = serde_json::json!({ "type": self.kind(), "message": self.message() });
        if *self == ApiError::BudgetExceeded {
            error["details"] = serde_json::json!({ "error_code": "budget_exceeded" });
        }
        serde_json::json!({ "type": "error", "error": error }).to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), self.body()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ApiError::RateLimited { retry_after_s, .. } = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_statuses() {
        let e = ApiError::Unauthenticated;
        assert_eq!(e.status(), 401);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(ApiError::TooLarge.status(), 413);
        assert_eq!(ApiError::Timeout.status(), 504);
        let r = ApiError::RateLimited { message: "slow down".into(), retry_after_s: 3 }.into_response();
        assert_eq!(r.headers()["retry-after"], "3");
        let b = ApiError::BudgetExceeded;
        let v: serde_json::Value = serde_json::from_str(&b.body()).unwrap();
        assert_eq!(v["error"]["details"]["error_code"], "budget_exceeded");
        assert!(b.into_response().headers().get("retry-after").is_none());
    }
}
