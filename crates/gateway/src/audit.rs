//! The audit log as the gateway writes it: who did what, to which ids, from
//! where. Every change's entry is appended by the store in the transaction
//! that makes the change; security events are appended on their own. A
//! background task signs the chain head every `audit.checkpoint_every`
//! entries (and at shutdown) and copies entries to the optional JSON-lines
//! file and syslog sinks.

use crate::index::TokenEntry;
use crate::state::{now_ms, App, OpError};
use keyward_core::audit::{AuditDraft, AuditEntry, Checkpoint, Line, Signer};
use keyward_core::crypto::{Envelope, Sealed};
use keyward_store::{SigningKeyRow, Store};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Purpose under which the audit signing key is stored.
const SIGNING_PURPOSE: &str = "audit";
const SIGNING_CONTEXT: &str = "signing-key:audit";
/// Entries read from the store per round of the sink task.
const PAGE: usize = 500;

/// Who did something, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `tok_...:role`, or `system:<component>`.
    pub name: String,
    /// Source address of the request, when there was one.
    pub source: Option<String>,
}

impl Actor {
    pub fn system(component: &str) -> Actor {
        Actor { name: format!("system:{component}"), source: None }
    }
    pub fn token(t: &TokenEntry, source: Option<String>) -> Actor {
        Actor { name: format!("{}:{}", t.id, t.role), source }
    }
}

/// The signing key and the wake-up of the sink task.
pub struct AuditLog {
    signer: Signer,
    public_hex: String,
    notify: tokio::sync::Notify,
    checkpoint_every: u64,
}

impl AuditLog {
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }
}

