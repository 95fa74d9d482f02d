//! What the engine is fed. Times are Unix milliseconds (as `UsageRecord::ts_ms`).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Who a key is: what the detectors need to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Key id (`key_...`), never the secret.
    pub key: String,
    pub service: String,
    /// Name or id of the upstream (Anthropic) key its requests use.
    pub upstream: Option<String>,
    /// `dev`, `stg`, `prod`.
    pub env: String,
    /// IANA time zone for business and quiet hours; `None`: the service's or the default.
    pub tz: Option<String>,
    /// Monthly budget in USD.
    pub budget_usd: Option<f64>,
}

/// One metered request (what the gateway's meter records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// When the request arrived.
    pub ts_ms: i64,
    pub key: String,
    pub service: String,
    pub source_ip: Option<IpAddr>,
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    pub status: u16,
    /// Cost when the caller already computed it; otherwise the engine prices it.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

impl Request {
    /// All tokens, as the upstream's usage report adds them up.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }
}

/// One upstream key's usage in one minute, as the Anthropic Admin API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamUsage {
    /// Start of the minute (the report's `starting_at`).
    pub ts_ms: i64,
    pub upstream: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

impl UpstreamUsage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }
}

/// A revoked, suspended or rotated-out secret was presented (and refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresentedRevoked {
    pub ts_ms: i64,
    pub key: String,
    pub source_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Key(KeyMeta),
    Request(Request),
    UpstreamUsage(UpstreamUsage),
    PresentedRevoked(PresentedRevoked),
}

impl Event {
    /// The event's time, if it has one (key metadata has none).
    pub fn ts_ms(&self) -> Option<i64> {
        match self {
            Event::Key(_) => None,
            Event::Request(r) => Some(r.ts_ms),
            Event::UpstreamUsage(u) => Some(u.ts_ms),
            Event::PresentedRevoked(p) => Some(p.ts_ms),
        }
    }
}
