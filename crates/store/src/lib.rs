//! Persistence behind one interface, [`Store`].
//!
//! The gateway never runs SQL itself: it calls these methods with ids and
//! timestamps it made. The embedded default is SQLite ([`SqliteStore`], WAL);
//! a PostgreSQL implementation of the same trait is planned for several
//! gateways sharing one inventory.
//!
//! Every parameter is bound; no SQL is built with `format!`.

mod sqlite;
mod types;

pub use sqlite::SqliteStore;
pub use types::*;

use async_trait::async_trait;
pub use keyward_core::audit::{AuditDraft, AuditEntry, Checkpoint};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database error: {0}")]
    Backend(String),
    #[error("the database is newer than this keyward (schema {found}, supported {supported})")]
    SchemaTooNew { found: i64, supported: i64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_service(&self, s: &ServiceRow, audit: &AuditDraft) -> Result<()>;
    async fn list_services(&self) -> Result<Vec<ServiceRow>>;
    async fn set_service_status(&self, id: &str, status: &str, audit: &AuditDraft) -> Result<()>;

    async fn create_upstream(&self, u: &UpstreamRow, sealed: Option<&LocalSecretRow>, audit: &AuditDraft)
        -> Result<()>;
    async fn list_upstreams(&self) -> Result<Vec<UpstreamRow>>;
    /// Write an upstream's new state, with an optional new sealed secret and a
    /// pending retirement of the old key, atomically.
    async fn update_upstream(
        &self,
        u: &UpstreamRow,
        sealed: Option<&LocalSecretRow>,
        retirement: Option<&UpstreamRetirement>,
        audit: &AuditDraft,
    ) -> Result<()>;
    async fn pending_retirements(&self) -> Result<Vec<UpstreamRetirement>>;
    async fn finish_retirement(&self, id: i64, at_ms: i64, outcome: &str, audit: &AuditDraft) -> Result<()>;
    async fn get_local_secret(&self, name: &str) -> Result<LocalSecretRow>;

    async fn create_key(&self, k: &KeyRow, audit: &AuditDraft) -> Result<()>;
    async fn get_key(&self, id: &str) -> Result<KeyRow>;
    async fn list_keys(&self) -> Result<Vec<KeyRow>>;
    /// At most `limit` keys after `after` (a key's `(created_at_ms, id)`), in
    /// [`Store::list_keys`] order: walking a large inventory a page at a time.
    async fn list_keys_after(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<KeyRow>>;
    /// Write a key's full state; with a rotation, also the digest that left
    /// service and the idempotency record, in one transaction.
    async fn save_key(
        &self,
        k: &KeyRow,
        retired: &[[u8; 32]],
        rotation: Option<&RotationRow>,
        audit: &AuditDraft,
    ) -> Result<()>;
    async fn get_rotation(&self, key_id: &str, idempotency_key: &str) -> Result<Option<RotationRow>>;
    async fn purge_rotations(&self, now_ms: i64) -> Result<()>;
    /// Digests of secrets that were rotated out, with their key ids.
    async fn list_retired_digests(&self) -> Result<Vec<([u8; 32], String)>>;
    /// Add (key id, count, last time) presentations of stale secrets.
    async fn add_stale_presented(&self, counts: &[(String, i64, i64)]) -> Result<()>;
    /// Spend per key since a time (for monthly budgets).
    async fn spend_since(&self, since_ms: i64) -> Result<Vec<(String, f64)>>;
    async fn update_key_status(
        &self,
        id: &str,
        status: KeyStatus,
        at_ms: i64,
        reason: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<()>;
    async fn touch_keys(&self, last_used: &[(String, i64)]) -> Result<()>;
    /// Record, once, that a key passed its expiry (with its audit entry);
    /// false when it was noted already or has not expired.
    async fn note_key_expired(&self, id: &str, at_ms: i64, audit: &AuditDraft) -> Result<bool>;

    async fn create_token(&self, t: &TokenRow, audit: &AuditDraft) -> Result<()>;
    async fn list_tokens(&self) -> Result<Vec<TokenRow>>;
    async fn revoke_token(&self, id: &str, at_ms: i64, audit: &AuditDraft) -> Result<()>;
    /// Record when tokens were last used (batched, not audited).
    async fn touch_tokens(&self, last_used: &[(String, i64)]) -> Result<()>;

    /// Append an entry that changes nothing else (security events, system
    /// actions). Changes append theirs in their own transaction.
    async fn append_audit(&self, audit: &AuditDraft) -> Result<AuditEntry>;
    /// Entries with `seq > after_seq`, in order, at most `limit`.
    async fn audit_entries(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>>;
    async fn audit_head(&self) -> Result<Option<AuditEntry>>;
    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<()>;
    /// Checkpoints with `after_seq < seq <= up_to_seq`, in order.
    async fn checkpoints(&self, after_seq: u64, up_to_seq: u64) -> Result<Vec<Checkpoint>>;
    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>>;
    async fn signing_key(&self, purpose: &str) -> Result<Option<SigningKeyRow>>;
    /// Store a new signing key; a second one for the same purpose is a conflict.
    async fn put_signing_key(&self, k: &SigningKeyRow) -> Result<()>;

    /// Shared, not copied: the writer hands the same records to the metrics and the monitor afterwards.
    async fn insert_usage(&self, batch: std::sync::Arc<Vec<keyward_core::usage::UsageRecord>>) -> Result<()>;
    async fn usage_by_key(&self, since_ms: i64) -> Result<Vec<UsageSummary>>;
    /// Usage records with `ts_ms >= since_ms` and a sequence number above
    /// `after_seq`, oldest first, at most `limit`: (seq, record) pages for the
    /// monitor's warm-up.
    async fn usage_page(
        &self,
        since_ms: i64,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, keyward_core::usage::UsageRecord)>>;

    /// Raise an alert: when one with the same dedup key is open, only its
    /// `last_seen_ms` and `occurrences` change and `false` is returned with it;
    /// otherwise `a` is inserted with `deliveries` (their `alert_id` set to
    /// `a.id`) in one transaction, and `true` is returned.
    async fn raise_alert(&self, a: &AlertRow, deliveries: &[DeliveryRow]) -> Result<(AlertRow, bool)>;
    /// Resolve the open alert with this dedup key, queueing `deliveries`
    /// (their `alert_id` set to the alert's) in the same transaction.
    async fn resolve_alert(&self, dedup_key: &str, at_ms: i64, deliveries: &[DeliveryRow]) -> Result<Option<AlertRow>>;
    /// Newest first; `open_only` leaves out resolved ones.
    async fn list_alerts(&self, open_only: bool, limit: usize) -> Result<Vec<AlertRow>>;
    async fn get_alert(&self, id: &str) -> Result<AlertRow>;
    async fn ack_alert(&self, id: &str, by: &str, at_ms: i64) -> Result<AlertRow>;
    /// Pending deliveries due at `now_ms`, oldest first.
    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryRow>>;
    /// Record an attempt: its new status, attempt count, next attempt and error.
    async fn update_delivery(&self, d: &DeliveryRow) -> Result<()>;
    async fn list_deliveries(&self, alert_id: &str) -> Result<Vec<DeliveryRow>>;
}
