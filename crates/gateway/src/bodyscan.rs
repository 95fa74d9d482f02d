//! Large request bodies: forwarded as they arrive instead of read whole where
//! the key allows it ([`ScannedBody`]), and counted against a memory budget
//! where they must be read whole ([`Budgeted`]).
//!
//! [`JsonScan`] reads a body incrementally, in whatever pieces it arrives: it
//! checks that the body is one JSON object and picks out the two top-level
//! fields the gateway needs (`model`, `stream`), with the same answers as
//! reading the whole body with serde (escapes in keys and values decoded,
//! duplicates refused). It holds no more than the current piece.
//!
//! [`ScannedBody`] runs the scan on a request body on its way to the upstream,
//! each piece before it goes on: the piece that makes a body invalid JSON, too
//! large, or name a model the key may not use is not sent and the request is
//! cut off there, so the upstream never receives such a request whole. (A body
//! that merely ends early is refused too, but the upstream has had all of it:
//! it is not valid JSON there either.) The outcome is left in a [`Verdict`].

use crate::error::ApiError;
use crate::index::Effective;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// What a complete, valid body said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    pub model: Option<String>,
    pub stream: Option<bool>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Not JSON (a syntax error, or the body ended early).
    Syntax,
    /// JSON, but not an object with the expected field types, or a field twice.
    Shape,
    TooLarge,
    /// The client's body could not be read.
    Read,
    /// The model is not allowed for the key; the message says which.
    Model(String),
}

impl Fault {
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Fault::Syntax => ApiError::InvalidRequest("request body is not valid JSON".into()),
            Fault::Shape => ApiError::InvalidRequest("request body must be a JSON object".into()),
            Fault::TooLarge => ApiError::TooLarge,
            Fault::Read => ApiError::InvalidRequest("could not read the request body".into()),
            Fault::Model(m) => ApiError::Forbidden(m.clone()),
        }
    }
}

/// Set once, by the body, when it has ended (passed) or been cut off (refused).
pub type Verdict = Arc<OnceLock<Result<Scanned, Fault>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level value.
    Start,
    /// A value must follow (after `:`, or after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the level's closing bracket.
    After,
    Str,
    /// After a backslash in a string.
    Esc,
    /// In `\uXXXX`, this many hex digits still to come.
    Hex(u8),
    Num(Num),
    /// In `true`, `false` or `null`: the literal and how much of it has been seen.
    Lit(&'static [u8], u8),
    /// After the top-level object: whitespace only.
    Done,
}

/// Positions in the number grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }

    fn next(self, b: u8) -> Option<Num> {
        Some(match (self, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::E,
            (Num::E, b'+' | b'-') => Num::ESign,
            (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Num::Exp,
            _ => return None,
        })
    }
}

/// What the string being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    /// Anything but the two below: checked, not kept.
    Skip,
    /// A key of the top-level object: decoded, to see whether it names a field.
    TopKey,
    /// The value of the top-level `model`: decoded and kept.
    Model,
}

/// Which top-level field the value being read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    Model,
    Stream,
}

/// Incremental reader of one JSON object; see the module documentation.
#[derive(Debug)]
pub struct JsonScan {
    state: State,
    /// Levels open; the top-level object is level 1. No limit: serde reads
    /// the values the gateway skips without one too.
    depth: usize,
    /// Bit `d` set: level `d + 1` is an array (bit 0 is the top-level object).
    arrays: Vec<u64>,
    text: Text,
    /// The string being read is an object's key.
    is_key: bool,
    field: Field,
    /// Decoded bytes of a top-level key or of the model's value.
    buf: Vec<u8>,
    /// Code unit of a `\u` escape being read.
    hex: u16,
    /// A high surrogate waiting for its low half (decoded strings only).
    high: Option<u16>,
    /// The literal being read is `true` / `false` for `stream`.
    lit_bool: Option<bool>,
    seen_model: bool,
    seen_stream: bool,
    out: Scanned,
    /// The model has been read and not yet taken by [`JsonScan::new_model`].
    model_new: bool,
}

