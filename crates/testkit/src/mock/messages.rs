//! `POST /v1/messages` (plain and streaming) and
//! `POST /v1/messages/count_tokens`, with deterministic token counting and a
//! process-wide simulated prompt cache.

use std::borrow::Cow;
use std::collections::HashSet;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

use super::wire::{ApiError, RequestId};
use super::Shared;

/// The reply, one output token per word.
pub const REPLY_WORDS: [&str; 10] =
    ["Hello", "from", "the", "keyward", "mock", "upstream.", "This", "reply", "is", "simulated."];

/// Pause between events for `mock-slow-stream`.
pub(crate) const SLOW_STREAM_GAP: Duration = Duration::from_millis(150);
/// How long `mock-hang` waits before giving up (unless the server shuts down).
pub(crate) const HANG: Duration = Duration::from_secs(3600);
/// Deltas sent by `mock-stream-error` before its `error` event.
pub(crate) const STREAM_ERROR_AFTER_DELTAS: usize = 3;

/// Entries the prompt cache holds before it forgets everything (a crude
/// stand-in for expiry that keeps memory bounded under load tests).
const CACHE_CAPACITY: usize = 100_000;

// ---------------------------------------------------------------------------
// Token counting
// ---------------------------------------------------------------------------

fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

fn ceil4(n: u64) -> u64 {
    n.div_ceil(4)
}

/// A content block carrying `cache_control`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachedBlock {
    /// Hash of the block's text.
    key: u64,
    tokens: u64,
    one_hour: bool,
}

/// The text of a request, split into what is cacheable and what is not.
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    uncached_chars: u64,
    cached: Vec<CachedBlock>,
}

impl Breakdown {
    /// Scans `system` (string or blocks) and every message's `content`
    /// (string or blocks): text blocks' `text`, and `tool_result` content
    /// (string or text blocks). Other block types count nothing.
    pub(crate) fn of(system: Option<&Value>, messages: &[Value]) -> Self {
        let mut b = Self::default();
        if let Some(system) = system {
            b.visit_content(system);
        }
        for m in messages {
            if let Some(content) = m.get("content") {
                b.visit_content(content);
            }
        }
        b
    }

    fn visit_content(&mut self, content: &Value) {
        match content {
            Value::String(s) => self.uncached_chars += chars(s),
            Value::Array(blocks) => {
                for block in blocks {
                    self.visit_block(block);
                }
            }
            _ => {}
        }
    }

    fn visit_block(&mut self, block: &Value) {
        let Value::Object(map) = block else {
            if let Value::String(s) = block {
                self.uncached_chars += chars(s);
            }
            return;
        };
        match map.get("cache_control") {
            Some(cc) if !cc.is_null() => {
                let mut hasher = DefaultHasher::new();
                let mut n = 0u64;
                block_texts(map, &mut |s| {
                    hasher.write(s.as_bytes());
                    hasher.write_u8(0xFF);
                    n += chars(s);
                });
                self.cached.push(CachedBlock {
                    key: hasher.finish(),
                    tokens: ceil4(n),
                    one_hour: cc.get("ttl").and_then(Value::as_str) == Some("1h"),
                });
            }
            _ => match map.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(t) = map.get("text").and_then(Value::as_str) {
                        self.uncached_chars += chars(t);
                    }
                }
                // Nested blocks may carry their own cache_control.
                Some("tool_result") => {
                    if let Some(c) = map.get("content") {
                        self.visit_content(c);
                    }
                }
                _ => {}
            },
        }
    }

    /// Total input tokens, as `count_tokens` reports them: the same split as
    /// a Messages call makes, summed, so it always equals
    /// `input + cache_creation + cache_read` of that call.
    pub(crate) fn total_tokens(&self) -> u64 {
        let total = ceil4(self.uncached_chars) + self.cached.iter().map(|c| c.tokens).sum::<u64>();
        total.max(1)
    }
}

