//! Token usage as the Messages API reports it, and the per-request record the
//! gateway meters.

use serde::{Deserialize, Serialize};

/// Token counts of one response. `cache_creation_5m` / `_1h` split
/// `cache_creation_input_tokens` by TTL when the API reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_1h: Option<u64>,
}

impl TokenUsage {
    /// Merge a `usage` object from the API. Fields absent or null keep their
    /// current value, so this works for `message_start` followed by the
    /// cumulative `message_delta`s.
    pub fn merge(&mut self, u: &WireUsage) {
        if let Some(v) = u.input_tokens {
            self.input_tokens = v;
        }
        if let Some(v) = u.output_tokens {
            self.output_tokens = v;
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.cache_creation_input_tokens = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.cache_read_input_tokens = v;
        }
        if let Some(c) = &u.cache_creation {
            if let Some(v) = c.ephemeral_1h_input_tokens {
                self.cache_creation_1h = Some(v);
            }
        }
    }
}

/// `usage` as it appears on the wire (every field optional, unknown ones ignored).
#[derive(Debug, Default, Deserialize)]
pub struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation: Option<WireCacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WireCacheCreation {
    pub ephemeral_5m_input_tokens: Option<u64>,
    pub ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

/// Usage and model from a complete non-streaming Messages response body.
pub fn from_message_body(body: &[u8]) -> Option<(Option<String>, TokenUsage)> {
    let msg: WireMessage = serde_json::from_slice(body).ok()?;
    let mut usage = TokenUsage::default();
    usage.merge(msg.usage.as_ref()?);
    Some((msg.model, usage))
}

/// One metered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    pub request_id: String,
    pub key_id: String,
    pub service_id: String,
    pub upstream_id: Option<String>,
    pub env: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub status: u16,
    pub usage: TokenUsage,
    /// `None` when the model has no price in the table: unknown, not zero.
    pub cost_usd: Option<f64>,
    pub latency_ms: u32,
    pub streamed: bool,
    /// The client went away before the response was complete.
    pub client_disconnected: bool,
    /// The client's address (the monitor's new-network rule); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<std::net::IpAddr>,
    /// What the prompt-injection shield did: bits of [`shield_flags`].
    #[serde(default)]
    pub shield_flags: u8,
    /// Highest injection score of the request's screened parts (keys with the shield on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shield_score: Option<f32>,
}

/// Bits of [`UsageRecord::shield_flags`].
pub mod shield_flags {
    /// The request scored at or above the key's threshold and was forwarded (policy `flag`).
    pub const REQUEST_FLAGGED: u8 = 1;
    /// The request was refused by the injection policy (policy `block`).
    pub const REQUEST_BLOCKED: u8 = 2;
    /// The response called a tool outside the allowlist or failing a rule, and passed (`flag`).
    pub const TOOL_FLAGGED: u8 = 4;
    /// The response called such a tool and was turned into an error (`block`).
    pub const TOOL_BLOCKED: u8 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_a_message() {
        let body = br#"{"id":"msg_1","model":"claude-sonnet-4-6","usage":{"input_tokens":12,"output_tokens":30,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":2,"ephemeral_1h_input_tokens":3}}}"#;
        let (model, u) = from_message_body(body).unwrap();
        assert_eq!(model.as_deref(), Some("claude-sonnet-4-6"));
        assert_eq!(u.input_tokens, 12);
        assert_eq!(u.output_tokens, 30);
        assert_eq!(u.cache_creation_input_tokens, 5);
        assert_eq!(u.cache_read_input_tokens, 7);
        assert_eq!(u.cache_creation_1h, Some(3));
        assert!(from_message_body(b"not json").is_none());
    }
}
