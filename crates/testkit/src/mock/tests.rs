use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

const KEY: &str = "sk-ant-api03-TESTKEY-do-not-leak-0123456789";
const OTHER_KEY: &str = "sk-ant-api03-OTHERKEY-also-secret-987";
const ADMIN_KEY: &str = "sk-ant-admin01-ADMINKEY-test-only-42";

fn app() -> Router {
    router(MockConfig {
        accept_keys: vec![KEY.to_owned(), OTHER_KEY.to_owned()],
        latency: Duration::ZERO,
        admin_keys: vec![ADMIN_KEY.to_owned()],
    })
}

fn request(method: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
}

fn body_of(body: Option<&Value>) -> Body {
    match body {
        Some(v) => Body::from(serde_json::to_vec(v).unwrap()),
        None => Body::empty(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts an Anthropic error envelope of `kind`, whose request_id is
    /// the `request-id` header.
    fn assert_error(&self, status: u16, kind: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.json());
        let v = self.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(v["request_id"].as_str(), self.header("request-id"));
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body }
}

async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> Answer {
    let req = request(method, path).body(body_of(body.as_ref())).unwrap();
    send(app, req).await
}

async fn post_message(app: &Router, body: Value) -> Answer {
    call(app, "POST", "/v1/messages", Some(body)).await
}

fn simple(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello world!"}],
    })
}

/// `(event name, data)` of an SSE body.
fn parse_sse(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "stream must end with a blank line");
    text.split("\n\n")
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| {
            let mut lines = chunk.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap().to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert!(lines.next().is_none());
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name.as_str(), "data.type matches the event name");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && s.ends_with('Z')
}

fn request_id_ok(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|r| r.len() == 24 && r.bytes().all(|c| c.is_ascii_alphanumeric()))
}

// ---------------------------------------------------------------------------
// Authentication and headers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn accepts_a_configured_key_and_sets_headers() {
    let app = app();
    let a = post_message(&app, simple("claude-sonnet-4-6")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(request_id_ok(a.header("request-id").unwrap()));
    for kind in ["requests", "tokens"] {
        let limit: u64 = a.header(&format!("anthropic-ratelimit-{kind}-limit")).unwrap().parse().unwrap();
        let remaining: u64 = a.header(&format!("anthropic-ratelimit-{kind}-remaining")).unwrap().parse().unwrap();
        assert!(remaining <= limit && limit > 0);
        assert!(is_rfc3339(a.header(&format!("anthropic-ratelimit-{kind}-reset")).unwrap()));
    }
    assert!(a.header("content-type").unwrap().starts_with("application/json"));

    // The second configured key works too; request ids differ.
    let req = Request::post("/v1/messages")
        .header("x-api-key", OTHER_KEY)
        .header("anthropic-version", "2023-06-01")
        .body(body_of(Some(&simple("claude-sonnet-4-6"))))
        .unwrap();
    let b = send(&app, req).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_ne!(a.header("request-id"), b.header("request-id"));
}

#[tokio::test]
async fn rejects_wrong_or_missing_key() {
    let app = app();
    for key in [Some("sk-ant-api03-wrong"), Some(""), None] {
        let mut b = Request::post("/v1/messages").header("anthropic-version", "2023-06-01");
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        let a = send(&app, b.body(body_of(Some(&simple("claude-sonnet-4-6")))).unwrap()).await;
        a.assert_error(401, "authentication_error");
        assert_eq!(a.json()["error"]["message"], "invalid x-api-key");
        assert!(request_id_ok(a.header("request-id").unwrap()));
        assert!(a.header("anthropic-ratelimit-requests-limit").is_none());
    }
}

#[tokio::test]
async fn bearer_token_is_not_accepted_as_the_key() {
    let app = app();
    let req = Request::post("/v1/messages")
        .header("authorization", format!("Bearer {KEY}"))
        .header("anthropic-version", "2023-06-01")
        .body(body_of(Some(&simple("claude-sonnet-4-6"))))
        .unwrap();
    send(&app, req).await.assert_error(401, "authentication_error");
}