impl Default for JsonScan {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonScan {
    pub fn new() -> Self {
        JsonScan {
            state: State::Start,
            depth: 0,
            arrays: Vec::new(),
            text: Text::Skip,
            is_key: false,
            field: Field::Other,
            buf: Vec::new(),
            hex: 0,
            high: None,
            lit_bool: None,
            seen_model: false,
            seen_stream: false,
            out: Scanned::default(),
            model_new: false,
        }
    }

    /// The model, once, as soon as its value has been read.
    pub fn new_model(&mut self) -> Option<&str> {
        if !std::mem::take(&mut self.model_new) {
            return None;
        }
        self.out.model.as_deref()
    }

    /// The body has ended: what it said, or why it is refused.
    pub fn finish(self) -> Result<Scanned, Fault> {
        match self.state {
            State::Done => Ok(self.out),
            _ => Err(Fault::Syntax),
        }
    }

    /// The next piece of the body.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Fault> {
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Str && self.text == Text::Skip {
                i += plain_run(&data[i..]);
                if i == data.len() {
                    break;
                }
            }
            let b = data[i];
            i += 1;
            self.byte(b)?;
        }
        Ok(())
    }

    fn is_array(&self) -> bool {
        let d = self.depth.wrapping_sub(1);
        self.depth > 0 && self.arrays[d / 64] & (1 << (d % 64)) != 0
    }

    fn open(&mut self, array: bool) {
        let (word, bit) = (self.depth / 64, 1u64 << (self.depth % 64));
        if word == self.arrays.len() {
            self.arrays.push(0);
        }
        self.arrays[word] = if array { self.arrays[word] | bit } else { self.arrays[word] & !bit };
        self.depth += 1;
        self.state = if array { State::ArrayFirst } else { State::ObjectFirst };
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.state = if self.depth == 0 { State::Done } else { State::After };
    }

    /// A value has ended; clear the field it belonged to.
    fn value_done(&mut self) {
        self.field = Field::Other;
        self.state = State::After;
    }

    fn start_string(&mut self, text: Text, is_key: bool) {
        self.text = text;
        self.is_key = is_key;
        self.buf.clear();
        self.high = None;
        self.state = State::Str;
    }

    /// The start of a value.
    fn value(&mut self, b: u8) -> Result<(), Fault> {
        // the two fields the gateway reads accept only their own types
        match (self.field, b) {
            (Field::Model, b'"') => {
                self.start_string(Text::Model, false);
                return Ok(());
            }
            (Field::Model, b'n') | (Field::Stream, b'n' | b't' | b'f') => {}
            (Field::Model | Field::Stream, _) => return Err(Fault::Shape),
            (Field::Other, _) => {}
        }
        match b {
            b'{' => self.open(false),
            b'[' => self.open(true),
            b'"' => self.start_string(Text::Skip, false),
            b't' => self.literal(b"true", Some(true)),
            b'f' => self.literal(b"false", Some(false)),
            b'n' => self.literal(b"null", None),
            b'-' => self.state = State::Num(Num::Minus),
            b'0' => self.state = State::Num(Num::Zero),
            b'1'..=b'9' => self.state = State::Num(Num::Int),
            _ => return Err(Fault::Syntax),
        }
        Ok(())
    }

    fn literal(&mut self, lit: &'static [u8], value: Option<bool>) {
        self.lit_bool = value;
        self.state = State::Lit(lit, 1);
    }

    fn byte(&mut self, b: u8) -> Result<(), Fault> {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Start => match b {
                _ if ws => {}
                b'{' => self.open(false),
                // JSON, but not an object
                b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => return Err(Fault::Shape),
                _ => return Err(Fault::Syntax),
            },
            State::Value => {
                if !ws {
                    self.value(b)?;
                }
            }
            State::ArrayFirst => match b {
                _ if ws => {}
                b']' => self.close(),
                _ => self.value(b)?,
            },
            State::ObjectFirst | State::Key => match b {
                _ if ws => {}
                b'}' if self.state == State::ObjectFirst => self.close(),
                b'"' => self.start_string(if self.depth == 1 { Text::TopKey } else { Text::Skip }, true),
                _ => return Err(Fault::Syntax),
            },
            State::Colon => match b {
                _ if ws => {}
                b':' => self.state = State::Value,
                _ => return Err(Fault::Syntax),
            },
            State::After => match b {
                _ if ws => {}
                b',' => self.state = if self.is_array() { State::Value } else { State::Key },
                b']' if self.is_array() => self.close(),
                b'}' if !self.is_array() => self.close(),
                _ => return Err(Fault::Syntax),
            },
            State::Str => match b {
                _ if self.high.is_some() && b != b'\\' => return Err(Fault::Syntax),
                b'"' => self.end_string()?,
                b'\\' => self.state = State::Esc,
                0..=0x1f => return Err(Fault::Syntax),
                _ => self.keep(b),
            },
            State::Esc => {
                let decoded = match b {
                    _ if self.high.is_some() && b != b'u' => return Err(Fault::Syntax),
                    b'"' | b'\\' | b'/' => b,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        self.hex = 0;
                        self.state = State::Hex(4);
                        return Ok(());
                    }
                    _ => return Err(Fault::Syntax),
                };
                self.keep(decoded);
                self.state = State::Str;
            }
            State::Hex(left) => {
                let d = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    b'A'..=b'F' => b - b'A' + 10,
                    _ => return Err(Fault::Syntax),
                };
                self.hex = self.hex << 4 | d as u16;
                if left > 1 {
                    self.state = State::Hex(left - 1);
                } else {
                    self.state = State::Str;
                    self.unit()?;
                }
            }
            State::Num(n) => match n.next(b) {
                Some(n) => self.state = State::Num(n),
                None if n.complete() => {
                    self.value_done();
                    return self.byte(b);
                }
                None => return Err(Fault::Syntax),
            },
            State::Lit(lit, at) => {
                if lit.get(at as usize) != Some(&b) {
                    return Err(Fault::Syntax);
                }
                if at as usize + 1 < lit.len() {
                    self.state = State::Lit(lit, at + 1);
                } else {
                    if self.field == Field::Stream {
                        self.out.stream = self.lit_bool;
                    }
                    self.value_done();
                }
            }
            State::Done => {
                if !ws {
                    return Err(Fault::Syntax);
                }
            }
        }
        Ok(())
    }

    /// A byte of a string's content (decoded strings keep it).
    fn keep(&mut self, b: u8) {
        match self.text {
            Text::Skip => {}
            // a key longer than any field name cannot be one: no need to keep it all
            Text::TopKey if self.buf.len() > 8 => {}
            _ => self.buf.push(b),
        }
    }

    /// A `\uXXXX` escape's code unit.
    fn unit(&mut self) -> Result<(), Fault> {
        let u = self.hex;
        if self.text == Text::Skip {
            return Ok(());
        }
        // decoded strings must be valid Unicode: surrogates only in pairs
        let c = match (self.high.take(), u) {
            (None, 0xd800..=0xdbff) => {
                self.high = Some(u);
                return Ok(());
            }
            (None, 0xdc00..=0xdfff) => return Err(Fault::Syntax),
            (None, u) => char::from_u32(u as u32),
            (Some(h), 0xdc00..=0xdfff) => char::from_u32(0x10000 + ((h as u32 - 0xd800) << 10) + (u as u32 - 0xdc00)),
            (Some(_), _) => return Err(Fault::Syntax),
        };
        let Some(c) = c else { return Err(Fault::Syntax) };
        let mut tmp = [0u8; 4];
        for &b in c.encode_utf8(&mut tmp).as_bytes() {
            self.keep(b);
        }
        Ok(())
    }

    fn end_string(&mut self) -> Result<(), Fault> {
        match self.text {
            Text::Skip => {}
            Text::TopKey => {
                self.field = match self.buf.as_slice() {
                    b"model" if self.seen_model => return Err(Fault::Shape),
                    b"model" => {
                        self.seen_model = true;
                        Field::Model
                    }
                    b"stream" if self.seen_stream => return Err(Fault::Shape),
                    b"stream" => {
                        self.seen_stream = true;
                        Field::Stream
                    }
                    _ => Field::Other,
                };
            }
            Text::Model => {
                let Ok(model) = String::from_utf8(std::mem::take(&mut self.buf)) else {
                    return Err(Fault::Syntax);
                };
                self.out.model = Some(model);
                self.model_new = true;
            }
        }
        self.text = Text::Skip;
        if self.is_key {
            self.state = State::Colon;
        } else {
            self.value_done();
        }
        Ok(())
    }
}

