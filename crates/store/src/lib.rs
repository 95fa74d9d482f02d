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
    /// Checkpoints with `seq > after_seq`, in order.
    async fn checkpoints(&self, after_seq: u64) -> Result<Vec<Checkpoint>>;
    async fn signing_key(&self, purpose: &str) -> Result<Option<SigningKeyRow>>;
    /// Store a new signing key; a second one for the same purpose is a conflict.
    async fn put_signing_key(&self, k: &SigningKeyRow) -> Result<()>;

    async fn insert_usage(&self, batch: &[keyward_core::usage::UsageRecord]) -> Result<()>;
    async fn usage_by_key(&self, since_ms: i64) -> Result<Vec<UsageSummary>>;
}