#[tokio::test]
async fn empty_accept_list_takes_any_non_empty_key() {
    let app = router(MockConfig::default());
    let ok = Request::post("/v1/messages")
        .header("x-api-key", "anything")
        .header("anthropic-version", "2023-06-01")
        .body(body_of(Some(&simple("claude-sonnet-4-6"))))
        .unwrap();
    assert_eq!(send(&app, ok).await.status, StatusCode::OK);
    let empty = Request::post("/v1/messages")
        .header("x-api-key", "")
        .header("anthropic-version", "2023-06-01")
        .body(body_of(Some(&simple("claude-sonnet-4-6"))))
        .unwrap();
    send(&app, empty).await.assert_error(401, "authentication_error");
}

#[tokio::test]
async fn anthropic_version_is_required() {
    let app = app();
    let req = Request::post("/v1/messages")
        .header("x-api-key", KEY)
        .body(body_of(Some(&simple("claude-sonnet-4-6"))))
        .unwrap();
    send(&app, req).await.assert_error(400, "invalid_request_error");
}

#[test]
fn config_debug_redacts_keys() {
    let cfg = MockConfig { accept_keys: vec![KEY.to_owned()], latency: Duration::from_millis(5), admin_keys: vec![] };
    let s = format!("{cfg:?}");
    assert!(!s.contains(KEY), "{s}");
    assert!(s.contains("redacted") && s.contains("5ms"), "{s}");
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

#[tokio::test]
async fn validates_message_requests() {
    let app = app();
    let malformed = request("POST", "/v1/messages").body(Body::from("{\"model\": ")).unwrap();
    send(&app, malformed).await.assert_error(400, "invalid_request_error");
    let bad = [
        json!([1, 2]),
        json!({"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "claude-sonnet-4-6", "max_tokens": 10}),
        json!({"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": []}),
        json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "claude-sonnet-4-6", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "robot", "content": "hi"}]}),
    ];
    for body in bad {
        let a = post_message(&app, body.clone()).await;
        a.assert_error(400, "invalid_request_error");
    }
}

