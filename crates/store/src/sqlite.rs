//! The embedded store: one SQLite file in WAL mode.
//!
//! One connection behind a mutex, used from tokio's blocking pool: the
//! gateway's request path never waits on it (usage arrives here in batches
//! from the metering task), so a single writer is all it needs.

use crate::{
    AlertRow, AuditDraft, AuditEntry, Checkpoint, DeliveryRow, KeyRow, KeyStatus, LocalSecretRow, Result, RotationRow,
    ServiceRow, SigningKeyRow, Store, StoreError, TokenRow, UpstreamRetirement, UpstreamRow, UsageSummary,
};
use async_trait::async_trait;
use keyward_core::usage::UsageRecord;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE local_secrets (
    name TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE upstreams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    env TEXT NOT NULL,
    secret_ref TEXT NOT NULL,
    fingerprint TEXT,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services(id),
    env TEXT NOT NULL,
    name TEXT,
    digest BLOB NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    status_changed_at_ms INTEGER,
    status_reason TEXT,
    last_used_ms INTEGER
);
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    services TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER
);
CREATE TABLE usage (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    upstream_id TEXT,
    env TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT,
    status INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_creation_1h INTEGER,
    cache_read_input_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_ms INTEGER NOT NULL,
    streamed INTEGER NOT NULL,
    client_disconnected INTEGER NOT NULL
);
CREATE INDEX usage_ts ON usage(ts_ms);
CREATE INDEX usage_key_ts ON usage(key_id, ts_ms);
"#,
    r#"
ALTER TABLE keys ADD COLUMN expires_at_ms INTEGER;
ALTER TABLE keys ADD COLUMN rotated_at_ms INTEGER;
ALTER TABLE keys ADD COLUMN prev_digest BLOB;
ALTER TABLE keys ADD COLUMN prev_valid_until_ms INTEGER;
ALTER TABLE keys ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN rotate_every_s INTEGER;
ALTER TABLE keys ADD COLUMN deliver_to TEXT;
ALTER TABLE keys ADD COLUMN stale_presented INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN stale_presented_last_ms INTEGER;
CREATE TABLE retired_digests (
    digest BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    retired_at_ms INTEGER NOT NULL
);
CREATE TABLE rotations (
    key_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    valid_until_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
ALTER TABLE upstreams ADD COLUMN anthropic_key_id TEXT;
ALTER TABLE upstreams ADD COLUMN rotated_at_ms INTEGER;
CREATE TABLE upstream_retirements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    upstream_id TEXT NOT NULL,
    secret_ref TEXT NOT NULL,
    anthropic_key_id TEXT,
    retire_at_ms INTEGER NOT NULL,
    done_at_ms INTEGER,
    outcome TEXT
);
"#,
    r#"
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT,
    action TEXT NOT NULL,
    targets TEXT NOT NULL,
    summary TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    head_hash TEXT NOT NULL,
    ts TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE signing_keys (
    purpose TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
ALTER TABLE admin_tokens ADD COLUMN name TEXT;
ALTER TABLE admin_tokens ADD COLUMN revoked_at_ms INTEGER;
ALTER TABLE admin_tokens ADD COLUMN last_used_ms INTEGER;
ALTER TABLE keys ADD COLUMN expiry_noted_ms INTEGER;
"#,
    r#"
ALTER TABLE usage ADD COLUMN shield_flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN shield_score REAL;
"#,
    r#"
ALTER TABLE usage ADD COLUMN source_ip TEXT;
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    dedup_key TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    key_id TEXT,
    upstream TEXT,
    summary TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    action TEXT,
    status TEXT NOT NULL,
    raised_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    acked_at_ms INTEGER,
    acked_by TEXT,
    occurrences INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX alerts_open_dedup ON alerts(dedup_key) WHERE status = 'open';
CREATE INDEX alerts_raised ON alerts(raised_at_ms);
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    done_at_ms INTEGER
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(status, next_attempt_ms);
"#,
    // v6: every usage query selects by time; the per-key index served none of
    // them and cost a B-tree insert per metered request
    r#"
DROP INDEX IF EXISTS usage_key_ts;
"#,
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn conflict_or_backend(e: rusqlite::Error, what: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(what.to_string())
        }
        _ => backend(e),
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and apply migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, `demo` uses a temp file instead).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(backend)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(backend)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew { found: version, supported });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute_batch(sql).map_err(backend)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

/// Run a query and map every row: the one place rows are collected.
fn query<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(sql).map_err(backend)?;
    let rows = st.query_map(params, map).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

fn digest_from(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, "digest is not 32 bytes".into())
    })
}

const AUDIT_COLUMNS: &str = "seq, ts, actor, source, action, targets, summary, prev_hash, hash";

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let targets: String = r.get(5)?;
    let summary: String = r.get(6)?;
    Ok(AuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        ts: r.get(1)?,
        actor: r.get(2)?,
        source: r.get(3)?,
        action: r.get(4)?,
        targets: serde_json::from_str(&targets).map_err(json_err)?,
        summary: serde_json::from_str(&summary).map_err(json_err)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint { seq: r.get::<_, i64>(0)? as u64, head_hash: r.get(1)?, ts: r.get(2)?, signature: r.get(3)? })
}

/// Store a sealed secret of the embedded store (an upstream key given by value).
fn insert_sealed(c: &Connection, s: &LocalSecretRow) -> Result<()> {
    c.execute(
        "INSERT INTO local_secrets (name, wrapped_key, ciphertext, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![s.name, s.wrapped_key, s.ciphertext, s.created_at_ms],
    )
    .map_err(|e| conflict_or_backend(e, &format!("local secret {:?}", s.name)))?;
    Ok(())
}

/// Run a change and append its audit entry in one transaction: both commit,
/// or neither does.
fn audited<R>(
    c: &mut Connection,
    audit: &AuditDraft,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R>,
) -> Result<R> {
    let tx = c.transaction().map_err(backend)?;
    let r = f(&tx)?;
    append_audit_tx(&tx, audit)?;
    tx.commit().map_err(backend)?;
    Ok(r)
}