/// Calls `f` with every text of a block (text blocks, `tool_result`
/// content as string or text blocks).
fn block_texts<'a>(map: &'a Map<String, Value>, f: &mut impl FnMut(&'a str)) {
    match map.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(t) = map.get("text").and_then(Value::as_str) {
                f(t);
            }
        }
        Some("tool_result") => match map.get("content") {
            Some(Value::String(s)) => f(s),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        block_texts(inner, f);
                    }
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// Token counts of one answered request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputUsage {
    pub(crate) input: u64,
    pub(crate) cache_creation_5m: u64,
    pub(crate) cache_creation_1h: u64,
    pub(crate) cache_read: u64,
}

impl InputUsage {
    pub(crate) fn cache_creation(&self) -> u64 {
        self.cache_creation_5m + self.cache_creation_1h
    }
}

/// The simulated prompt cache: hashes of block texts seen with
/// `cache_control`. Locked once per request that has cached blocks.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    seen: Mutex<HashSet<u64>>,
}

impl PromptCache {
    /// Counts a request's input tokens. A cached block seen for the first
    /// time is written (cache creation), later it is read. Uncached text
    /// counts as `input_tokens`; if a request counts nothing at all, it
    /// still counts one input token.
    pub(crate) fn account(&self, b: &Breakdown) -> InputUsage {
        let mut u = InputUsage { input: ceil4(b.uncached_chars), ..InputUsage::default() };
        if !b.cached.is_empty() {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            for c in &b.cached {
                if seen.contains(&c.key) {
                    u.cache_read += c.tokens;
                } else {
                    if seen.len() >= CACHE_CAPACITY {
                        seen.clear();
                    }
                    seen.insert(c.key);
                    if c.one_hour {
                        u.cache_creation_1h += c.tokens;
                    } else {
                        u.cache_creation_5m += c.tokens;
                    }
                }
            }
        }
        if u.input + u.cache_creation() + u.cache_read == 0 {
            u.input = 1;
        }
        u
    }
}

// ---------------------------------------------------------------------------
// Request parameters
// ---------------------------------------------------------------------------

/// What the mock needs from a Messages request body.
#[derive(Debug)]
pub(crate) struct Params<'a> {
    pub(crate) model: &'a str,
    pub(crate) max_tokens: u64,
    pub(crate) stream: bool,
    pub(crate) system: Option<&'a Value>,
    pub(crate) messages: &'a [Value],
    /// Tool calls to answer with (`mock:tool_use` directives; only with `tools`).
    pub(crate) tool_calls: Vec<(String, Value)>,
}

/// The directive that makes the mock answer with a tool call: in the last
/// user turn's text, `mock:tool_use NAME {json input}` (one per line, several
/// allowed), honoured when the request declares `tools`.
pub const TOOL_DIRECTIVE: &str = "mock:tool_use ";

fn tool_directives(messages: &[Value]) -> Vec<(String, Value)> {
    let Some(last) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return Vec::new();
    };
    let mut texts: Vec<&str> = Vec::new();
    match last.get("content") {
        Some(Value::String(s)) => texts.push(s),
        Some(Value::Array(blocks)) => {
            texts.extend(blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)));
        }
        _ => {}
    }
    let mut out = Vec::new();
    for t in texts {
        let mut rest = t;
        while let Some(i) = rest.find(TOOL_DIRECTIVE) {
            rest = &rest[i + TOOL_DIRECTIVE.len()..];
            let line = rest.split('\n').next().unwrap_or("");
            let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let input = serde_json::Deserializer::from_str(args.trim())
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
                .filter(Value::is_object)
                .unwrap_or_else(|| Value::Object(Map::new()));
            if !name.is_empty() {
                out.push((name.to_string(), input));
            }
        }
    }
    out
}

/// Parses the body as a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("request body must be a JSON object".into()),
        Err(e) => Err(format!("malformed JSON in request body: {e}")),
    }
}