#[tokio::test]
async fn non_streaming_usage_is_deterministic() {
    let app = app();
    // system 10 chars + "hello world!" 12 chars + block "abcdef" 6 chars +
    // tool_result "0123456789" 10 chars = 38 chars -> ceil(38/4) = 10.
    let body = json!({
        "model": "claude-opus-4-7",
        "max_tokens": 1024,
        "system": "You are ok",
        "messages": [
            {"role": "user", "content": "hello world!"},
            {"role": "assistant", "content": [{"type": "text", "text": "abcdef"},
                {"type": "tool_use", "id": "t1", "name": "x", "input": {"a": "ignored"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                "content": [{"type": "text", "text": "0123456789"}]}]},
        ],
    });
    let first = post_message(&app, body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let v = first.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-opus-4-7");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], REPLY_WORDS.join(" "));
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    let u = &v["usage"];
    assert_eq!(u["input_tokens"], 10);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["output_tokens"], REPLY_WORDS.len());
    assert_eq!(u["service_tier"], "standard");

    let second = post_message(&app, body).await.json();
    assert_eq!(second["usage"], v["usage"]);
    assert_ne!(second["id"], v["id"]);

    // Tiny input still counts one token; system as text blocks counts too.
    let tiny = json!({"model": "m", "max_tokens": 5,
        "messages": [{"role": "user", "content": ""}]});
    assert_eq!(post_message(&app, tiny).await.json()["usage"]["input_tokens"], 1);
    let blocks = json!({"model": "m", "max_tokens": 5,
        "system": [{"type": "text", "text": "12345678"}],
        "messages": [{"role": "user", "content": "é€"}]});
    // 8 + 2 chars (not bytes) = 10 -> 3.
    assert_eq!(post_message(&app, blocks).await.json()["usage"]["input_tokens"], 3);
}

#[tokio::test]
async fn max_tokens_truncates_the_reply() {
    let app = app();
    let mut body = simple("claude-haiku-4-5-20251001");
    body["max_tokens"] = json!(3);
    let v = post_message(&app, body).await.json();
    assert_eq!(v["content"][0]["text"], "Hello from the");
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(v["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn stream_events_in_order_with_cumulative_usage() {
    let app = app();
    let mut body = simple("claude-sonnet-4-6");
    body["stream"] = json!(true);
    body["system"] = json!([{"type": "text", "text": "x".repeat(40), "cache_control": {"type": "ephemeral"}}]);
    let a = post_message(&app, body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").unwrap().starts_with("text/event-stream"));
    assert!(a.header("anthropic-ratelimit-requests-limit").is_some());
    let events = parse_sse(&a.body);
    let n = REPLY_WORDS.len();
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", n));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);

    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["model"], "claude-sonnet-4-6");
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["input_tokens"], 3); // "hello world!"
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 10);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(start["usage"]["output_tokens"], 1);

    assert_eq!(events[2].1["index"], 0);
    assert_eq!(events[2].1["content_block"], json!({"type": "text", "text": ""}));
    let text: String = events[3..3 + n]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected_text: String = REPLY_WORDS.iter().map(|w| format!("{w} ")).collect();
    assert_eq!(text, expected_text);

    let delta = &events[n + 4].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["delta"]["stop_sequence"].is_null());
    assert_eq!(delta["usage"]["output_tokens"], n);
    assert_eq!(delta["usage"]["input_tokens"], 3);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 10);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn stream_stops_at_max_tokens() {
    let app = app();
    let body = json!({"model": "m", "max_tokens": 2, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let events = parse_sse(&post_message(&app, body).await.body);
    let deltas = events.iter().filter(|(n, _)| n == "content_block_delta").count();
    assert_eq!(deltas, 2);
    let md = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(md["delta"]["stop_reason"], "max_tokens");
    assert_eq!(md["usage"]["output_tokens"], 2);
}

// ---------------------------------------------------------------------------
// Error switches and injected failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn model_error_switches() {
    let app = app();
    for (model, status, kind) in [
        ("mock-error-429", 429, "rate_limit_error"),
        ("mock-error-529", 529, "overloaded_error"),
        ("mock-error-500", 500, "api_error"),
    ] {
        for stream in [false, true] {
            let mut body = simple(model);
            body["stream"] = json!(stream);
            let a = post_message(&app, body).await;
            a.assert_error(status, kind);
            assert_eq!(a.header("retry-after"), (status == 429).then_some("7"));
            assert!(a.header("anthropic-ratelimit-requests-limit").is_none());
        }
    }
    // count_tokens honours them too.
    let a = call(&app, "POST", "/v1/messages/count_tokens", Some(simple("mock-error-529"))).await;
    a.assert_error(529, "overloaded_error");
}

#[tokio::test]
async fn stream_error_switch_ends_with_an_error_event() {
    let app = app();
    let mut body = simple("mock-stream-error");
    body["stream"] = json!(true);
    let a = post_message(&app, body).await;
    assert_eq!(a.status, StatusCode::OK);
    let events = parse_sse(&a.body);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(events[6].1, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    // Without streaming it answers normally.
    assert_eq!(post_message(&app, simple("mock-stream-error")).await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn slow_stream_spaces_events() {
    let app = app();
    let mut body = simple("mock-slow-stream");
    body["stream"] = json!(true);
    let t0 = tokio::time::Instant::now();
    let resp = app.oneshot(request("POST", "/v1/messages").body(body_of(Some(&body))).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut times = Vec::new();
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        times.push(t0.elapsed());
        all.extend_from_slice(&data);
    }
    let events = parse_sse(&all);
    assert_eq!(times.len(), events.len(), "one frame per event");
    assert_eq!(events[0].0, "message_start");
    assert!(times[0] < Duration::from_millis(150), "first event immediately");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(150), "{times:?}");
    }
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test(start_paused = true)]
async fn hang_switch_never_answers() {
    let app = app();
    let fut = app.oneshot(request("POST", "/v1/messages").body(body_of(Some(&simple("mock-hang")))).unwrap());
    let r = tokio::time::timeout(Duration::from_secs(600), fut).await;
    assert!(r.is_err(), "mock-hang answered within ten minutes");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_v1_responses() {
    let app =
        router(MockConfig { accept_keys: vec![KEY.to_owned()], latency: Duration::from_secs(2), admin_keys: vec![] });
    let t0 = tokio::time::Instant::now();
    let a = post_message(&app, simple("m")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_secs(2));
    // Control endpoints are not delayed.
    let t1 = tokio::time::Instant::now();
    call(&app, "GET", "/_mock/requests", None).await;
    assert!(t1.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn injected_failures_count_down() {
    let app = app();
    let set = call(&app, "POST", "/_mock/fail", Some(json!({"status": 529, "count": 3}))).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json(), json!({"status": 529, "count": 3}));
    post_message(&app, simple("m")).await.assert_error(529, "overloaded_error");
    call(&app, "GET", "/v1/models", None).await.assert_error(529, "overloaded_error");
    assert_eq!(call(&app, "GET", "/_mock/fail", None).await.json()["count"], 1);
    post_message(&app, simple("m")).await.assert_error(529, "overloaded_error");
    assert_eq!(post_message(&app, simple("m")).await.status, StatusCode::OK);

    call(&app, "POST", "/_mock/fail", Some(json!({"status": 429, "count": 1}))).await;
    let a = post_message(&app, simple("m")).await;
    a.assert_error(429, "rate_limit_error");
    assert_eq!(a.header("retry-after"), Some("7"));
    assert_eq!(post_message(&app, simple("m")).await.status, StatusCode::OK);

    call(&app, "POST", "/_mock/fail", Some(json!({"status": 500, "count": 1}))).await;
    post_message(&app, simple("m")).await.assert_error(500, "api_error");

    let bad = call(&app, "POST", "/_mock/fail", Some(json!({"status": 200, "count": 1}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------
// Cache, count_tokens, models
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cache_creation_then_read() {
    let app = app();
    let system = "s".repeat(400); // 100 tokens
    let long = "l".repeat(80); // 20 tokens, 1h ttl
    let body = json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 10,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": long, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "question"}
        ]}],
    });
    let first = post_message(&app, body.clone()).await.json();
    let u = &first["usage"];
    assert_eq!(u["input_tokens"], 2);
    assert_eq!(u["cache_creation_input_tokens"], 120);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 100);
    assert_eq!(u["cache_creation"]["ephemeral_1h_input_tokens"], 20);

    let second = post_message(&app, body).await.json();
    let u = &second["usage"];
    assert_eq!(u["input_tokens"], 2);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 120);

    // A different text is a new entry; the old one is still read.
    let third = json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "s".repeat(400), "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "n".repeat(40), "cache_control": {"type": "ephemeral"}}]}],
    });
    let u = post_message(&app, third).await.json()["usage"].clone();
    assert_eq!(u["cache_read_input_tokens"], 100);
    assert_eq!(u["cache_creation_input_tokens"], 10);
    assert_eq!(u["input_tokens"], 0);
}