/// Append `d` after the current head, inside the caller's transaction: the
/// entry commits with the change it describes, or neither does.
fn append_audit_tx(c: &Connection, d: &AuditDraft) -> Result<AuditEntry> {
    let head: Option<(i64, String)> = c
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    let e = d.chain(head.as_ref().map(|(seq, h)| (*seq as u64, h.as_str())));
    let targets = serde_json::to_string(&e.targets).map_err(|e| StoreError::Backend(e.to_string()))?;
    let summary = serde_json::to_string(&e.summary).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.execute(
        &format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![e.seq as i64, e.ts, e.actor, e.source, e.action, targets, summary, e.prev_hash, e.hash],
    )
    .map_err(backend)?;
    Ok(e)
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    let status: String = r.get(5)?;
    Ok(KeyRow {
        id: r.get(0)?,
        service_id: r.get(1)?,
        env: r.get(2)?,
        name: r.get(3)?,
        digest: digest_from(r.get(4)?)?,
        // an unknown status is treated as revoked: fail closed
        status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Revoked),
        created_at_ms: r.get(6)?,
        status_changed_at_ms: r.get(7)?,
        status_reason: r.get(8)?,
        last_used_ms: r.get(9)?,
        expires_at_ms: r.get(10)?,
        rotated_at_ms: r.get(11)?,
        prev_digest: r.get::<_, Option<Vec<u8>>>(12)?.map(digest_from).transpose()?,
        prev_valid_until_ms: r.get(13)?,
        policy: r.get(14)?,
        rotate_every_s: r.get(15)?,
        deliver_to: r.get(16)?,
        stale_presented: r.get(17)?,
        stale_presented_last_ms: r.get(18)?,
    })
}

const KEY_COLUMNS: &str = "id, service_id, env, name, digest, status, created_at_ms, status_changed_at_ms, status_reason, last_used_ms, \
     expires_at_ms, rotated_at_ms, prev_digest, prev_valid_until_ms, policy, rotate_every_s, deliver_to, stale_presented, stale_presented_last_ms";

fn write_key(c: &Connection, k: &KeyRow, insert: bool) -> rusqlite::Result<usize> {
    let sql = if insert {
        "INSERT INTO keys (id, service_id, env, name, digest, status, created_at_ms, status_changed_at_ms, status_reason, last_used_ms, \
         expires_at_ms, rotated_at_ms, prev_digest, prev_valid_until_ms, policy, rotate_every_s, deliver_to, stale_presented, stale_presented_last_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    } else {
        "UPDATE keys SET service_id = ?2, env = ?3, name = ?4, digest = ?5, status = ?6, created_at_ms = ?7, status_changed_at_ms = ?8, \
         status_reason = ?9, last_used_ms = MAX(COALESCE(last_used_ms, 0), COALESCE(?10, 0)), \
         expiry_noted_ms = CASE WHEN expires_at_ms IS ?11 THEN expiry_noted_ms ELSE NULL END, expires_at_ms = ?11, rotated_at_ms = ?12, prev_digest = ?13, \
         prev_valid_until_ms = ?14, policy = ?15, rotate_every_s = ?16, deliver_to = ?17, stale_presented = MAX(stale_presented, ?18), \
         stale_presented_last_ms = ?19 WHERE id = ?1"
    };
    c.execute(
        sql,
        params![
            k.id,
            k.service_id,
            k.env,
            k.name,
            k.digest.as_slice(),
            k.status.as_str(),
            k.created_at_ms,
            k.status_changed_at_ms,
            k.status_reason,
            k.last_used_ms,
            k.expires_at_ms,
            k.rotated_at_ms,
            k.prev_digest.as_ref().map(|d| d.as_slice()),
            k.prev_valid_until_ms,
            k.policy,
            k.rotate_every_s,
            k.deliver_to,
            k.stale_presented,
            k.stale_presented_last_ms
        ],
    )
}

/// Usage rows written by one `INSERT` statement in a batch.
const USAGE_ROWS_PER_INSERT: usize = 32;
const USAGE_COLUMNS: usize = 21;

/// `INSERT INTO usage (...) VALUES (?, ...), ...`: one row, or a whole group of
/// [`USAGE_ROWS_PER_INSERT`] (each built once).
fn usage_insert_sql(group: bool) -> &'static str {
    static GROUP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static ONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let build = |n: usize| {
        let row = format!("({})", vec!["?"; USAGE_COLUMNS].join(", "));
        format!(
            "INSERT INTO usage (ts_ms, request_id, key_id, service_id, upstream_id, env, endpoint, model, status, \
             input_tokens, output_tokens, cache_creation_input_tokens, cache_creation_1h, cache_read_input_tokens, \
             cost_usd, latency_ms, streamed, client_disconnected, shield_flags, shield_score, source_ip) VALUES {}",
            vec![row; n].join(", ")
        )
    };
    if group {
        GROUP.get_or_init(|| build(USAGE_ROWS_PER_INSERT))
    } else {
        ONE.get_or_init(|| build(1))
    }
}