/// Load the installation's audit signing key, creating (and sealing) it on
/// first use.
pub(crate) async fn load_signer(
    store: &Arc<dyn Store>,
    envelope: &Envelope,
    checkpoint_every: u64,
) -> Result<AuditLog, OpError> {
    let row = match store.signing_key(SIGNING_PURPOSE).await? {
        Some(r) => r,
        None => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(seed.as_mut());
            let signer = Signer::from_seed(&seed).ok_or_else(|| OpError::Store("cannot make a signing key".into()))?;
            let sealed = envelope.seal(&SecretString::from(hex::encode(seed.as_ref())), SIGNING_CONTEXT);
            let row = SigningKeyRow {
                purpose: SIGNING_PURPOSE.into(),
                public_key: signer.public_hex(),
                wrapped_key: sealed.wrapped_key,
                ciphertext: sealed.ciphertext,
                created_at_ms: now_ms(),
            };
            match store.put_signing_key(&row).await {
                Ok(()) => row,
                // another process made one first: use theirs
                Err(keyward_store::StoreError::Conflict(_)) => store
                    .signing_key(SIGNING_PURPOSE)
                    .await?
                    .ok_or_else(|| OpError::Store("signing key vanished".into()))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let seed_hex = envelope
        .open(&Sealed { wrapped_key: row.wrapped_key.clone(), ciphertext: row.ciphertext.clone() }, SIGNING_CONTEXT)
        .map_err(|_| OpError::Store("the audit signing key cannot be opened with this master key".into()))?;
    let seed: Zeroizing<Vec<u8>> = Zeroizing::new(
        hex::decode(seed_hex.expose_secret()).map_err(|_| OpError::Store("malformed audit signing key".into()))?,
    );
    let seed: &[u8; 32] =
        seed.as_slice().try_into().map_err(|_| OpError::Store("malformed audit signing key".into()))?;
    let signer = Signer::from_seed(seed).ok_or_else(|| OpError::Store("malformed audit signing key".into()))?;
    if signer.public_hex() != row.public_key {
        return Err(OpError::Store("the audit signing key does not match its stored public key".into()));
    }
    Ok(AuditLog { public_hex: row.public_key, signer, notify: tokio::sync::Notify::new(), checkpoint_every })
}

impl App {
    /// The entry a change will append, for the store call that makes it.
    pub(crate) fn draft(&self, actor: &Actor, action: &str, targets: Vec<String>, summary: Value) -> AuditDraft {
        AuditDraft {
            ts: rfc3339_millis(now_ms()),
            actor: actor.name.clone(),
            source: actor.source.clone(),
            action: action.to_string(),
            targets,
            summary,
        }
    }

    /// A change committed: wake the sink task.
    pub(crate) fn audited(&self) {
        self.audit.notify.notify_one();
    }

    /// Append an entry for an event that changes nothing else (a security
    /// event, server start and stop). Fails when the store cannot take it.
    pub async fn audit_event(
        &self,
        actor: &Actor,
        action: &str,
        targets: Vec<String>,
        summary: Value,
    ) -> Result<AuditEntry, OpError> {
        let e = self.store.append_audit(&self.draft(actor, action, targets, summary)).await?;
        self.audited();
        Ok(e)
    }

    /// Like [`App::audit_event`], for callers that cannot fail: a lost entry is logged.
    pub async fn audit_event_logged(&self, actor: &Actor, action: &str, targets: Vec<String>, summary: Value) {
        if let Err(e) = self.audit_event(actor, action, targets, summary).await {
            tracing::error!(action, error = %e, "writing an audit entry failed");
        }
    }

    /// Sign the chain head unless it is signed already.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, OpError> {
        let Some(head) = self.store.audit_head().await? else { return Ok(None) };
        let last = self.store.last_checkpoint().await?;
        if let Some(c) = last.as_ref().filter(|c| c.seq == head.seq) {
            return Ok(Some(c.clone()));
        }
        // never sign over a chain that does not link up since the last signature
        let from = last.as_ref().map_or(0, |c| c.seq.saturating_sub(1));
        let segment = self.store.audit_entries(from, usize::MAX >> 1).await?;
        let mut prev: Option<&AuditEntry> = None;
        for e in &segment {
            let links = match prev {
                Some(p) => e.seq == p.seq + 1 && e.prev_hash == p.hash,
                None => {
                    last.as_ref().is_none_or(|c| e.seq == c.seq && e.hash == c.head_hash) && (from > 0 || e.seq == 1)
                }
            };
            if !links || e.compute_hash() != e.hash {
                tracing::error!(seq = e.seq, "the audit chain in the store is broken; refusing to sign it");
                return Err(OpError::Store(format!("audit chain broken at sequence number {}", e.seq)));
            }
            prev = Some(e);
        }
        let c = self.audit.signer.checkpoint(&head, rfc3339_millis(now_ms()));
        self.store.add_checkpoint(&c).await?;
        self.audited();
        Ok(Some(c))
    }

    pub fn audit_public_key(&self) -> &str {
        self.audit.public_hex()
    }
}

/// RFC 3339 with milliseconds: entries made in the same second stay ordered to the eye.
pub fn rfc3339_millis(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Where entries are copied besides the store.
enum Sink {
    /// `signed`: the sequence number of the last checkpoint written to the file.
    Jsonl {
        path: PathBuf,
        file: std::fs::File,
        signed: u64,
    },
    Syslog(Syslog),
}

enum Syslog {
    Udp(std::net::UdpSocket),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixDatagram),
}

impl Syslog {
    fn open(spec: &str) -> std::io::Result<Syslog> {
        if let Some(addr) = spec.strip_prefix("udp://") {
            let s = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
            s.connect(addr)?;
            return Ok(Syslog::Udp(s));
        }
        #[cfg(unix)]
        if let Some(path) = spec.strip_prefix("unix:") {
            let s = std::os::unix::net::UnixDatagram::unbound()?;
            s.connect(path)?;
            return Ok(Syslog::Unix(s));
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsupported syslog address"))
    }

    /// RFC 5424, facility authpriv (10), severity notice (5).
    fn send(&self, e: &AuditEntry) -> std::io::Result<()> {
        let host = hostname();
        let body = serde_json::to_string(&Line::Entry(e.clone())).unwrap_or_default();
        let msg = format!("<85>1 {} {} keyward - audit [keyward seq=\"{}\"] {}", e.ts, host, e.seq, body);
        match self {
            Syslog::Udp(s) => s.send(msg.as_bytes()).map(|_| ()),
            #[cfg(unix)]
            Syslog::Unix(s) => s.send(msg.as_bytes()).map(|_| ()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into())
}

/// The last entry's and the last checkpoint's sequence numbers in a JSON-lines sink file.
fn last_seqs_in(path: &std::path::Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(path) else { return (0, 0) };
    let (mut entry, mut checkpoint) = (0, 0);
    for l in text.lines().filter_map(|l| serde_json::from_str::<Line>(l).ok()) {
        match l {
            Line::Entry(e) => entry = e.seq,
            Line::Checkpoint(c) => checkpoint = c.seq,
        }
    }
    (entry, checkpoint)
}

/// The background task: copy new entries (and checkpoints) to the sinks and
/// sign the head every `checkpoint_every` entries. On stop it signs the head.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut sinks: Vec<(Sink, u64)> = Vec::new();
    let head = app.store.audit_head().await.ok().flatten().map_or(0, |h| h.seq);
    if let Some(path) = &app.cfg.audit_jsonl_path {
        match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                let (from, signed) = last_seqs_in(path);
                if from > head {
                    tracing::warn!(path = %path.display(), "the audit file is ahead of the store; appending from the store's head");
                }
                sinks.push((Sink::Jsonl { path: path.clone(), file, signed }, from.min(head)));
            }
            Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot open the audit file sink"),
        }
    }
    if let Some(spec) = &app.cfg.audit_syslog {
        match Syslog::open(spec) {
            // syslog receives what happens from now on
            Ok(s) => sinks.push((Sink::Syslog(s), head)),
            Err(e) => tracing::error!(target_addr = %spec, error = %e, "cannot open the audit syslog sink"),
        }
    }
    let mut signed = app.store.last_checkpoint().await.ok().flatten().map_or(0, |c| c.seq);
    loop {
        let stopping = tokio::select! {
            _ = app.audit.notify.notified() => false,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => false,
            _ = stop.wait_for(|v| *v) => true,
        };
        let head = app.store.audit_head().await.ok().flatten().map_or(0, |h| h.seq);
        if stopping || head >= signed + app.audit.checkpoint_every {
            match app.checkpoint().await {
                Ok(Some(c)) => signed = c.seq,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "signing an audit checkpoint failed"),
            }
        }
        for (sink, pos) in sinks.iter_mut() {
            if let Err(e) = copy_to(&app, sink, pos).await {
                tracing::error!(error = %e, "copying audit entries to a sink failed; will retry");
            }
        }
        if stopping {
            break;
        }
    }
}