/// `model`, which the error switches key on.
pub(crate) fn model_of(obj: &Map<String, Value>) -> Result<&str, String> {
    match obj.get("model") {
        None | Some(Value::Null) => Err("model: Field required".into()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err("model: Input should be a non-empty string".into()),
    }
}

/// Validates a Messages request (`max_tokens` only when `need_max_tokens`:
/// `count_tokens` does not take it).
pub(crate) fn parse_params(obj: &Map<String, Value>, need_max_tokens: bool) -> Result<Params<'_>, String> {
    let model = model_of(obj)?;
    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) if need_max_tokens => return Err("max_tokens: Field required".into()),
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => return Err("max_tokens: Input should be an integer greater than or equal to 1".into()),
        },
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => return Err("messages: Field required".into()),
        Some(Value::Array(a)) if a.is_empty() => return Err("messages: at least one message is required".into()),
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'")),
        }
        match m.get("content") {
            Some(Value::String(_) | Value::Array(_)) => {}
            None | Some(Value::Null) => return Err(format!("messages.{i}.content: Field required")),
            Some(_) => {
                return Err(format!("messages.{i}.content: Input should be a string or a list of content blocks"))
            }
        }
    }
    let system = match obj.get("system") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Array(_))) => Some(v),
        Some(_) => return Err("system: Input should be a string or a list of text blocks".into()),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".into()),
    };
    let has_tools = obj.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    let tool_calls = if has_tools { tool_directives(messages) } else { Vec::new() };
    Ok(Params { model, max_tokens, stream, system, messages, tool_calls })
}

// ---------------------------------------------------------------------------
// Model switches
// ---------------------------------------------------------------------------

/// Behaviour selected by the request's `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    Normal,
    Error(u16),
    StreamError,
    SlowStream,
    Hang,
}

pub(crate) fn switch_for(model: &str) -> Switch {
    match model {
        "mock-error-429" => Switch::Error(429),
        "mock-error-529" => Switch::Error(529),
        "mock-error-500" => Switch::Error(500),
        "mock-stream-error" => Switch::StreamError,
        "mock-slow-stream" => Switch::SlowStream,
        "mock-hang" => Switch::Hang,
        _ => Switch::Normal,
    }
}

/// Applies the error and hang switches; `Ok` means: answer normally.
async fn apply_switch(st: &Shared, switch: Switch, rid: &RequestId) -> Result<(), ApiError> {
    match switch {
        Switch::Error(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(ApiError::for_status(status, rid))
        }
        Switch::Hang => {
            st.hang().await;
            Err(ApiError::for_status(StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), rid))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------

#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

impl Usage {
    fn new(input: InputUsage, output_tokens: u64) -> Self {
        Self {
            input_tokens: input.input,
            cache_creation_input_tokens: input.cache_creation(),
            cache_read_input_tokens: input.cache_read,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: input.cache_creation_5m,
                ephemeral_1h_input_tokens: input.cache_creation_1h,
            },
            output_tokens,
            service_tier: "standard",
        }
    }
}

/// A content block of a reply.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlock {
    Text { text: String },
    ToolUse { id: String, name: String, input: Value },
}

/// Output tokens of a tool call: a quarter of its input's JSON length.
fn tool_tokens(calls: &[(String, Value)]) -> u64 {
    calls.iter().map(|(n, i)| ceil4(chars(n) + chars(&i.to_string()))).sum()
}

/// A `message` object, as the API returns it.
#[derive(Serialize, Debug)]
pub(crate) struct MessageBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<ContentBlock>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

/// The words of the reply for `max_tokens`, and the stop reason.
fn reply(max_tokens: u64) -> (&'static [&'static str], &'static str) {
    let n = usize::try_from(max_tokens).unwrap_or(usize::MAX).min(REPLY_WORDS.len());
    let stop = if n < REPLY_WORDS.len() { "max_tokens" } else { "end_turn" };
    (&REPLY_WORDS[..n], stop)
}