/// Bind record `r` as row `row` (0-based) of a usage insert.
fn bind_usage(st: &mut rusqlite::Statement<'_>, row: usize, r: &UsageRecord) -> rusqlite::Result<()> {
    let at = row * USAGE_COLUMNS;
    st.raw_bind_parameter(at + 1, r.ts_ms)?;
    st.raw_bind_parameter(at + 2, &r.request_id)?;
    st.raw_bind_parameter(at + 3, &r.key_id)?;
    st.raw_bind_parameter(at + 4, &r.service_id)?;
    st.raw_bind_parameter(at + 5, &r.upstream_id)?;
    st.raw_bind_parameter(at + 6, &r.env)?;
    st.raw_bind_parameter(at + 7, &r.endpoint)?;
    st.raw_bind_parameter(at + 8, &r.model)?;
    st.raw_bind_parameter(at + 9, r.status)?;
    st.raw_bind_parameter(at + 10, r.usage.input_tokens as i64)?;
    st.raw_bind_parameter(at + 11, r.usage.output_tokens as i64)?;
    st.raw_bind_parameter(at + 12, r.usage.cache_creation_input_tokens as i64)?;
    st.raw_bind_parameter(at + 13, r.usage.cache_creation_1h.map(|v| v as i64))?;
    st.raw_bind_parameter(at + 14, r.usage.cache_read_input_tokens as i64)?;
    st.raw_bind_parameter(at + 15, r.cost_usd)?;
    st.raw_bind_parameter(at + 16, r.latency_ms)?;
    st.raw_bind_parameter(at + 17, r.streamed)?;
    st.raw_bind_parameter(at + 18, r.client_disconnected)?;
    st.raw_bind_parameter(at + 19, r.shield_flags)?;
    st.raw_bind_parameter(at + 20, r.shield_score.map(f64::from))?;
    st.raw_bind_parameter(at + 21, r.source_ip.map(|ip| ip.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_service(&self, s: &ServiceRow, audit: &AuditDraft) -> Result<()> {
        let (s, audit) = (s.clone(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                tx.execute(
                    "INSERT INTO services (id, name, owner, status, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s.id, s.name, s.owner, s.status, s.created_at_ms],
                )
                .map_err(|e| conflict_or_backend(e, &format!("service {:?}", s.name)))?;
                Ok(())
            })
        })
        .await
    }

    async fn list_services(&self) -> Result<Vec<ServiceRow>> {
        self.call(|c| {
            query(c, "SELECT id, name, owner, status, created_at_ms FROM services ORDER BY name", [], |r| {
                Ok(ServiceRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    owner: r.get(2)?,
                    status: r.get(3)?,
                    created_at_ms: r.get(4)?,
                })
            })
        })
        .await
    }

    async fn set_service_status(&self, id: &str, status: &str, audit: &AuditDraft) -> Result<()> {
        let (id, status, audit) = (id.to_string(), status.to_string(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                let n = tx
                    .execute("UPDATE services SET status = ?1 WHERE id = ?2", params![status, id])
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("service {id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_upstream(
        &self,
        u: &UpstreamRow,
        sealed: Option<&LocalSecretRow>,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (u, sealed, audit) = (u.clone(), sealed.cloned(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                if let Some(s) = &sealed {
                    insert_sealed(tx, s)?;
                }
                tx.execute(
                    "INSERT INTO upstreams (id, name, env, secret_ref, fingerprint, status, created_at_ms, anthropic_key_id, rotated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        u.id,
                        u.name,
                        u.env,
                        u.secret_ref,
                        u.fingerprint,
                        u.status,
                        u.created_at_ms,
                        u.anthropic_key_id,
                        u.rotated_at_ms
                    ],
                )
                .map_err(|e| conflict_or_backend(e, &format!("upstream {:?}", u.name)))?;
                Ok(())
            })
        })
        .await
    }

    async fn list_upstreams(&self) -> Result<Vec<UpstreamRow>> {
        self.call(|c| {
            query(c, "SELECT id, name, env, secret_ref, fingerprint, status, created_at_ms, anthropic_key_id, rotated_at_ms FROM upstreams ORDER BY name", [], |r| {
                    Ok(UpstreamRow {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        env: r.get(2)?,
                        secret_ref: r.get(3)?,
                        fingerprint: r.get(4)?,
                        status: r.get(5)?,
                        created_at_ms: r.get(6)?,
                        anthropic_key_id: r.get(7)?,
                        rotated_at_ms: r.get(8)?,
                    })
                })
        })
        .await
    }

    async fn update_upstream(
        &self,
        u: &UpstreamRow,
        sealed: Option<&LocalSecretRow>,
        retirement: Option<&UpstreamRetirement>,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (u, sealed, retirement, audit) = (u.clone(), sealed.cloned(), retirement.cloned(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                if let Some(s) = &sealed {
                    insert_sealed(tx, s)?;
                }
                let n = tx
                    .execute(
                        "UPDATE upstreams SET secret_ref = ?2, fingerprint = ?3, status = ?4, anthropic_key_id = ?5, rotated_at_ms = ?6 WHERE id = ?1",
                        params![u.id, u.secret_ref, u.fingerprint, u.status, u.anthropic_key_id, u.rotated_at_ms],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("upstream {}", u.name)));
                }
                if let Some(r) = &retirement {
                    tx.execute(
                        "INSERT INTO upstream_retirements (upstream_id, secret_ref, anthropic_key_id, retire_at_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![r.upstream_id, r.secret_ref, r.anthropic_key_id, r.retire_at_ms],
                    )
                    .map_err(backend)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn pending_retirements(&self) -> Result<Vec<UpstreamRetirement>> {
        self.call(|c| {
            query(
                c,
                "SELECT id, upstream_id, secret_ref, anthropic_key_id, retire_at_ms, done_at_ms, outcome \
                     FROM upstream_retirements WHERE done_at_ms IS NULL ORDER BY retire_at_ms",
                [],
                |r| {
                    Ok(UpstreamRetirement {
                        id: r.get(0)?,
                        upstream_id: r.get(1)?,
                        secret_ref: r.get(2)?,
                        anthropic_key_id: r.get(3)?,
                        retire_at_ms: r.get(4)?,
                        done_at_ms: r.get(5)?,
                        outcome: r.get(6)?,
                    })
                },
            )
        })
        .await
    }

    async fn finish_retirement(&self, id: i64, at_ms: i64, outcome: &str, audit: &AuditDraft) -> Result<()> {
        let (outcome, audit) = (outcome.to_string(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                tx.execute(
                    "UPDATE upstream_retirements SET done_at_ms = ?2, outcome = ?3 WHERE id = ?1",
                    params![id, at_ms, outcome],
                )
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_local_secret(&self, name: &str) -> Result<LocalSecretRow> {
        let name = name.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT name, wrapped_key, ciphertext, created_at_ms FROM local_secrets WHERE name = ?1",
                params![name],
                |r| {
                    Ok(LocalSecretRow {
                        name: r.get(0)?,
                        wrapped_key: r.get(1)?,
                        ciphertext: r.get(2)?,
                        created_at_ms: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("local secret {name:?}")))
        })
        .await
    }

    async fn create_key(&self, k: &KeyRow, audit: &AuditDraft) -> Result<()> {
        let (k, audit) = (k.clone(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                write_key(tx, &k, true).map_err(|e| conflict_or_backend(e, &format!("key {}", k.id)))?;
                Ok(())
            })
        })
        .await
    }

    async fn save_key(
        &self,
        k: &KeyRow,
        retired: &[[u8; 32]],
        rotation: Option<&RotationRow>,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (k, rotation, retired, audit) = (k.clone(), rotation.cloned(), retired.to_vec(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                if write_key(tx, &k, false).map_err(backend)? == 0 {
                    return Err(StoreError::NotFound(format!("key {}", k.id)));
                }
                for d in &retired {
                    tx.execute(
                        "INSERT OR IGNORE INTO retired_digests (digest, key_id, retired_at_ms) VALUES (?1, ?2, ?3)",
                        params![d.as_slice(), k.id, k.rotated_at_ms.unwrap_or(0)],
                    )
                    .map_err(backend)?;
                }
                if let Some(r) = rotation {
                    tx.execute(
                        "INSERT INTO rotations (key_id, idempotency_key, wrapped_key, ciphertext, valid_until_ms, created_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![r.key_id, r.idempotency_key, r.wrapped_key, r.ciphertext, r.valid_until_ms, r.created_at_ms],
                    )
                    .map_err(|e| conflict_or_backend(e, "rotation with this idempotency key"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn get_rotation(&self, key_id: &str, idempotency_key: &str) -> Result<Option<RotationRow>> {
        let (k, i) = (key_id.to_string(), idempotency_key.to_string());
        self.call(move |c| {
            c.query_row(
                "SELECT key_id, idempotency_key, wrapped_key, ciphertext, valid_until_ms, created_at_ms FROM rotations \
                 WHERE key_id = ?1 AND idempotency_key = ?2",
                params![k, i],
                |r| {
                    Ok(RotationRow {
                        key_id: r.get(0)?,
                        idempotency_key: r.get(1)?,
                        wrapped_key: r.get(2)?,
                        ciphertext: r.get(3)?,
                        valid_until_ms: r.get(4)?,
                        created_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn purge_rotations(&self, now_ms: i64) -> Result<()> {
        self.call(move |c| {
            c.execute("DELETE FROM rotations WHERE valid_until_ms < ?1", params![now_ms]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_retired_digests(&self) -> Result<Vec<([u8; 32], String)>> {
        self.call(|c| {
            query(c, "SELECT digest, key_id FROM retired_digests", [], |r| Ok((digest_from(r.get(0)?)?, r.get(1)?)))
        })
        .await
    }

    async fn add_stale_presented(&self, counts: &[(String, i64, i64)]) -> Result<()> {
        let items = counts.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (id, n, last) in &items {
                tx.execute(
                    "UPDATE keys SET stale_presented = stale_presented + ?1, stale_presented_last_ms = ?2 WHERE id = ?3",
                    params![n, last, id],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn spend_since(&self, since_ms: i64) -> Result<Vec<(String, f64)>> {
        self.call(move |c| {
            query(
                c,
                "SELECT key_id, COALESCE(SUM(cost_usd), 0.0) FROM usage WHERE ts_ms >= ?1 GROUP BY key_id",
                params![since_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }

    async fn get_key(&self, id: &str) -> Result<KeyRow> {
        let id = id.to_string();
        self.call(move |c| {
            query(c, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1"), params![id], key_from_row)?
                .pop()
                .ok_or_else(|| StoreError::NotFound(format!("key {id}")))
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.call(|c| query(c, &format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY created_at_ms, id"), [], key_from_row))
            .await
    }

    async fn list_keys_after(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<KeyRow>> {
        let (ts, id) = after.unwrap_or((i64::MIN, String::new()));
        self.call(move |c| {
            query(
                c,
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE (created_at_ms, id) > (?1, ?2) \
                     ORDER BY created_at_ms, id LIMIT ?3"
                ),
                params![ts, id, limit],
                key_from_row,
            )
        })
        .await
    }

    async fn update_key_status(
        &self,
        id: &str,
        status: KeyStatus,
        at_ms: i64,
        reason: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (id, reason, audit) = (id.to_string(), reason.map(str::to_string), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                let n = tx
                    .execute(
                        "UPDATE keys SET status = ?1, status_changed_at_ms = ?2, status_reason = ?3 WHERE id = ?4",
                        params![status.as_str(), at_ms, reason, id],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("key {id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn note_key_expired(&self, id: &str, at_ms: i64, audit: &AuditDraft) -> Result<bool> {
        let (id, audit) = (id.to_string(), audit.clone());
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE keys SET expiry_noted_ms = ?2 WHERE id = ?1 AND expiry_noted_ms IS NULL \
                     AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2",
                    params![id, at_ms],
                )
                .map_err(backend)?;
            if n == 1 {
                append_audit_tx(&tx, &audit)?;
            }
            tx.commit().map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn touch_keys(&self, last_used: &[(String, i64)]) -> Result<()> {
        let items = last_used.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            {
                let mut st = tx
                    .prepare(
                        "UPDATE keys SET last_used_ms = ?1 WHERE id = ?2 AND (last_used_ms IS NULL OR last_used_ms < ?1)",
                    )
                    .map_err(backend)?;
                for (id, ts) in &items {
                    st.execute(params![ts, id]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn create_token(&self, t: &TokenRow, audit: &AuditDraft) -> Result<()> {
        let (t, audit) = (t.clone(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                tx.execute(
                    "INSERT INTO admin_tokens (id, role, services, digest, status, created_at_ms, expires_at_ms, name) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        t.id,
                        t.role,
                        t.services.join(","),
                        t.digest.as_slice(),
                        t.status,
                        t.created_at_ms,
                        t.expires_at_ms,
                        t.name
                    ],
                )
                .map_err(|e| conflict_or_backend(e, &format!("token {}", t.id)))?;
                Ok(())
            })
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        self.call(|c| {
            query(
                c,
                "SELECT id, role, services, digest, status, created_at_ms, expires_at_ms, name, revoked_at_ms, last_used_ms \
                 FROM admin_tokens ORDER BY created_at_ms, id",
                [],
                |r| {
                    let services: String = r.get(2)?;
                    Ok(TokenRow {
                        id: r.get(0)?,
                        role: r.get(1)?,
                        services: services.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                        digest: digest_from(r.get(3)?)?,
                        status: r.get(4)?,
                        created_at_ms: r.get(5)?,
                        expires_at_ms: r.get(6)?,
                        name: r.get(7)?,
                        revoked_at_ms: r.get(8)?,
                        last_used_ms: r.get(9)?,
                    })
                },
            )
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at_ms: i64, audit: &AuditDraft) -> Result<()> {
        let (id, audit) = (id.to_string(), audit.clone());
        self.call(move |c| {
            audited(c, &audit, |tx| {
                let n = tx
                    .execute(
                        "UPDATE admin_tokens SET status = 'revoked', revoked_at_ms = ?2 WHERE id = ?1 AND status != 'revoked'",
                        params![id, at_ms],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("token {id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn touch_tokens(&self, last_used: &[(String, i64)]) -> Result<()> {
        let items = last_used.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (id, ts) in &items {
                tx.execute(
                    "UPDATE admin_tokens SET last_used_ms = ?1 WHERE id = ?2 AND (last_used_ms IS NULL OR last_used_ms < ?1)",
                    params![ts, id],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn append_audit(&self, audit: &AuditDraft) -> Result<AuditEntry> {
        let audit = audit.clone();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let e = append_audit_tx(&tx, &audit)?;
            tx.commit().map_err(backend)?;
            Ok(e)
        })
        .await
    }

    async fn audit_entries(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.call(move |c| {
            query(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after_seq as i64, limit as i64],
                audit_from_row,
            )
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<AuditEntry>> {
        self.call(|c| {
            Ok(query(
                c,
                &format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"),
                [],
                audit_from_row,
            )?
            .pop())
        })
        .await
    }

    async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        let cp = cp.clone();
        self.call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, head_hash, ts, signature) VALUES (?1, ?2, ?3, ?4)",
                params![cp.seq as i64, cp.head_hash, cp.ts, cp.signature],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, after_seq: u64, up_to_seq: u64) -> Result<Vec<Checkpoint>> {
        self.call(move |c| {
            query(
                c,
                "SELECT seq, head_hash, ts, signature FROM audit_checkpoints WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                params![after_seq.min(i64::MAX as u64) as i64, up_to_seq.min(i64::MAX as u64) as i64],
                checkpoint_from_row,
            )
        })
        .await
    }

    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.call(|c| {
            Ok(query(
                c,
                "SELECT seq, head_hash, ts, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                checkpoint_from_row,
            )?
            .pop())
        })
        .await
    }

    async fn signing_key(&self, purpose: &str) -> Result<Option<SigningKeyRow>> {
        let purpose = purpose.to_string();
        self.call(move |c| {
            Ok(query(
                c,
                "SELECT purpose, public_key, wrapped_key, ciphertext, created_at_ms FROM signing_keys WHERE purpose = ?1",
                params![purpose],
                |r| {
                    Ok(SigningKeyRow {
                        purpose: r.get(0)?,
                        public_key: r.get(1)?,
                        wrapped_key: r.get(2)?,
                        ciphertext: r.get(3)?,
                        created_at_ms: r.get(4)?,
                    })
                },
            )?
            .pop())
        })
        .await
    }

    async fn put_signing_key(&self, k: &SigningKeyRow) -> Result<()> {
        let k = k.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO signing_keys (purpose, public_key, wrapped_key, ciphertext, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.purpose, k.public_key, k.wrapped_key, k.ciphertext, k.created_at_ms],
            )
            .map_err(|e| conflict_or_backend(e, &format!("signing key for {}", k.purpose)))?;
            Ok(())
        })
        .await
    }

    async fn insert_usage(&self, batch: Arc<Vec<UsageRecord>>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            {
                // whole groups in one statement each (the per-statement work is paid once
                // per group), what is left one row at a time
                let mut groups = batch.chunks_exact(USAGE_ROWS_PER_INSERT);
                let mut st = tx.prepare_cached(usage_insert_sql(true)).map_err(backend)?;
                for group in groups.by_ref() {
                    for (i, r) in group.iter().enumerate() {
                        bind_usage(&mut st, i, r).map_err(backend)?;
                    }
                    st.raw_execute().map_err(backend)?;
                }
                let mut st = tx.prepare_cached(usage_insert_sql(false)).map_err(backend)?;
                for r in groups.remainder() {
                    bind_usage(&mut st, 0, r).map_err(backend)?;
                    st.raw_execute().map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn usage_by_key(&self, since_ms: i64) -> Result<Vec<UsageSummary>> {
        self.call(move |c| {
            query(c, "SELECT key_id, service_id, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), \
                     SUM(input_tokens), SUM(output_tokens), SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens), \
                     COALESCE(SUM(cost_usd), 0.0), SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) \
                     FROM usage WHERE ts_ms >= ?1 GROUP BY key_id, service_id ORDER BY key_id", params![since_ms], |r| {
                    Ok(UsageSummary {
                        key_id: r.get(0)?,
                        service_id: r.get(1)?,
                        requests: r.get::<_, i64>(2)? as u64,
                        errors: r.get::<_, i64>(3)? as u64,
                        input_tokens: r.get::<_, i64>(4)? as u64,
                        output_tokens: r.get::<_, i64>(5)? as u64,
                        cache_creation_input_tokens: r.get::<_, i64>(6)? as u64,
                        cache_read_input_tokens: r.get::<_, i64>(7)? as u64,
                        cost_usd: r.get(8)?,
                        unpriced_requests: r.get::<_, i64>(9)? as u64,
                    })
                })
        })
        .await
    }

    async fn usage_page(&self, since_ms: i64, after_seq: i64, limit: usize) -> Result<Vec<(i64, UsageRecord)>> {
        self.call(move |c| {
            query(
                c,
                "SELECT seq, ts_ms, request_id, key_id, service_id, upstream_id, env, endpoint, model, status, \
                 input_tokens, output_tokens, cache_creation_input_tokens, cache_creation_1h, cache_read_input_tokens, \
                 cost_usd, latency_ms, streamed, client_disconnected, source_ip, shield_flags, shield_score \
                 FROM usage WHERE ts_ms >= ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                params![since_ms, after_seq, limit as i64],
                |r| {
                    let ip: Option<String> = r.get(19)?;
                    Ok((
                        r.get(0)?,
                        UsageRecord {
                            ts_ms: r.get(1)?,
                            request_id: r.get(2)?,
                            key_id: r.get(3)?,
                            service_id: r.get(4)?,
                            upstream_id: r.get(5)?,
                            env: r.get(6)?,
                            endpoint: r.get(7)?,
                            model: r.get(8)?,
                            status: r.get(9)?,
                            usage: keyward_core::usage::TokenUsage {
                                input_tokens: r.get::<_, i64>(10)?.max(0) as u64,
                                output_tokens: r.get::<_, i64>(11)?.max(0) as u64,
                                cache_creation_input_tokens: r.get::<_, i64>(12)?.max(0) as u64,
                                cache_creation_1h: r.get::<_, Option<i64>>(13)?.map(|v| v.max(0) as u64),
                                cache_read_input_tokens: r.get::<_, i64>(14)?.max(0) as u64,
                            },
                            cost_usd: r.get(15)?,
                            latency_ms: r.get(16)?,
                            streamed: r.get(17)?,
                            client_disconnected: r.get(18)?,
                            source_ip: ip.and_then(|s| s.parse().ok()),
                            shield_flags: r.get(20)?,
                            shield_score: r.get::<_, Option<f64>>(21)?.map(|v| v as f32),
                        },
                    ))
                },
            )
        })
        .await
    }

    async fn raise_alert(&self, a: &AlertRow, deliveries: &[DeliveryRow]) -> Result<(AlertRow, bool)> {
        let a = a.clone();
        let deliveries = deliveries.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let open = tx
                .query_row(
                    &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE dedup_key = ?1 AND status = 'open'"),
                    params![a.dedup_key],
                    alert_from_row,
                )
                .optional()
                .map_err(backend)?;
            if let Some(mut existing) = open {
                existing.last_seen_ms = existing.last_seen_ms.max(a.last_seen_ms);
                existing.occurrences += 1;
                tx.execute(
                    "UPDATE alerts SET last_seen_ms = ?2, occurrences = ?3 WHERE id = ?1",
                    params![existing.id, existing.last_seen_ms, existing.occurrences],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                return Ok((existing, false));
            }
            tx.execute(
                "INSERT INTO alerts (id, dedup_key, rule, severity, key_id, upstream, summary, value, threshold, action, \
                 status, raised_at_ms, last_seen_ms, resolved_at_ms, acked_at_ms, acked_by, occurrences) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    a.id,
                    a.dedup_key,
                    a.rule,
                    a.severity,
                    a.key_id,
                    a.upstream,
                    a.summary,
                    a.value,
                    a.threshold,
                    a.action,
                    a.status,
                    a.raised_at_ms,
                    a.last_seen_ms,
                    a.resolved_at_ms,
                    a.acked_at_ms,
                    a.acked_by,
                    a.occurrences
                ],
            )
            .map_err(|e| conflict_or_backend(e, "alert"))?;
            insert_deliveries(&tx, &a.id, &deliveries)?;
            tx.commit().map_err(backend)?;
            Ok((a, true))
        })
        .await
    }

    async fn resolve_alert(&self, dedup_key: &str, at_ms: i64, deliveries: &[DeliveryRow]) -> Result<Option<AlertRow>> {
        let dedup_key = dedup_key.to_string();
        let deliveries = deliveries.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let open = tx
                .query_row(
                    &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE dedup_key = ?1 AND status = 'open'"),
                    params![dedup_key],
                    alert_from_row,
                )
                .optional()
                .map_err(backend)?;
            let Some(mut a) = open else {
                return Ok(None);
            };
            a.status = "resolved".into();
            a.resolved_at_ms = Some(at_ms);
            tx.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at_ms = ?2 WHERE id = ?1",
                params![a.id, at_ms],
            )
            .map_err(backend)?;
            insert_deliveries(&tx, &a.id, &deliveries)?;
            tx.commit().map_err(backend)?;
            Ok(Some(a))
        })
        .await
    }

    async fn list_alerts(&self, open_only: bool, limit: usize) -> Result<Vec<AlertRow>> {
        self.call(move |c| {
            let sql = if open_only {
                format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'open' ORDER BY raised_at_ms DESC, id LIMIT ?1"
                )
            } else {
                format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY raised_at_ms DESC, id LIMIT ?1")
            };
            query(c, &sql, params![limit as i64], alert_from_row)
        })
        .await
    }

    async fn get_alert(&self, id: &str) -> Result<AlertRow> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id], alert_from_row)
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound(format!("alert {id:?}")))
        })
        .await
    }

    async fn ack_alert(&self, id: &str, by: &str, at_ms: i64) -> Result<AlertRow> {
        let (id, by) = (id.to_string(), by.to_string());
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE alerts SET acked_at_ms = COALESCE(acked_at_ms, ?2), acked_by = COALESCE(acked_by, ?3) WHERE id = ?1",
                    params![id, at_ms, by],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("alert {id:?}")));
            }
            c.query_row(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id], alert_from_row)
                .map_err(backend)
        })
        .await
    }

    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryRow>> {
        self.call(move |c| {
            query(
                c,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE status = 'pending' AND next_attempt_ms <= ?1 \
                     ORDER BY next_attempt_ms, id LIMIT ?2"
                ),
                params![now_ms, limit as i64],
                delivery_from_row,
            )
        })
        .await
    }

    async fn update_delivery(&self, d: &DeliveryRow) -> Result<()> {
        let d = d.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE alert_deliveries SET attempts = ?2, next_attempt_ms = ?3, status = ?4, last_error = ?5, \
                 done_at_ms = ?6 WHERE id = ?1",
                params![d.id, d.attempts, d.next_attempt_ms, d.status, d.last_error, d.done_at_ms],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_deliveries(&self, alert_id: &str) -> Result<Vec<DeliveryRow>> {
        let alert_id = alert_id.to_string();
        self.call(move |c| {
            query(
                c,
                &format!("SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = ?1 ORDER BY id"),
                params![alert_id],
                delivery_from_row,
            )
        })
        .await
    }
}

const ALERT_COLUMNS: &str =
    "id, dedup_key, rule, severity, key_id, upstream, summary, value, threshold, action, status, \
     raised_at_ms, last_seen_ms, resolved_at_ms, acked_at_ms, acked_by, occurrences";

fn alert_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        dedup_key: r.get(1)?,
        rule: r.get(2)?,
        severity: r.get(3)?,
        key_id: r.get(4)?,
        upstream: r.get(5)?,
        summary: r.get(6)?,
        value: r.get(7)?,
        threshold: r.get(8)?,
        action: r.get(9)?,
        status: r.get(10)?,
        raised_at_ms: r.get(11)?,
        last_seen_ms: r.get(12)?,
        resolved_at_ms: r.get(13)?,
        acked_at_ms: r.get(14)?,
        acked_by: r.get(15)?,
        occurrences: r.get(16)?,
    })
}

const DELIVERY_COLUMNS: &str =
    "id, alert_id, sink, event, payload, attempts, next_attempt_ms, status, last_error, created_at_ms, done_at_ms";

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        alert_id: r.get(1)?,
        sink: r.get(2)?,
        event: r.get(3)?,
        payload: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        status: r.get(7)?,
        last_error: r.get(8)?,
        created_at_ms: r.get(9)?,
        done_at_ms: r.get(10)?,
    })
}

fn insert_deliveries(tx: &rusqlite::Transaction<'_>, alert_id: &str, ds: &[DeliveryRow]) -> Result<()> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO alert_deliveries (alert_id, sink, event, payload, attempts, next_attempt_ms, status, \
             last_error, created_at_ms, done_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(backend)?;
    for d in ds {
        st.execute(params![
            alert_id,
            d.sink,
            d.event,
            d.payload,
            d.attempts,
            d.next_attempt_ms,
            d.status,
            d.last_error,
            d.created_at_ms,
            d.done_at_ms
        ])
        .map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::usage::TokenUsage;

    fn draft(action: &str) -> AuditDraft {
        AuditDraft {
            ts: "2026-11-27T00:00:00Z".into(),
            actor: "system:test".into(),
            source: None,
            action: action.into(),
            targets: vec![],
            summary: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn changes_and_their_audit_entries_commit_together() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.create_service(&service(), &draft("service.create")).await.unwrap();
        // a refused change leaves no entry
        assert!(s.create_service(&service(), &draft("service.create")).await.is_err());
        assert!(s.update_key_status("key_none", KeyStatus::Revoked, 5, None, &draft("key.revoke")).await.is_err());
        s.append_audit(&draft("server.start")).await.unwrap();
        let all = s.audit_entries(0, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["service.create", "server.start"]);
        assert_eq!(all[0].seq, 1);
        assert_eq!(all[1].prev_hash, all[0].hash);
        assert_eq!(all[1].hash, all[1].compute_hash());
        assert_eq!(s.audit_head().await.unwrap().unwrap(), all[1]);
        assert_eq!(s.audit_entries(1, 100).await.unwrap(), all[1..]);
    }

    fn service() -> ServiceRow {
        ServiceRow {
            id: "svc_1".into(),
            name: "billing".into(),
            owner: "team-pay".into(),
            status: "active".into(),
            created_at_ms: 1,
        }
    }

    fn key(id: &str, digest: u8) -> KeyRow {
        KeyRow {
            id: id.into(),
            service_id: "svc_1".into(),
            env: "prod".into(),
            name: None,
            digest: [digest; 32],
            status: KeyStatus::Active,
            created_at_ms: 2,
            status_changed_at_ms: None,
            status_reason: None,
            last_used_ms: None,
            expires_at_ms: None,
            rotated_at_ms: None,
            prev_digest: None,
            prev_valid_until_ms: None,
            policy: "{}".into(),
            rotate_every_s: None,
            deliver_to: None,
            stale_presented: 0,
            stale_presented_last_ms: None,
        }
    }

    fn record(key_id: &str, ts: i64, cost: Option<f64>, status: u16) -> UsageRecord {
        UsageRecord {
            ts_ms: ts,
            request_id: "r".into(),
            key_id: key_id.into(),
            service_id: "svc_1".into(),
            upstream_id: None,
            env: "prod".into(),
            endpoint: "/v1/messages".into(),
            model: Some("m".into()),
            status,
            usage: TokenUsage { input_tokens: 10, output_tokens: 5, ..Default::default() },
            cost_usd: cost,
            latency_ms: 3,
            streamed: false,
            client_disconnected: false,
            shield_flags: 0,
            shield_score: None,
            source_ip: Some(std::net::IpAddr::from([10, 0, 0, 7])),
        }
    }

    /// Batches are written 32 rows per statement and the rest one by one: every
    /// size round-trips every field, in order.
    #[tokio::test]
    async fn usage_batches_of_any_size_round_trip() {
        let s = SqliteStore::open_in_memory().unwrap();
        let mut all = Vec::new();
        for size in [1usize, 31, 32, 33, 64, 65, 100] {
            let batch: Vec<UsageRecord> = (0..size)
                .map(|i| {
                    let n = all.len() + i;
                    let mut r =
                        record(&format!("key_{n}"), 1_000 + n as i64, (n % 3 != 0).then_some(n as f64 / 7.0), 200);
                    r.request_id = format!("req_{n}");
                    r.upstream_id = (n % 2 == 0).then(|| format!("ups_{n}"));
                    r.model = (n % 5 != 0).then(|| format!("model-{n}"));
                    r.usage = TokenUsage {
                        input_tokens: n as u64,
                        output_tokens: 2 * n as u64,
                        cache_creation_input_tokens: 3,
                        cache_read_input_tokens: 4,
                        cache_creation_1h: (n % 4 == 0).then_some(1),
                    };
                    r.latency_ms = n as u32;
                    r.streamed = n % 2 == 1;
                    r.client_disconnected = n % 7 == 0;
                    r.shield_flags = (n % 4) as u8;
                    r.shield_score = (n % 3 == 1).then_some(0.5);
                    r.source_ip = (n % 6 != 0).then(|| std::net::IpAddr::from([10, 0, (n / 256) as u8, n as u8]));
                    r
                })
                .collect();
            s.insert_usage(Arc::new(batch.clone())).await.unwrap();
            all.extend(batch);
        }
        let page = s.usage_page(0, 0, 10_000).await.unwrap();
        let stored: Vec<UsageRecord> = page.into_iter().map(|(_, r)| r).collect();
        assert_eq!(stored.len(), all.len());
        assert_eq!(stored, all);
    }

    #[tokio::test]
    async fn keys_page_by_creation_time_then_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        s.create_service(&service(), &draft("service.create")).await.unwrap();
        // equal creation times are ordered by id; ids do not follow creation order
        for (i, (id, ts)) in [("key_c", 5), ("key_a", 5), ("key_z", 1), ("key_b", 9), ("key_d", 5)].iter().enumerate() {
            let mut k = key(id, i as u8 + 1);
            k.created_at_ms = *ts;
            s.create_key(&k, &draft("key.create")).await.unwrap();
        }
        let all: Vec<String> = s.list_keys().await.unwrap().into_iter().map(|k| k.id).collect();
        assert_eq!(all, ["key_z", "key_a", "key_c", "key_d", "key_b"]);
        for limit in 1..=6 {
            let (mut walked, mut after) = (Vec::new(), None);
            loop {
                let page = s.list_keys_after(after, limit).await.unwrap();
                assert!(page.len() <= limit as usize);
                let Some(last) = page.last() else { break };
                after = Some((last.created_at_ms, last.id.clone()));
                walked.extend(page.into_iter().map(|k| k.id));
            }
            assert_eq!(walked, all, "page size {limit}");
        }
    }

    #[tokio::test]
    async fn inventory_roundtrip_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        s.create_service(&service(), &draft("service.create")).await.unwrap();
        assert!(matches!(s.create_service(&service(), &draft("service.create")).await, Err(StoreError::Conflict(_))));
        s.create_key(&key("key_a", 1), &draft("key.create")).await.unwrap();
        assert!(matches!(s.create_key(&key("key_b", 1), &draft("key.create")).await, Err(StoreError::Conflict(_))));
        s.update_key_status("key_a", KeyStatus::Revoked, 5, Some("left"), &draft("key.revoke")).await.unwrap();
        let keys = s.list_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].status, KeyStatus::Revoked);
        assert_eq!(keys[0].status_reason.as_deref(), Some("left"));
        assert_eq!(s.get_key("key_a").await.unwrap(), keys[0]);
        assert!(matches!(s.get_key("key_zz").await, Err(StoreError::NotFound(_))));
        assert!(matches!(
            s.update_key_status("key_zz", KeyStatus::Revoked, 5, None, &draft("key.revoke")).await,
            Err(StoreError::NotFound(_))
        ));
        s.touch_keys(&[("key_a".into(), 9), ("key_a".into(), 7)]).await.unwrap();
        assert_eq!(s.list_keys().await.unwrap()[0].last_used_ms, Some(9));
        drop(s);
        // reopening applies no migration twice
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        assert_eq!(s.list_services().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn upstream_with_sealed_secret_is_atomic() {
        let s = SqliteStore::open_in_memory().unwrap();
        let up = UpstreamRow {
            id: "ups_1".into(),
            name: "prod-main".into(),
            env: "prod".into(),
            secret_ref: "local:prod-main".into(),
            fingerprint: Some("sha256:00".into()),
            status: "active".into(),
            created_at_ms: 1,
            anthropic_key_id: None,
            rotated_at_ms: None,
        };
        let sealed =
            LocalSecretRow { name: "prod-main".into(), wrapped_key: vec![1], ciphertext: vec![2], created_at_ms: 1 };
        s.create_upstream(&up, Some(&sealed), &draft("upstream.create")).await.unwrap();
        // the same upstream name again fails and leaves no second secret behind
        let mut again = up.clone();
        again.id = "ups_2".into();
        let sealed2 = LocalSecretRow { name: "other".into(), ..sealed.clone() };
        assert!(s.create_upstream(&again, Some(&sealed2), &draft("upstream.create")).await.is_err());
        assert!(matches!(s.get_local_secret("other").await, Err(StoreError::NotFound(_))));
        assert_eq!(s.get_local_secret("prod-main").await.unwrap().ciphertext, vec![2]);
    }

    #[tokio::test]
    async fn usage_aggregates_keep_unknown_cost_apart() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.insert_usage(Arc::new(vec![
            record("key_a", 100, Some(0.5), 200),
            record("key_a", 200, None, 200),
            record("key_a", 300, Some(0.25), 429),
            record("key_b", 50, Some(1.0), 200),
        ]))
        .await
        .unwrap();
        let spend = s.spend_since(100).await.unwrap();
        assert_eq!(spend.len(), 1);
        assert!((spend[0].1 - 0.75).abs() < 1e-9);
        let sum = s.usage_by_key(100).await.unwrap();
        assert_eq!(sum.len(), 1);
        let a = &sum[0];
        assert_eq!((a.requests, a.errors, a.unpriced_requests), (3, 1, 1));
        assert_eq!(a.input_tokens, 30);
        assert!((a.cost_usd - 0.75).abs() < 1e-9);
    }
}

#[cfg(test)]
mod alert_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn alert(id: &str, dedup: &str, at: i64) -> AlertRow {
        AlertRow {
            id: id.into(),
            dedup_key: dedup.into(),
            rule: "rpm".into(),
            severity: "warning".into(),
            key_id: Some("key_a".into()),
            upstream: None,
            summary: "s".into(),
            value: 3.0,
            threshold: 2.0,
            action: None,
            status: "open".into(),
            raised_at_ms: at,
            last_seen_ms: at,
            resolved_at_ms: None,
            acked_at_ms: None,
            acked_by: None,
            occurrences: 1,
        }
    }

    fn delivery(sink: &str, event: &str, at: i64) -> DeliveryRow {
        DeliveryRow {
            id: 0,
            alert_id: String::new(),
            sink: sink.into(),
            event: event.into(),
            payload: "{}".into(),
            attempts: 0,
            next_attempt_ms: at,
            status: "pending".into(),
            last_error: None,
            created_at_ms: at,
            done_at_ms: None,
        }
    }

    #[tokio::test]
    async fn alerts_deduplicate_resolve_and_queue_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let s = SqliteStore::open(&path).unwrap();
        let (a, new) = s.raise_alert(&alert("alr_1", "d1", 10), &[delivery("hook", "trigger", 10)]).await.unwrap();
        assert!(new);
        assert_eq!(a.id, "alr_1");
        // the same condition again while open: no second alert, no second delivery
        let (b, new) = s.raise_alert(&alert("alr_2", "d1", 20), &[delivery("hook", "trigger", 20)]).await.unwrap();
        assert!(!new);
        assert_eq!((b.id.as_str(), b.occurrences, b.last_seen_ms), ("alr_1", 2, 20));
        assert_eq!(s.list_alerts(true, 10).await.unwrap().len(), 1);
        assert_eq!(s.list_deliveries("alr_1").await.unwrap().len(), 1);

        let acked = s.ack_alert("alr_1", "tok_x", 25).await.unwrap();
        assert_eq!((acked.acked_at_ms, acked.acked_by.as_deref()), (Some(25), Some("tok_x")));
        assert!(matches!(s.ack_alert("alr_zz", "tok_x", 25).await, Err(StoreError::NotFound(_))));

        let r = s.resolve_alert("d1", 30, &[delivery("hook", "resolve", 30)]).await.unwrap().unwrap();
        assert_eq!((r.status.as_str(), r.resolved_at_ms), ("resolved", Some(30)));
        assert!(s.resolve_alert("d1", 31, &[]).await.unwrap().is_none());
        assert!(s.list_alerts(true, 10).await.unwrap().is_empty());
        // after resolution the same dedup key opens a new alert
        let (c, new) = s.raise_alert(&alert("alr_3", "d1", 40), &[]).await.unwrap();
        assert!(new && c.id == "alr_3");
        assert_eq!(s.list_alerts(false, 10).await.unwrap().len(), 2);

        // deliveries survive reopening the database; due ones come oldest first
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        let due = s.due_deliveries(35, 10).await.unwrap();
        assert_eq!(due.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(), ["trigger", "resolve"]);
        assert!(due.iter().all(|d| d.alert_id == "alr_1"));
        let mut d = due[0].clone();
        d.attempts = 1;
        d.next_attempt_ms = 100;
        d.last_error = Some("HTTP 500".into());
        s.update_delivery(&d).await.unwrap();
        assert_eq!(s.due_deliveries(35, 10).await.unwrap().len(), 1, "retry waits for its back-off");
        d.status = "delivered".into();
        d.done_at_ms = Some(101);
        s.update_delivery(&d).await.unwrap();
        assert_eq!(s.due_deliveries(1_000, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn usage_pages_carry_the_source_address() {
        let s = SqliteStore::open_in_memory().unwrap();
        let rec = |ts: i64| UsageRecord {
            ts_ms: ts,
            request_id: "r".into(),
            key_id: "key_a".into(),
            service_id: "svc_1".into(),
            upstream_id: Some("ups_1".into()),
            env: "prod".into(),
            endpoint: "/v1/messages".into(),
            model: Some("m".into()),
            status: 200,
            usage: keyward_core::usage::TokenUsage { input_tokens: 3, output_tokens: 4, ..Default::default() },
            cost_usd: None,
            latency_ms: 1,
            streamed: false,
            client_disconnected: false,
            source_ip: Some("2001:db8::1".parse().unwrap()),
            shield_flags: 0,
            shield_score: None,
        };
        s.insert_usage(Arc::new(vec![rec(1), rec(2), rec(3)])).await.unwrap();
        let p1 = s.usage_page(2, 0, 1).await.unwrap();
        assert_eq!(p1.len(), 1);
        assert_eq!(p1[0].1, rec(2));
        let p2 = s.usage_page(2, p1[0].0, 10).await.unwrap();
        assert_eq!(p2.iter().map(|(_, r)| r.ts_ms).collect::<Vec<_>>(), [3]);
    }
}