async fn copy_to(app: &App, sink: &mut Sink, pos: &mut u64) -> Result<(), String> {
    loop {
        let entries = app.store.audit_entries(*pos, PAGE).await.map_err(|e| e.to_string())?;
        let up_to = entries.last().map_or(*pos, |e| e.seq);
        let cps = app.store.checkpoints(pos.saturating_sub(1), up_to).await.map_err(|e| e.to_string())?;
        match sink {
            Sink::Jsonl { path, file, signed } => {
                let mut out = Vec::new();
                let line = |out: &mut Vec<u8>, l: Line| -> Result<(), String> {
                    serde_json::to_writer(&mut *out, &l).map_err(|e| e.to_string())?;
                    out.push(b'\n');
                    Ok(())
                };
                // a checkpoint of the last entry already in the file, made after it was
                // copied (the one at shutdown): it still belongs right after that entry
                let late: Vec<Checkpoint> = cps.iter().filter(|c| c.seq == *pos && c.seq > *signed).cloned().collect();
                for c in late {
                    *signed = c.seq;
                    line(&mut out, Line::Checkpoint(c))?;
                }
                for e in &entries {
                    line(&mut out, Line::Entry(e.clone()))?;
                    for c in cps.iter().filter(|c| c.seq == e.seq) {
                        line(&mut out, Line::Checkpoint(c.clone()))?;
                        *signed = c.seq;
                    }
                }
                file.write_all(&out).and_then(|_| file.sync_data()).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Sink::Syslog(s) => {
                for e in &entries {
                    s.send(e).map_err(|e| format!("syslog: {e}"))?;
                }
            }
        }
        match entries.last() {
            Some(e) => *pos = e.seq,
            None => return Ok(()),
        }
    }
}

/// A checkpoint line for a JSON-lines export (used by `audit export`).
pub fn export_lines(entries: &[AuditEntry], checkpoints: &[Checkpoint]) -> Vec<Line> {
    let mut out = Vec::with_capacity(entries.len() + checkpoints.len());
    for e in entries {
        out.push(Line::Entry(e.clone()));
        out.extend(checkpoints.iter().filter(|c| c.seq == e.seq).cloned().map(Line::Checkpoint));
    }
    out
}

/// Timestamps of entries, for `--since` filters.
pub fn ts_ms_of(e: &AuditEntry) -> Option<i64> {
    humantime::parse_rfc3339(&e.ts)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}