/// Length of the run at the start of `s` that a skipped string keeps as it is:
/// everything but `"`, `\` and control characters. Eight bytes at a time.
fn plain_run(s: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let special = |w: u64| {
        let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
        // bytes below 0x20, bytes equal to `"`, bytes equal to `\`
        (w.wrapping_sub(LO * 0x20) & !w & HI) | has_zero(w ^ (LO * b'"' as u64)) | has_zero(w ^ (LO * b'\\' as u64))
    };
    let mut n = 0;
    for chunk in s.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        if special(u64::from_le_bytes(a)) != 0 {
            break;
        }
        n += 8;
    }
    n + s[n..].iter().take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\').count()
}

/// A request body on its way to the upstream, scanned as it goes; see the
/// module documentation.
pub struct ScannedBody<B> {
    inner: B,
    scan: JsonScan,
    eff: Arc<Effective>,
    seen: u64,
    max: u64,
    /// The verdict is in: nothing more is read from `inner`.
    ended: bool,
    verdict: Verdict,
}

impl<B> ScannedBody<B> {
    /// `max`: the largest body allowed; `eff`: the key's policy (allowed models).
    pub fn new(inner: B, max: u64, eff: Arc<Effective>) -> (Self, Verdict) {
        let verdict = Verdict::default();
        let body =
            ScannedBody { inner, scan: JsonScan::new(), eff, seen: 0, max, ended: false, verdict: verdict.clone() };
        (body, verdict)
    }