#[tokio::test]
async fn count_tokens_uses_the_same_counting() {
    let app = app();
    let body = json!({
        "model": "claude-opus-4-7",
        "system": [{"type": "text", "text": "c".repeat(40), "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "twelve chars"}],
    });
    let a = call(&app, "POST", "/v1/messages/count_tokens", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"input_tokens": 13}));
    // It did not write the cache: the Messages call creates it.
    let mut msg = body;
    msg["max_tokens"] = json!(5);
    let u = post_message(&app, msg).await.json()["usage"].clone();
    assert_eq!(u["cache_creation_input_tokens"], 10);
    assert_eq!(u["input_tokens"], 3);

    let missing = call(&app, "POST", "/v1/messages/count_tokens", Some(json!({"model": "m"}))).await;
    missing.assert_error(400, "invalid_request_error");
}

#[tokio::test]
async fn models_list_and_get() {
    let app = app();
    let a = call(&app, "GET", "/v1/models", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], ids[0]);
    assert_eq!(v["last_id"], *ids.last().unwrap());
    for m in v["data"].as_array().unwrap() {
        assert_eq!(m["type"], "model");
        assert!(m["display_name"].as_str().unwrap().starts_with("Claude"));
        assert!(is_rfc3339(m["created_at"].as_str().unwrap()));
    }
    let page = call(&app, "GET", "/v1/models?limit=1", None).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);

    let one = call(&app, "GET", "/v1/models/claude-sonnet-4-6", None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["display_name"], "Claude Sonnet 4.6");
    call(&app, "GET", "/v1/models/claude-nonexistent", None).await.assert_error(404, "not_found_error");
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

