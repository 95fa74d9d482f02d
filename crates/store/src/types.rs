//! Rows as the store keeps them. No row carries a secret in clear: keys and
//! tokens are keyed digests, local secrets are sealed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// `active` or `retired`.
    pub status: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRow {
    pub id: String,
    pub name: String,
    pub env: String,
    /// Where the value lives: `local:NAME`, `env:VAR`, ...
    pub secret_ref: String,
    /// Public fingerprint of the value when it was added (`sha256:...`).
    pub fingerprint: Option<String>,
    pub status: String,
    pub created_at_ms: i64,
    /// The key's id at Anthropic (`apikey_...`), for deactivation via the Admin API.
    pub anthropic_key_id: Option<String>,
    pub rotated_at_ms: Option<i64>,
}

/// A secret sealed under the master key's envelope (see `keyward_core::crypto`).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalSecretRow {
    pub name: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for LocalSecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecretRow").field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Suspended,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Suspended => "suspended",
            KeyStatus::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "suspended" => Some(KeyStatus::Suspended),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub service_id: String,
    pub env: String,
    pub name: Option<String>,
    /// HMAC-SHA256 of the secret under the digest key.
    pub digest: [u8; 32],
    pub status: KeyStatus,
    pub created_at_ms: i64,
    pub status_changed_at_ms: Option<i64>,
    pub status_reason: Option<String>,
    pub last_used_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    /// When the current secret was issued by a rotation (None: never rotated).
    pub rotated_at_ms: Option<i64>,
    /// The rotated-out secret still valid during its grace window.
    pub prev_digest: Option<[u8; 32]>,
    pub prev_valid_until_ms: Option<i64>,
    /// `keyward_core::policy::KeyPolicy` as JSON.
    pub policy: String,
    pub rotate_every_s: Option<i64>,
    /// Where a rotated secret is delivered (`file:PATH`, ...).
    pub deliver_to: Option<String>,
    /// Requests that presented a rotated-out or revoked secret of this key.
    pub stale_presented: i64,
    pub stale_presented_last_ms: Option<i64>,
}

/// A rotation's new secret, sealed, kept for the grace window so that the
/// same rotation repeated with the same idempotency key returns it again.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationRow {
    pub key_id: String,
    pub idempotency_key: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub valid_until_ms: i64,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for RotationRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationRow").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// An upstream key taken out of service by a rotation, deactivated at the
/// Anthropic Admin API once `retire_at_ms` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRetirement {
    pub id: i64,
    pub upstream_id: String,
    pub secret_ref: String,
    pub anthropic_key_id: Option<String>,
    pub retire_at_ms: i64,
    pub done_at_ms: Option<i64>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    /// `owner`, `operator`, `auditor` or `service-owner`.
    pub role: String,
    /// Service names a `service-owner` token is scoped to.
    pub services: Vec<String>,
    pub digest: [u8; 32],
    pub status: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// A label chosen at creation (who or what the token is for).
    pub name: Option<String>,
    pub revoked_at_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    pub key_id: String,
    pub service_id: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    /// Sum over requests with a known price.
    pub cost_usd: f64,
    /// Requests whose model had no price: their cost is not in `cost_usd`.
    pub unpriced_requests: u64,
}

/// A signing key, sealed under the master key (envelope encryption).
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRow {
    pub purpose: String,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at_ms: i64,
}

/// An alert the monitor raised. Carries ids, numbers and a summary, never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// `alr_...`
    pub id: String,
    /// One open alert per dedup key (subject, rule, level): `keyward:rpm:key:key_abc`.
    pub dedup_key: String,
    pub rule: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    pub key_id: Option<String>,
    /// Upstream name, for out-of-band alerts.
    pub upstream: Option<String>,
    pub summary: String,
    pub value: f64,
    pub threshold: f64,
    /// `suspend` when the rule's action was taken.
    pub action: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    pub raised_at_ms: i64,
    pub last_seen_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub acked_at_ms: Option<i64>,
    /// Admin token id that acknowledged it.
    pub acked_by: Option<String>,
    /// How many times the detector raised it while it was open.
    pub occurrences: i64,
}

/// One queued notification of one alert event to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub alert_id: String,
    /// The sink's name in `[[alerts.sinks]]`.
    pub sink: String,
    /// `trigger` or `resolve`.
    pub event: String,
    /// The alert as it was when the event happened (JSON); each sink formats it.
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    /// `pending`, `delivered` or `failed` (gave up).
    pub status: String,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub done_at_ms: Option<i64>,
}