/// Answers one (validated) request without streaming; also used by batches.
pub(crate) fn complete<'a>(st: &Shared, p: &Params<'a>, id: &'a str) -> MessageBody<'a> {
    let input = st.cache.account(&Breakdown::of(p.system, p.messages));
    let (words, mut stop) = reply(p.max_tokens);
    let mut content = vec![ContentBlock::Text { text: words.join(" ") }];
    for (name, input) in &p.tool_calls {
        content.push(ContentBlock::ToolUse { id: st.ids.next("toolu_"), name: name.clone(), input: input.clone() });
        stop = "tool_use";
    }
    MessageBody {
        id,
        ty: "message",
        role: "assistant",
        model: p.model,
        content,
        stop_reason: Some(stop),
        stop_sequence: None,
        usage: Usage::new(input, words.len() as u64 + tool_tokens(&p.tool_calls)),
    }
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    message: MessageBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    Ping,
    ContentBlockStart { index: u32, content_block: ContentBlock },
    ContentBlockDelta { index: u32, delta: TextDelta<'a> },
    ContentBlockStop { index: u32 },
    MessageDelta { delta: StopDelta, usage: DeltaUsage },
    MessageStop,
    Error { error: super::wire::ErrorObject<'a> },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TextDelta<'a> {
    TextDelta { text: Cow<'a, str> },
    InputJsonDelta { partial_json: String },
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

fn sse(name: &str, data: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut out, data).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The events of a streamed answer, in order.
fn stream_events(st: &Shared, p: &Params<'_>, id: &str, input: InputUsage, fail_midway: bool) -> Vec<Bytes> {
    let (words, mut stop) = reply(p.max_tokens);
    let mut events = Vec::with_capacity(words.len() + 6);
    let start = MessageStart {
        ty: "message_start",
        message: MessageBody {
            id,
            ty: "message",
            role: "assistant",
            model: p.model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::new(input, 1),
        },
    };
    events.push(sse("message_start", &start));
    events.push(sse("ping", &Event::Ping));
    events.push(sse(
        "content_block_start",
        &Event::ContentBlockStart { index: 0, content_block: ContentBlock::Text { text: String::new() } },
    ));
    let emitted = if fail_midway { words.len().min(STREAM_ERROR_AFTER_DELTAS) } else { words.len() };
    for w in &words[..emitted] {
        events.push(sse(
            "content_block_delta",
            &Event::ContentBlockDelta { index: 0, delta: TextDelta::TextDelta { text: Cow::Owned(format!("{w} ")) } },
        ));
    }
    if fail_midway {
        events.push(sse(
            "error",
            &Event::Error { error: super::wire::ErrorObject { kind: "overloaded_error", message: "Overloaded" } },
        ));
        return events;
    }
    events.push(sse("content_block_stop", &Event::ContentBlockStop { index: 0 }));
    // each tool call: an empty `input`, then its JSON in three pieces
    for (i, (name, args)) in p.tool_calls.iter().enumerate() {
        let index = i as u32 + 1;
        let block =
            ContentBlock::ToolUse { id: st.ids.next("toolu_"), name: name.clone(), input: Value::Object(Map::new()) };
        events.push(sse("content_block_start", &Event::ContentBlockStart { index, content_block: block }));
        let text: Vec<char> = args.to_string().chars().collect();
        for piece in text.chunks(text.len().div_ceil(3).max(1)) {
            let partial_json = piece.iter().collect();
            events.push(sse(
                "content_block_delta",
                &Event::ContentBlockDelta { index, delta: TextDelta::InputJsonDelta { partial_json } },
            ));
        }
        events.push(sse("content_block_stop", &Event::ContentBlockStop { index }));
        stop = "tool_use";
    }
    events.push(sse(
        "message_delta",
        &Event::MessageDelta {
            delta: StopDelta { stop_reason: stop, stop_sequence: None },
            usage: DeltaUsage {
                input_tokens: input.input,
                cache_creation_input_tokens: input.cache_creation(),
                cache_read_input_tokens: input.cache_read,
                output_tokens: words.len() as u64 + tool_tokens(&p.tool_calls),
            },
        },
    ));
    events.push(sse("message_stop", &Event::MessageStop));
    events
}

fn stream_response(events: Vec<Bytes>, gap: Option<Duration>) -> Response {
    let body = match gap {
        None => Body::from_stream(stream::iter(events.into_iter().map(Ok::<_, Infallible>))),
        Some(gap) => Body::from_stream(stream::unfold((events.into_iter(), true), move |(mut it, first)| async move {
            let ev = it.next()?;
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, Infallible>(ev), (it, false)))
        })),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// `POST /v1/messages`
pub(crate) async fn create_message(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    key: Option<Extension<super::usage::ApiKeyId>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body).map_err(|m| ApiError::invalid(m, &rid))?;
    let switch = switch_for(model_of(&obj).map_err(|m| ApiError::invalid(m, &rid))?);
    apply_switch(&st, switch, &rid).await?;
    let p = parse_params(&obj, true).map_err(|m| ApiError::invalid(m, &rid))?;
    let id = st.ids.next("msg_");
    let key = key.as_ref().map(|Extension(k)| k);
    if p.stream {
        let input = st.cache.account(&Breakdown::of(p.system, p.messages));
        let fail = switch == Switch::StreamError;
        let words = reply(p.max_tokens).0.len();
        let output = if fail { words.min(STREAM_ERROR_AFTER_DELTAS) } else { words };
        st.usage.record(key, input, output as u64);
        let events = stream_events(&st, &p, &id, input, fail);
        let gap = (switch == Switch::SlowStream).then_some(SLOW_STREAM_GAP);
        return Ok(stream_response(events, gap));
    }
    let body = complete(&st, &p, &id);
    st.usage.record(
        key,
        InputUsage {
            input: body.usage.input_tokens,
            cache_creation_5m: body.usage.cache_creation.ephemeral_5m_input_tokens,
            cache_creation_1h: body.usage.cache_creation.ephemeral_1h_input_tokens,
            cache_read: body.usage.cache_read_input_tokens,
        },
        body.usage.output_tokens,
    );
    Ok(Json(body).into_response())
}

#[derive(Serialize)]
struct CountTokens {
    input_tokens: u64,
}

/// `POST /v1/messages/count_tokens`: the total a Messages call with the same
/// body would bill as input (uncached + cache creation + cache read). Does
/// not touch the prompt cache.
pub(crate) async fn count_tokens(
    State(st): State<Arc<Shared>>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body).map_err(|m| ApiError::invalid(m, &rid))?;
    let switch = switch_for(model_of(&obj).map_err(|m| ApiError::invalid(m, &rid))?);
    apply_switch(&st, switch, &rid).await?;
    let p = parse_params(&obj, false).map_err(|m| ApiError::invalid(m, &rid))?;
    let input_tokens = Breakdown::of(p.system, p.messages).total_tokens();
    Ok(Json(CountTokens { input_tokens }).into_response())
}

#[cfg(test)]
mod directive_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_directives_come_from_the_last_user_turn() {
        let msgs = vec![
            json!({"role": "user", "content": "mock:tool_use old {}"}),
            json!({"role": "assistant", "content": "ok"}),
            json!({"role": "user", "content": [{"type": "text", "text":
                "Do it.\nmock:tool_use fetch_url {\"url\": \"https://example.com\"} trailing words\nmock:tool_use ping"}]}),
        ];
        let calls = tool_directives(&msgs);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], ("fetch_url".to_string(), json!({"url": "https://example.com"})));
        assert_eq!(calls[1], ("ping".to_string(), json!({})));
        // without `tools` in the request there is no tool call
        let body = json!({"model": "m", "max_tokens": 5, "messages": msgs});
        assert!(parse_params(body.as_object().unwrap(), true).unwrap().tool_calls.is_empty());
    }
}