#[tokio::test]
async fn batch_lifecycle() {
    let app = app();
    call(&app, "POST", "/v1/messages/batches", Some(json!({"requests": []})))
        .await
        .assert_error(400, "invalid_request_error");

    let create = call(
        &app,
        "POST",
        "/v1/messages/batches",
        Some(json!({"requests": [
            {"custom_id": "a", "params": simple("claude-haiku-4-5-20251001")},
            {"custom_id": "b", "params": {"model": "claude-haiku-4-5-20251001", "messages": []}},
        ]})),
    )
    .await;
    assert_eq!(create.status, StatusCode::OK);
    let batch = create.json();
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msgbatch_"));
    assert_eq!(batch["type"], "message_batch");
    assert_eq!(batch["processing_status"], "ended");
    assert_eq!(
        batch["request_counts"],
        json!({"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0})
    );
    for f in ["created_at", "ended_at", "expires_at"] {
        assert!(is_rfc3339(batch[f].as_str().unwrap()), "{f}");
    }
    assert!(batch["archived_at"].is_null());
    assert!(batch["cancel_initiated_at"].is_null());
    assert_eq!(batch["results_url"], format!("/v1/messages/batches/{id}/results"));

    let got = call(&app, "GET", &format!("/v1/messages/batches/{id}"), None).await;
    assert_eq!(got.json(), batch);

    let second = call(
        &app,
        "POST",
        "/v1/messages/batches",
        Some(json!({"requests": [{"custom_id": "only", "params": simple("m")}]})),
    )
    .await
    .json();
    let list = call(&app, "GET", "/v1/messages/batches", None).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], second["id"], "newest first");
    assert_eq!(list["last_id"], id.as_str());

    let results = call(&app, "GET", &format!("/v1/messages/batches/{id}/results"), None).await;
    assert_eq!(results.status, StatusCode::OK);
    let lines: Vec<Value> =
        std::str::from_utf8(&results.body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["custom_id"], "a");
    assert_eq!(lines[0]["result"]["type"], "succeeded");
    assert_eq!(lines[0]["result"]["message"]["type"], "message");
    assert_eq!(lines[0]["result"]["message"]["usage"]["input_tokens"], 3);
    assert_eq!(lines[1]["custom_id"], "b");
    assert_eq!(lines[1]["result"]["type"], "errored");
    assert_eq!(lines[1]["result"]["error"]["error"]["type"], "invalid_request_error");

    let canceled = call(&app, "POST", &format!("/v1/messages/batches/{id}/cancel"), None).await;
    assert_eq!(canceled.status, StatusCode::OK);
    assert_eq!(canceled.json()["processing_status"], "ended");

    let deleted = call(&app, "DELETE", &format!("/v1/messages/batches/{id}"), None).await;
    assert_eq!(deleted.json(), json!({"id": id, "type": "message_batch_deleted"}));
    for (method, path) in [
        ("GET", format!("/v1/messages/batches/{id}")),
        ("GET", format!("/v1/messages/batches/{id}/results")),
        ("POST", format!("/v1/messages/batches/{id}/cancel")),
        ("DELETE", format!("/v1/messages/batches/{id}")),
    ] {
        call(&app, method, &path, None).await.assert_error(404, "not_found_error");
    }
    let list = call(&app, "GET", "/v1/messages/batches", None).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn batch_rejects_duplicate_custom_ids() {
    let app = app();
    let a = call(
        &app,
        "POST",
        "/v1/messages/batches",
        Some(json!({"requests": [
            {"custom_id": "x", "params": simple("m")},
            {"custom_id": "x", "params": simple("m")},
        ]})),
    )
    .await;
    a.assert_error(400, "invalid_request_error");
}

// ---------------------------------------------------------------------------
// Observation, unknown paths, limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn request_log_never_holds_key_values() {
    let app = app();
    let body = simple("claude-sonnet-4-6");
    let body_len = serde_json::to_vec(&body).unwrap().len();
    let req = request("POST", "/v1/messages")
        .header("authorization", "Bearer sk-ant-oat01-BEARER-secret")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .header("X-Custom", "1")
        .body(body_of(Some(&body)))
        .unwrap();
    send(&app, req).await;
    let bad = Request::post("/v1/messages")
        .header("x-api-key", "sk-ant-api03-REJECTED-key-value")
        .body(Body::empty())
        .unwrap();
    send(&app, bad).await;
    call(&app, "GET", "/_mock/fail", None).await; // not a /v1 path: not logged

    let log = call(&app, "GET", "/_mock/requests", None).await;
    assert_eq!(log.status, StatusCode::OK);
    let text = std::str::from_utf8(&log.body).unwrap();
    for secret in [KEY, "BEARER-secret", "REJECTED-key-value"] {
        assert!(!text.contains(secret), "log leaks {secret}: {text}");
    }
    let v = log.json();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/v1/messages");
    assert_eq!(
        e["header_names"],
        json!(["anthropic-beta", "anthropic-version", "authorization", "content-type", "x-api-key", "x-custom"])
    );
    assert_eq!(e["anthropic_version"], "2023-06-01");
    assert_eq!(e["anthropic_beta"], "prompt-caching-2024-07-31");
    assert_eq!(e["key_accepted"], true);
    assert_eq!(e["authorization_present"], true);
    assert_eq!(e["body_bytes"], body_len);
    let e = &entries[1];
    assert_eq!(e["key_accepted"], false);
    assert_eq!(e["authorization_present"], false);
    assert!(e["anthropic_version"].is_null());
    assert_eq!(e["body_bytes"], 0);

    let cleared = call(&app, "DELETE", "/_mock/requests", None).await;
    assert!(cleared.status.is_success());
    assert_eq!(call(&app, "GET", "/_mock/requests", None).await.json(), json!([]));
}