    fn refuse(&mut self, fault: Fault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        let _ = self.verdict.set(Err(fault));
        Poll::Ready(Some(Err("request body refused".into())))
    }

    /// Checks a piece before it goes on.
    fn check(&mut self, data: &[u8]) -> Result<(), Fault> {
        self.seen += data.len() as u64;
        if self.seen > self.max {
            return Err(Fault::TooLarge);
        }
        self.scan.feed(data)?;
        if let Some(model) = self.scan.new_model() {
            if let Some(message) = refused_model(&self.eff, std::iter::once(model)) {
                return Err(Fault::Model(message));
            }
        }
        Ok(())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for ScannedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(frame) = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) else {
                this.ended = true;
                let verdict = std::mem::take(&mut this.scan).finish();
                return match verdict {
                    Ok(s) => {
                        let _ = this.verdict.set(Ok(s));
                        Poll::Ready(None)
                    }
                    Err(f) => this.refuse(f),
                };
            };
            let Ok(frame) = frame else {
                return this.refuse(Fault::Read);
            };
            // trailers are not forwarded
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(f) = this.check(&data) {
                return this.refuse(f);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

/// A body read whole that holds a share of the memory budget for large bodies
/// (see `proxy::read_body`) until it has been handed to the connection.
pub struct Budgeted<B> {
    inner: B,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<B> Budgeted<B> {
    pub fn new(inner: B, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Budgeted { inner, permit: Some(permit) }
    }
}

impl<B> Body for Budgeted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.permit = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The message refusing the first of `models` the key may not use, if any.
pub fn refused_model<'a>(eff: &Effective, mut models: impl Iterator<Item = &'a str>) -> Option<String> {
    let allowed = eff.policy.models.as_ref().filter(|m| !m.is_empty())?;
    let refused = models.find(|m| !allowed.iter().any(|g| keyward_core::policy::glob_match(g, m)))?;
    Some(format!("model {refused:?} is not allowed for this key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use keyward_core::policy::KeyPolicy;
    use proptest::prelude::*;

    /// What the gateway reads from a whole body (`proxy::Probe`, Messages fields).
    #[derive(serde::Deserialize)]
    struct Probe {
        model: Option<String>,
        stream: Option<bool>,
    }

    fn whole(body: &[u8]) -> Result<Scanned, ()> {
        serde_json::from_slice::<Probe>(body).map(|p| Scanned { model: p.model, stream: p.stream }).map_err(|_| ())
    }

    fn scan(pieces: &[&[u8]]) -> Result<Scanned, Fault> {
        let mut s = JsonScan::new();
        for p in pieces {
            s.feed(p)?;
        }
        s.finish()
    }

    fn scan_in(body: &[u8], cuts: &[usize]) -> Result<Scanned, Fault> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for c in at {
            pieces.push(&body[from..c]);
            from = c;
        }
        pieces.push(&body[from..]);
        scan(&pieces)
    }

    fn ok(model: Option<&str>, stream: Option<bool>) -> Result<Scanned, Fault> {
        Ok(Scanned { model: model.map(str::to_string), stream })
    }

    #[test]
    fn reads_the_top_level_fields() {
        let body = br#"{"max_tokens":16,"messages":[{"role":"user","content":"say \"model\": x"}],"model":"claude-sonnet-4-6","stream":true}"#;
        assert_eq!(scan(&[body]), ok(Some("claude-sonnet-4-6"), Some(true)));
        // nested fields of the same name are not the request's
        let nested = br#"{"metadata":{"model":"a","stream":false},"tools":[{"model":"b"}],"model":"c"}"#;
        assert_eq!(scan(&[nested]), ok(Some("c"), None));
        assert_eq!(scan(&[b" {\"model\" : null , \"stream\":null}\r\n"]), ok(None, None));
        assert_eq!(scan(&[b"{}"]), ok(None, None));
        // escapes in keys and values are decoded
        assert_eq!(scan(&[br#"{"mod\u0065l":"claude-\u00e9\ud83d\ude00\/x"}"#]), ok(Some("claude-é😀/x"), None));
        // every split of a body gives the same answer
        for i in 0..=body.len() {
            for j in i..=body.len() {
                assert_eq!(scan(&[&body[..i], &body[i..j], &body[j..]]), scan(&[body]), "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn refuses_what_a_whole_read_refuses() {
        let syntax: &[&[u8]] = &[
            b"",
            b"{",
            b"{\"model\":\"x\"",
            b"{\"model\":\"x\"}}",
            b"{\"model\":\"x\"} x",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":1e}",
            b"{\"a\":tru}",
            b"{\"a\":[1,]}",
            b"{\"a\":[1 2]}",
            b"{\"a\" 1}",
            b"{,}",
            b"{\"a\":1,}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12g4\"}",
            b"{\"a\":[}",
            b"{'a':1}",
            b"x",
            // a lone surrogate in a field the gateway decodes
            b"{\"model\":\"\\ud800\"}",
            b"{\"model\":\"\\udc00x\"}",
        ];
        for body in syntax {
            assert!(scan(&[body]).is_err(), "{:?}", String::from_utf8_lossy(body));
            assert!(whole(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let shape: &[&[u8]] = &[
            b"\"x\"",
            b"12",
            b"null",
            b"{\"model\":1}",
            b"{\"model\":[\"a\"]}",
            b"{\"model\":\"a\",\"model\":\"b\"}",
            b"{\"model\":null,\"mod\\u0065l\":\"b\"}",
            b"{\"stream\":\"yes\"}",
            b"{\"stream\":true,\"stream\":false}",
        ];
        for body in shape {
            assert_eq!(scan(&[body]), Err(Fault::Shape), "{:?}", String::from_utf8_lossy(body));
            assert!(whole(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        // deep nesting in a skipped value is read as serde reads it: without a limit
        let deep = format!("{{\"a\":{}1{},\"model\":\"m\"}}", "[{\"b\":".repeat(300), "}]".repeat(300));
        assert_eq!(scan(&[deep.as_bytes()]), ok(Some("m"), None));
        assert!(whole(deep.as_bytes()).is_ok());
        assert!(scan(&[&deep.as_bytes()[1..]]).is_err());
    }

    #[test]
    fn plain_runs_stop_at_quotes_backslashes_and_control_characters() {
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..40 {
                let mut s = vec![b'a'; 40];
                s[at] = stop;
                assert_eq!(plain_run(&s), at, "{stop:#x} at {at}");
            }
        }
        assert_eq!(plain_run("é€😀 ~\x7f".as_bytes()), "é€😀 ~\x7f".len());
        assert_eq!(plain_run(b""), 0);
    }

    /// JSON text with the fields the gateway reads, in every shape and order.
    fn json_body() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            (-1.0e6f64..1.0e6).prop_map(|f| f.to_string()),
            Just("-0.5e-3".to_string()),
            Just("1E+2".to_string()),
            Just("0e5".to_string()),
            Just("-0.25E-7".to_string()),
            "[a-z \"\\\\/é😀\u{1}\n]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            Just(r#""\u00e9\ud83d\ude00""#.to_string()),
            Just(r#""\ud800""#.to_string()),
        ];
        let value = scalar.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                    let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        });
        // the fields the gateway reads, mostly with the types it accepts
        let model = prop_oneof![
            4 => "[a-z0-9.é-]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            1 => Just(r#""claude-\u0073onnet\/4""#.to_string()),
            1 => Just("null".to_string()),
            1 => value.clone(),
        ];
        let stream = prop_oneof![
            4 => prop_oneof![Just("true".to_string()), Just("false".to_string())],
            1 => Just("null".to_string()),
            1 => value.clone(),
        ];
        let field = prop_oneof![
            2 => (prop_oneof![Just(r#""model""#), Just(r#""mod\u0065l""#)], model)
                .prop_map(|(k, v)| format!("{k}:{v}")),
            2 => (prop_oneof![Just(r#""stream""#), Just(r#""str\u0065am""#)], stream)
                .prop_map(|(k, v)| format!("{k} : {v}")),
            3 => (key(), value).prop_map(|(k, v)| format!("{k}:\n{v}")),
        ];
        prop::collection::vec(field, 0..5).prop_map(|f| format!(" {{{}}} ", f.join(" ,\n")))
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""model""#.to_string()),
            Just(r#""stream""#.to_string()),
            Just(r#""models""#.to_string()),
            Just(r#""messages""#.to_string()),
            "[a-z]{0,10}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    /// An edit that may break the text: a byte deleted, replaced or cut off.
    fn mutate(body: &str, edit: (u8, usize, u8)) -> Vec<u8> {
        let mut b = body.as_bytes().to_vec();
        if b.is_empty() {
            return b;
        }
        let at = edit.1 % b.len();
        const BYTES: &[u8] = b"{}[]\",:\\ 0-.eEtrunlfa\x01\x1f";
        let byte = BYTES[edit.2 as usize % BYTES.len()];
        match edit.0 % 4 {
            0 => {
                b.remove(at);
            }
            1 => b[at] = byte,
            2 => b.insert(at, byte),
            _ => b.truncate(at),
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The scan agrees with serde reading the whole body, however it is cut.
        #[test]
        fn agrees_with_a_whole_read(body in json_body(), edit in proptest::option::of((any::<u8>(), any::<usize>(), any::<u8>())), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
            let bytes = match edit {
                Some(e) => mutate(&body, e),
                None => body.into_bytes(),
            };
            // serde also reads a struct from an array ([model, stream]); the gateway does not
            prop_assume!(bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'['));
            // the scan checks only what the whole read checks, or more where the
            // whole read skips (a lone surrogate in a string it does not decode)
            let scanned = scan_in(&bytes, &cuts);
            match whole(&bytes) {
                Ok(w) => prop_assert_eq!(scanned, Ok(w), "{}", String::from_utf8_lossy(&bytes)),
                Err(()) => prop_assert!(scanned.is_err(), "{}", String::from_utf8_lossy(&bytes)),
            }
        }
    }

    fn eff(models: &[&str]) -> Arc<Effective> {
        let policy = KeyPolicy { models: Some(models.iter().map(|m| m.to_string()).collect()), ..Default::default() };
        Arc::new(Effective { policy, ..Default::default() })
    }

    fn pieces(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p)))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// Polls the body to its end or its error: what came out, and whether it failed.
    async fn drain(mut body: impl Body<Data = Bytes> + Unpin) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }

    #[tokio::test]
    async fn a_passing_body_goes_through_whole() {
        let parts: [&'static [u8]; 5] = [b"{\"model\":", b"", b"\"claude-sonnet-4-6\",", b"\"max_tokens\":1}", b"\n"];
        let (body, verdict) = ScannedBody::new(pieces(&parts), 1 << 20, eff(&["claude-sonnet-*"]));
        let (out, failed) = drain(body).await;
        assert!(!failed);
        assert_eq!(out, parts.concat());
        assert_eq!(verdict.get(), Some(&ok(Some("claude-sonnet-4-6"), None)));
    }

    #[tokio::test]
    async fn a_refused_body_is_cut_off_before_its_end() {
        let cases: [(&[&'static [u8]], u64, Fault); 5] = [
            // the model is refused as soon as it is read, before the rest is sent
            (&[b"{\"model\":\"claude-opus-4-1\",", b"\"messages\":[]}"], 1 << 20, Fault::Model(String::new())),
            // ... and when it comes last, before the last piece
            (&[b"{\"messages\":[],", b"\"model\":\"claude-opus-4-1\"}"], 1 << 20, Fault::Model(String::new())),
            // invalid JSON in the last piece: that piece is never sent
            (&[b"{\"model\":\"claude-sonnet-4-6\",", b"\"a\":1", b"}}"], 1 << 20, Fault::Syntax),
            (&[b"{\"model\":\"claude-sonnet-4-6\"", b"}", b" x"], 1 << 20, Fault::Syntax),
            (&[b"{\"model\":\"claude-sonnet-4-6\",", b"\"a\":\"0123456789\"}"], 40, Fault::TooLarge),
        ];
        for (parts, max, fault) in cases {
            let (body, verdict) = ScannedBody::new(pieces(parts), max, eff(&["claude-sonnet-*"]));
            let (out, failed) = drain(body).await;
            assert!(failed);
            let all = parts.concat();
            assert!(out.len() < all.len() && all.starts_with(&out), "{out:?}");
            match (verdict.get(), fault) {
                (Some(Err(Fault::Model(m))), Fault::Model(_)) => {
                    assert_eq!(m, "model \"claude-opus-4-1\" is not allowed for this key")
                }
                (Some(Err(got)), want) => assert_eq!(got, &want),
                (other, _) => panic!("{other:?}"),
            }
        }
        // a body that ends early has all gone on (it is not JSON upstream either), then fails
        let parts: [&'static [u8]; 2] = [b"{\"model\":\"claude-sonnet-4-6\",", b"\"a\":1"];
        let (body, verdict) = ScannedBody::new(pieces(&parts), 1 << 20, eff(&["claude-sonnet-*"]));
        assert_eq!(drain(body).await, (parts.concat(), true));
        assert_eq!(verdict.get(), Some(&Err(Fault::Syntax)));
    }
}
