//! Incremental reader of the Messages streaming format that extracts usage
//! while the bytes pass through untouched.
//!
//! Only `message_start`, `message_delta` and `error` events are decoded; the
//! data of every other event is skipped without being buffered. The reader
//! holds at most one partial line and one event's data, each bounded by
//! [`MAX_EVENT_BYTES`], so a hostile stream cannot grow it without limit.

use crate::usage::{TokenUsage, WireUsage};
use serde::Deserialize;

pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// No `event:` line seen yet for the current event.
    Unnamed,
    Interesting,
    Skip,
}

#[derive(Debug, Default)]
pub struct StreamUsage {
    pub model: Option<String>,
    pub usage: TokenUsage,
    /// `error.type` of a mid-stream `error` event.
    pub error_type: Option<String>,
    pub saw_message_stop: bool,
}

#[derive(Debug)]
pub struct SseUsageReader {
    partial: Vec<u8>,
    partial_overflow: bool,
    event: Event,
    data: Vec<u8>,
    data_overflow: bool,
    pub state: StreamUsage,
}

impl Default for SseUsageReader {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Payload {
    MessageStart {
        message: StartMessage,
    },
    MessageDelta {
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn interesting(name: &[u8]) -> bool {
    matches!(name, b"message_start" | b"message_delta" | b"message_stop" | b"error")
}

fn trim_field(v: &[u8]) -> &[u8] {
    v.strip_prefix(b" ").unwrap_or(v)
}

impl SseUsageReader {
    pub fn new() -> Self {
        SseUsageReader {
            partial: Vec::new(),
            partial_overflow: false,
            event: Event::Unnamed,
            data: Vec::new(),
            data_overflow: false,
            state: StreamUsage::default(),
        }
    }

    /// Feed the next chunk of the stream.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = chunk.split_at(nl);
            chunk = &rest[1..];
            if self.partial.is_empty() && !self.partial_overflow {
                self.line(line);
            } else {
                let mut buf = std::mem::take(&mut self.partial);
                if !self.partial_overflow {
                    buf.extend_from_slice(line);
                    self.line(&buf);
                }
                buf.clear();
                self.partial = buf;
                self.partial_overflow = false;
            }
        }
        if !chunk.is_empty() && !self.partial_overflow {
            if self.partial.len() + chunk.len() > MAX_EVENT_BYTES {
                self.partial.clear();
                self.partial_overflow = true;
            } else {
                self.partial.extend_from_slice(chunk);
            }
        }
    }

    /// The stream ended: dispatch a final event that had no blank line.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            let buf = std::mem::take(&mut self.partial);
            self.line(&buf);
        }
        self.dispatch();
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch();
        } else if let Some(v) = line.strip_prefix(b"event:") {
            self.event = if interesting(trim_field(v)) { Event::Interesting } else { Event::Skip };
        } else if let Some(v) = line.strip_prefix(b"data:") {
            if self.event == Event::Skip || self.data_overflow {
                return;
            }
            let v = trim_field(v);
            if self.data.len() + v.len() + 1 > MAX_EVENT_BYTES {
                self.data.clear();
                self.data_overflow = true;
                return;
            }
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(v);
        }
        // comments (":..."), `id:` and `retry:` are irrelevant to usage
    }

    fn dispatch(&mut self) {
        if !self.data.is_empty() && !self.data_overflow {
            if let Ok(p) = serde_json::from_slice::<Payload>(&self.data) {
                match p {
                    Payload::MessageStart { message } => {
                        if message.model.is_some() {
                            self.state.model = message.model;
                        }
                        if let Some(u) = &message.usage {
                            self.state.usage.merge(u);
                        }
                    }
                    Payload::MessageDelta { usage } => {
                        if let Some(u) = &usage {
                            self.state.usage.merge(u);
                        }
                    }
                    Payload::MessageStop => self.state.saw_message_stop = true,
                    Payload::Error { error } => {
                        self.state.error_type = Some(error.kind.unwrap_or_else(|| "error".into()))
                    }
                    Payload::Other => {}
                }
            }
        }
        self.data.clear();
        self.data_overflow = false;
        self.event = Event::Unnamed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-6\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\r\n\r\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":10}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":15,\"input_tokens\":25}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn check(r: &SseUsageReader) {
        assert_eq!(r.state.model.as_deref(), Some("claude-sonnet-4-6"));
        assert_eq!(r.state.usage.input_tokens, 25);
        assert_eq!(r.state.usage.output_tokens, 15);
        assert_eq!(r.state.usage.cache_creation_input_tokens, 3);
        assert_eq!(r.state.usage.cache_read_input_tokens, 4);
        assert!(r.state.saw_message_stop);
    }

    #[test]
    fn reads_cumulative_usage() {
        let mut r = SseUsageReader::new();
        r.feed(STREAM.as_bytes());
        r.finish();
        check(&r);
    }

    #[test]
    fn mid_stream_error_is_seen() {
        let mut r = SseUsageReader::new();
        r.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(r.state.error_type.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn oversized_events_are_dropped_not_buffered() {
        let mut r = SseUsageReader::new();
        r.feed(b"event: message_delta\ndata: ");
        r.feed(&vec![b'x'; MAX_EVENT_BYTES + 10]);
        assert!(r.partial.len() <= MAX_EVENT_BYTES);
        r.feed(b"\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert!(r.state.saw_message_stop);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_usage(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..20)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let bytes = STREAM.as_bytes();
            let mut r = SseUsageReader::new();
            let mut last = 0;
            for c in cuts {
                r.feed(&bytes[last..c]);
                last = c;
            }
            r.feed(&bytes[last..]);
            r.finish();
            check(&r);
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..10)) {
            let mut r = SseUsageReader::new();
            for c in &chunks { r.feed(c); }
            r.finish();
        }
    }
}