#[tokio::test]
async fn request_log_is_bounded() {
    let app = app();
    for _ in 0..(control::LOG_CAPACITY + 5) {
        call(&app, "GET", "/v1/models", None).await;
    }
    let v = call(&app, "GET", "/_mock/requests", None).await.json();
    assert_eq!(v.as_array().unwrap().len(), control::LOG_CAPACITY);
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let app = app();
    for path in ["/v1/nope", "/nope", "/v2/messages"] {
        let a = call(&app, "GET", path, None).await;
        a.assert_error(404, "not_found_error");
        assert!(request_id_ok(a.header("request-id").unwrap()));
    }
    let a = call(&app, "GET", "/v1/messages", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json()["type"], "error");
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let app = app();
    let big = vec![b' '; MESSAGES_BODY_LIMIT + 1];
    let req = request("POST", "/v1/messages").body(Body::from(big)).unwrap();
    send(&app, req).await.assert_error(413, "request_too_large");
}

/// Through a real socket: `serve` on an ephemeral port, a raw HTTP/1.1
/// streaming request, chunks arriving as the stream is produced.
#[tokio::test]
async fn serve_streams_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, MockConfig::default()));

    let body = serde_json::to_vec(&json!({"model": "m", "max_tokens": 4, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}))
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-type: text/event-stream"));
    assert!(text.contains("transfer-encoding: chunked"), "a streamed body");
    assert!(text.contains("request-id: req_"));
    assert!(text.contains("event: message_start"));
    assert!(text.contains("event: message_stop"));
    server.abort();
}

#[tokio::test]
async fn admin_api_deactivates_keys() {
    let app = app();
    let id = super::api_key_id(KEY);
    let admin = |method: &str, path: &str, key: &str, body: Option<Value>| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .body(body_of(body.as_ref()))
            .unwrap()
    };
    // a normal key is not an admin key
    let a = send(&app, admin("GET", "/v1/organizations/api_keys", KEY, None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = send(&app, admin("GET", "/v1/organizations/api_keys", ADMIN_KEY, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(!String::from_utf8_lossy(&a.body).contains(KEY), "the list never carries a key");
    let a = send(&app, admin("GET", &format!("/v1/organizations/api_keys/{id}"), ADMIN_KEY, None)).await;
    assert_eq!(a.json()["status"], "active");
    let a = send(
        &app,
        admin("POST", &format!("/v1/organizations/api_keys/{id}"), ADMIN_KEY, Some(json!({"status": "inactive"}))),
    )
    .await;
    assert_eq!(a.json()["status"], "inactive");
    // the deactivated key is refused from now on
    assert_eq!(post_message(&app, simple("claude-sonnet-4-6")).await.status, StatusCode::UNAUTHORIZED);
    let a = send(&app, admin("GET", "/v1/organizations/api_keys/apikey_nope", ADMIN_KEY, None)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
