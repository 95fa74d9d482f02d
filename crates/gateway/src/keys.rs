//! The key lifecycle: create, update, rotate (with a grace window and
//! idempotency), suspend, resume, revoke, expire; and the inventory review.

use crate::audit::Actor;
use crate::deliver;
use crate::index::{Effective, KeyEntry, Slot};
use crate::state::{now_ms, parse_env, rfc3339, App, OpError};
use keyward_core::crypto::{KeyDigest, Sealed};
use keyward_core::policy::{ClientSystem, KeyPolicy, ShieldMode, ToolPolicy};
use keyward_core::{keys, Environment};
use keyward_store::{KeyRow, KeyStatus, RotationRow};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Established policies by environment and stored policy text, shared by every
/// key that has them: most keys carry their environment's defaults, and 10,000
/// copies of them would cost megabytes. Held weakly, so a policy no key has any
/// more is dropped (the map is swept as it doubles).
#[derive(Default)]
pub(crate) struct SharedPolicies {
    /// One per environment.
    envs: [EnvPolicies; 3],
}

#[derive(Default)]
struct EnvPolicies {
    by_text: std::collections::HashMap<String, std::sync::Weak<Effective>>,
    sweep_at: usize,
}

impl SharedPolicies {
    fn get(&self, env: Environment, text: &str) -> Option<Arc<Effective>> {
        self.envs[env as usize].by_text.get(text).and_then(std::sync::Weak::upgrade)
    }

    fn insert(&mut self, env: Environment, text: &str, e: &Arc<Effective>) {
        let p = &mut self.envs[env as usize];
        if p.by_text.len() >= p.sweep_at {
            p.by_text.retain(|_, w| w.strong_count() > 0);
            p.sweep_at = (p.by_text.len() * 2).max(64);
        }
        p.by_text.insert(text.to_string(), Arc::downgrade(e));
    }
}

/// Rows per page when the whole inventory is walked.
const KEY_PAGE: u32 = 500;

/// The inventory, a page at a time: start-up and the scheduler walk every key
/// without holding 10,000 rows (and their strings) in memory at once.
#[derive(Debug, Default)]
pub(crate) struct KeyPages {
    after: Option<(i64, String)>,
    done: bool,
}

impl KeyPages {
    /// The next page; `None` once every key has been read.
    pub(crate) async fn next(&mut self, store: &dyn keyward_store::Store) -> Result<Option<Vec<KeyRow>>, OpError> {
        if self.done {
            return Ok(None);
        }
        let page = store.list_keys_after(self.after.take(), KEY_PAGE).await?;
        self.done = page.len() < KEY_PAGE as usize;
        match page.last() {
            Some(last) => self.after = Some((last.created_at_ms, last.id.clone())),
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

/// A key as the admin API shows it: never the secret, never the digest.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub id: String,
    pub service: String,
    pub service_id: String,
    pub owner: String,
    pub env: String,
    pub name: Option<String>,
    pub status: KeyStatus,
    pub created_at: String,
    pub status_changed_at: Option<String>,
    pub status_reason: Option<String>,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_rotated_at: Option<String>,
    /// Until when the rotated-out secret still works.
    pub old_secret_valid_until: Option<String>,
    pub rotate_every: Option<String>,
    pub next_rotation_at: Option<String>,
    pub deliver_to: Option<String>,
    /// The key's own settings (unset fields fall back to the environment's defaults).
    pub policy: KeyPolicy,
    /// What applies: the key's settings over the environment's defaults.
    pub effective_policy: KeyPolicy,
    /// Requests that presented a revoked, suspended, expired or rotated-out secret of this key.
    pub stale_secret_presented: i64,
    pub stale_secret_last_presented_at: Option<String>,
}

/// Settings for a new key.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub service: String,
    pub env: String,
    pub name: Option<String>,
    pub expires_in: Option<Duration>,
    pub rotate_every: Option<Duration>,
    pub deliver_to: Option<String>,
    pub policy: KeyPolicy,
}

/// A change to a key: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<Option<String>>,
    pub expires_at_ms: Option<Option<i64>>,
    pub rotate_every: Option<Option<Duration>>,
    pub deliver_to: Option<Option<String>>,
    pub rpm: Option<Option<u32>>,
    pub tpm: Option<Option<u64>>,
    pub max_concurrent: Option<Option<u32>>,
    pub budget_usd: Option<Option<f64>>,
    pub models: Option<Option<Vec<String>>>,
    pub allow_cidr: Option<Option<Vec<String>>>,
    pub shield: Option<Option<ShieldMode>>,
    pub shield_threshold: Option<Option<f32>>,
    pub shield_deep: Option<Option<keyward_core::policy::DeepStage>>,
    pub pin_system: Option<Option<String>>,
    pub client_system: Option<Option<ClientSystem>>,
    pub guard_instruction: Option<Option<bool>>,
    pub spotlight: Option<Option<bool>>,
    pub allow_tools: Option<Option<Vec<String>>>,
    pub tool_policy: Option<Option<ToolPolicy>>,
    pub tool_rules: Option<Option<Vec<String>>>,
}

pub struct Rotated {
    pub key: KeyView,
    pub secret: SecretString,
    pub old_secret_valid_until: Option<String>,
    /// Where the new secret was delivered, or why delivery failed.
    pub delivery: Option<Result<String, String>>,
}

fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn policy_of(k: &KeyRow) -> Result<KeyPolicy, OpError> {
    serde_json::from_str(&k.policy).map_err(|e| OpError::Store(format!("key {} has an unreadable policy: {e}", k.id)))
}

fn check_deliver_target(t: &str) -> Result<(), OpError> {
    deliver::check_target(t).map(|_| ()).map_err(OpError::Invalid)
}

impl App {
    pub(crate) fn effective(&self, env: Environment, p: &KeyPolicy) -> Result<Effective, OpError> {
        let d = self.cfg.env(env);
        let policy = p.or(&d.policy);
        let cidrs = policy.validate().map_err(OpError::Invalid)?;
        let request_plan = crate::shield::RequestPlan::from_policy(&policy, self.shield.threshold()).map(Arc::new);
        let tool_gate = crate::shield::ToolGate::from_policy(&policy).map_err(OpError::Invalid)?.map(Arc::new);
        Ok(Effective { policy, cidrs, log_request_metadata: d.log_request_metadata, request_plan, tool_gate })
    }

    /// Put a key row into the index (current and previous secrets). Keys with
    /// the same environment and stored policy share one established policy
    /// ([`SharedPolicies`]).
    pub(crate) fn index_key(&self, k: &KeyRow) -> Option<Arc<KeyEntry>> {
        let Ok(env) = k.env.parse::<Environment>() else {
            tracing::error!(key_id = %k.id, "key has an unknown environment; not loaded (fail closed)");
            return None;
        };
        let service_name = self.service(&k.service_id).map(|s| s.name).unwrap_or_default();
        let mut status = k.status;
        let established = {
            let mut shared = self.policies.lock().unwrap_or_else(|p| p.into_inner());
            match shared.get(env, &k.policy) {
                Some(e) => Ok(e),
                None => policy_of(k).and_then(|p| self.effective(env, &p)).map(|e| {
                    let e = Arc::new(e);
                    shared.insert(env, &k.policy, &e);
                    e
                }),
            }
        };
        let effective = match established {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(key_id = %k.id, error = %e, "key policy cannot be established; key refused (fail closed)");
                status = KeyStatus::Revoked;
                Arc::new(Effective::default())
            }
        };
        let entry = match self.keys.get(&k.id) {
            Some(e) => {
                e.set_status(status);
                self.keys.set_slot(KeyDigest(k.digest), &e, Slot::Current);
                e
            }
            None => self.keys.insert(
                KeyDigest(k.digest),
                KeyEntry::new(k.id.clone(), k.service_id.clone(), service_name, env, status),
            ),
        };
        entry.set_policy(effective);
        entry.set_expiry(k.expires_at_ms);
        entry.set_rotated(k.rotated_at_ms.unwrap_or(k.created_at_ms));
        entry.set_prev_valid_until(k.prev_valid_until_ms);
        if let Some(prev) = k.prev_digest {
            self.keys.set_slot(KeyDigest(prev), &entry, Slot::Previous);
        }
        Some(entry)
    }

    pub(crate) async fn key_row(&self, id: &str) -> Result<KeyRow, OpError> {
        self.store.get_key(id).await.map_err(|e| match e {
            keyward_store::StoreError::NotFound(_) => OpError::NotFound(format!("key {id:?}")),
            other => other.into(),
        })
    }

    pub(crate) fn rotate_every_of(&self, k: &KeyRow) -> Duration {
        match k.rotate_every_s {
            Some(s) => Duration::from_secs(s.max(0) as u64),
            None => k
                .env
                .parse::<Environment>()
                .map(|e| self.cfg.env(e).rotate_every)
                .unwrap_or(Duration::from_secs(90 * 86_400)),
        }
    }

    /// When the key is next due for rotation (from its last rotation or creation).
    pub(crate) fn next_rotation_ms(&self, k: &KeyRow) -> i64 {
        k.rotated_at_ms.unwrap_or(k.created_at_ms) + self.rotate_every_of(k).as_millis() as i64
    }

    pub(crate) fn key_view(&self, k: &KeyRow) -> KeyView {
        let svc = self.service(&k.service_id);
        let policy = policy_of(k).unwrap_or_default();
        let effective_policy =
            k.env.parse::<Environment>().map(|e| policy.or(&self.cfg.env(e).policy)).unwrap_or_else(|_| policy.clone());
        let now = now_ms();
        KeyView {
            id: k.id.clone(),
            service: svc.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            service_id: k.service_id.clone(),
            owner: svc.map(|s| s.owner).unwrap_or_default(),
            env: k.env.clone(),
            name: k.name.clone(),
            status: k.status,
            created_at: rfc3339(k.created_at_ms),
            status_changed_at: k.status_changed_at_ms.map(rfc3339),
            status_reason: k.status_reason.clone(),
            last_used_at: k.last_used_ms.map(rfc3339),
            expires_at: k.expires_at_ms.map(rfc3339),
            last_rotated_at: k.rotated_at_ms.map(rfc3339),
            old_secret_valid_until: k.prev_valid_until_ms.filter(|t| *t > now && k.prev_digest.is_some()).map(rfc3339),
            rotate_every: Some(duration_text(self.rotate_every_of(k))),
            next_rotation_at: (k.status == KeyStatus::Active).then(|| rfc3339(self.next_rotation_ms(k))),
            deliver_to: k.deliver_to.clone(),
            policy,
            effective_policy,
            stale_secret_presented: k.stale_presented + self.keys.get(&k.id).map(|e| e.peek_stale()).unwrap_or(0),
            stale_secret_last_presented_at: k.stale_presented_last_ms.map(rfc3339),
        }
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyView>, OpError> {
        Ok(self.store.list_keys().await?.iter().map(|k| self.key_view(k)).collect())
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyView, OpError> {
        Ok(self.key_view(&self.key_row(id).await?))
    }

    /// Mint a virtual key. The secret is returned once, here, and never stored.
    pub async fn create_key(&self, actor: &Actor, n: NewKey) -> Result<(KeyView, SecretString), OpError> {
        let env = parse_env(&n.env)?;
        let svc = self
            .service_by_name(&n.service)
            .or_else(|| self.service(&n.service))
            .ok_or_else(|| OpError::NotFound(format!("service {:?}", n.service)))?;
        if svc.status != "active" {
            return Err(OpError::Invalid(format!("service {:?} is {}", svc.name, svc.status)));
        }
        self.effective(env, &n.policy)?;
        if let Some(t) = &n.deliver_to {
            check_deliver_target(t)?;
        }
        let now = now_ms();
        let secret = keys::generate_virtual(env);
        let row = KeyRow {
            id: keyward_core::ids::key_id(),
            service_id: svc.id.clone(),
            env: env.as_str().to_string(),
            name: n.name,
            digest: self.digester.digest(secret.expose_secret()).0,
            status: KeyStatus::Active,
            created_at_ms: now,
            status_changed_at_ms: None,
            status_reason: None,
            last_used_ms: None,
            expires_at_ms: n.expires_in.map(|d| now + d.as_millis() as i64),
            rotated_at_ms: None,
            prev_digest: None,
            prev_valid_until_ms: None,
            policy: serde_json::to_string(&n.policy).map_err(|e| OpError::Store(e.to_string()))?,
            rotate_every_s: n.rotate_every.map(|d| d.as_secs() as i64),
            deliver_to: n.deliver_to,
            stale_presented: 0,
            stale_presented_last_ms: None,
        };
        let draft = self.draft(
            actor,
            "key.create",
            vec![row.id.clone(), svc.id.clone()],
            json!({
                "service": svc.name,
                "env": row.env,
                "name": row.name,
                "policy": n.policy,
                "expires_at": row.expires_at_ms.map(rfc3339),
                "rotate_every_s": row.rotate_every_s,
                "deliver_to": row.deliver_to.as_deref().map(crate::upstreams::source_kind),
            }),
        );
        self.store.create_key(&row, &draft).await?;
        self.audited();
        self.index_key(&row);
        Ok((self.key_view(&row), secret))
    }

    pub async fn update_key(&self, actor: &Actor, id: &str, u: KeyUpdate) -> Result<KeyView, OpError> {
        let _w = self.write_lock.lock().await;
        let mut row = self.key_row(id).await?;
        let before = row.clone();
        if row.status == KeyStatus::Revoked {
            return Err(OpError::Invalid(format!("key {id} is revoked")));
        }
        let mut p = policy_of(&row)?;
        if let Some(v) = u.rpm {
            p.rpm = v;
        }
        if let Some(v) = u.tpm {
            p.tpm = v;
        }
        if let Some(v) = u.max_concurrent {
            p.max_concurrent = v;
        }
        if let Some(v) = u.budget_usd {
            p.budget_usd = v;
        }
        if let Some(v) = u.models {
            p.models = v;
        }
        if let Some(v) = u.allow_cidr {
            p.allow_cidr = v;
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = u.$f { p.$f = v; } )* };
        }
        set!(
            shield,
            shield_threshold,
            shield_deep,
            pin_system,
            client_system,
            guard_instruction,
            spotlight,
            allow_tools
        );
        set!(tool_policy, tool_rules);
        let env = parse_env(&row.env)?;
        self.effective(env, &p)?;
        row.policy = serde_json::to_string(&p).map_err(|e| OpError::Store(e.to_string()))?;
        if let Some(v) = u.name {
            row.name = v;
        }
        if let Some(v) = u.expires_at_ms {
            row.expires_at_ms = v;
        }
        if let Some(v) = u.rotate_every {
            row.rotate_every_s = v.map(|d| d.as_secs() as i64);
        }
        if let Some(v) = u.deliver_to {
            if let Some(t) = &v {
                check_deliver_target(t)?;
            }
            row.deliver_to = v;
        }
        let draft = self.draft(actor, "key.update", vec![row.id.clone()], key_changes(&before, &row));
        self.store.save_key(&row, &[], None, &draft).await?;
        self.audited();
        self.index_key(&row);
        Ok(self.key_view(&row))
    }

    /// Issue a new secret for the same key id. The old secret keeps working
    /// until `grace` has passed (0: refused at once). At most two secrets are
    /// valid at a time: rotating again within a grace window retires the
    /// older of the two at once. Repeating a rotation with the same
    /// idempotency key returns the same new secret while its window lasts.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        id: &str,
        grace: Option<Duration>,
        idempotency_key: Option<&str>,
    ) -> Result<Rotated, OpError> {
        let _w = self.write_lock.lock().await;
        let grace = grace.unwrap_or(self.cfg.default_grace);
        let now = now_ms();
        let context = format!("rotation:{id}");
        if let Some(ik) = idempotency_key {
            if let Some(r) = self.store.get_rotation(id, ik).await? {
                let row = self.key_row(id).await?;
                let secret = self
                    .envelope
                    .open(&Sealed { wrapped_key: r.wrapped_key, ciphertext: r.ciphertext }, &context)
                    .map_err(|e| OpError::Store(e.to_string()))?;
                // the same rotation again: same secret, nothing new minted
                if KeyDigest(row.digest).ct_eq(&self.digester.digest(secret.expose_secret())) {
                    return Ok(Rotated {
                        old_secret_valid_until: row.prev_valid_until_ms.map(rfc3339),
                        key: self.key_view(&row),
                        secret,
                        delivery: None,
                    });
                }
                return Err(OpError::Conflict(format!(
                    "idempotency key {ik:?} belongs to an earlier rotation of {id}, superseded since"
                )));
            }
        }
        let mut row = self.key_row(id).await?;
        if row.status == KeyStatus::Revoked {
            return Err(OpError::Invalid(format!("key {id} is revoked; create a new key instead")));
        }
        let env = parse_env(&row.env)?;
        let secret = keys::generate_virtual(env);
        let old_current = row.digest;
        // at most two valid secrets: an earlier rotated-out secret leaves now
        // at most two valid secrets: an earlier rotated-out secret leaves now,
        // and with no grace the current one leaves too
        let mut leaving: Vec<[u8; 32]> = row.prev_digest.take().into_iter().collect();
        if grace.is_zero() {
            leaving.push(old_current);
            row.prev_valid_until_ms = None;
        } else {
            row.prev_digest = Some(old_current);
            row.prev_valid_until_ms = Some(now + grace.as_millis() as i64);
        }
        row.digest = self.digester.digest(secret.expose_secret()).0;
        row.rotated_at_ms = Some(now);
        let rotation = idempotency_key.map(|ik| {
            let s = self.envelope.seal(&secret, &context);
            RotationRow {
                key_id: id.to_string(),
                idempotency_key: ik.to_string(),
                wrapped_key: s.wrapped_key,
                ciphertext: s.ciphertext,
                valid_until_ms: now + grace.max(Duration::from_secs(3600)).as_millis() as i64,
                created_at_ms: now,
            }
        });
        // one transaction: a failure here leaves the key working with its old secret
        let draft = self.draft(
            actor,
            "key.rotate",
            vec![row.id.clone()],
            json!({
                "grace_s": grace.as_secs(),
                "old_secret_valid_until": row.prev_valid_until_ms.map(rfc3339),
                "retired_secrets": leaving.len(),
                "idempotency_key": idempotency_key.is_some(),
                "deliver_to": row.deliver_to.as_deref().map(crate::upstreams::source_kind),
            }),
        );
        self.store.save_key(&row, &leaving, rotation.as_ref(), &draft).await?;
        self.audited();
        let entry = self.index_key(&row);
        if let Some(e) = &entry {
            for d in &leaving {
                self.keys.set_slot(KeyDigest(*d), e, Slot::Retired);
            }
        }
        let delivery = match &row.deliver_to {
            Some(t) => Some(deliver::deliver(self.sink.as_ref(), t, &secret).await.map(|_| t.clone())),
            None => None,
        };
        if let Some(Err(e)) = &delivery {
            tracing::error!(key_id = %id, reason = %e, "delivering the rotated key failed; the old secret works until the grace window ends");
        }
        if let Some(d) = &delivery {
            let outcome = match d {
                Ok(_) => json!({ "delivered": true }),
                Err(e) => json!({ "delivered": false, "reason": e }),
            };
            self.audit_event_logged(actor, "key.deliver", vec![row.id.clone()], outcome).await;
        }
        Ok(Rotated {
            old_secret_valid_until: row.prev_valid_until_ms.map(rfc3339),
            key: self.key_view(&row),
            secret,
            delivery,
        })
    }

    /// Revoke, suspend or resume a key: stored first, then effective on the next request.
    pub async fn set_key_status(
        &self,
        actor: &Actor,
        id: &str,
        status: KeyStatus,
        reason: Option<&str>,
    ) -> Result<KeyView, OpError> {
        let _w = self.write_lock.lock().await;
        let row = self.key_row(id).await?;
        match (row.status, status) {
            (KeyStatus::Revoked, KeyStatus::Revoked) => return Ok(self.key_view(&row)),
            (KeyStatus::Revoked, _) => {
                return Err(OpError::Invalid(format!("key {id} is revoked; revocation is permanent")));
            }
            (KeyStatus::Active, KeyStatus::Active) => {
                return Err(OpError::Invalid(format!("key {id} is not suspended")));
            }
            _ => {}
        }
        let action = match (row.status, status) {
            (_, KeyStatus::Revoked) => "key.revoke",
            (_, KeyStatus::Suspended) => "key.suspend",
            (_, KeyStatus::Active) => "key.resume",
        };
        let draft = self.draft(actor, action, vec![id.to_string()], json!({ "reason": reason }));
        self.store.update_key_status(id, status, now_ms(), reason, &draft).await?;
        self.audited();
        if let Some(e) = self.keys.get(id) {
            e.set_status(status);
        }
        self.get_key(id).await
    }

    pub async fn revoke_key(&self, actor: &Actor, id: &str, reason: Option<&str>) -> Result<KeyView, OpError> {
        self.set_key_status(actor, id, KeyStatus::Revoked, reason).await
    }
}

/// What the inventory knows about a secret found by the leak scanner.
#[derive(Debug, Clone, Serialize)]
pub struct Classified {
    /// `live`, `suspended`, `expired`, `rotated_out`, `revoked`, `upstream` or `unknown`.
    pub status: &'static str,
    pub id: Option<String>,
    pub service: Option<String>,
    pub owner: Option<String>,
}

impl App {
    /// Classify secrets found by the scanner: a keyward key (by keyed digest)
    /// and its state, one of the upstream keys (by fingerprint), or unknown.
    pub async fn classify_secrets(&self, secrets: &[SecretString]) -> Vec<Classified> {
        let now = now_ms();
        // fingerprints of the upstream keys in service, fetched through the cache
        let mut upstream_fps: Vec<(String, String)> = Vec::new();
        for (_, u) in self.upstreams.all() {
            if let Ok(c) = self.secrets.get(&u.secret).await {
                upstream_fps.push((c.fingerprint().to_string(), u.id.clone()));
            }
        }
        let rows = self.store.list_upstreams().await.unwrap_or_default();
        for u in rows {
            if let Some(fp) = u.fingerprint {
                upstream_fps.push((fp, u.id));
            }
        }
        let mut out = Vec::with_capacity(secrets.len());
        for s in secrets {
            let secret = s.expose_secret();
            let unknown = Classified { status: "unknown", id: None, service: None, owner: None };
            if keys::parse(secret).is_ok() {
                let d = self.digester.digest(secret);
                let (entry, live) = match self.keys.authenticate(&d, now) {
                    crate::index::Auth::Ok(e) => (e, true),
                    crate::index::Auth::Stale(e) => (e, false),
                    crate::index::Auth::Unknown => {
                        out.push(unknown);
                        continue;
                    }
                };
                let status = if live {
                    "live"
                } else {
                    match entry.status() {
                        KeyStatus::Revoked => "revoked",
                        KeyStatus::Suspended => "suspended",
                        KeyStatus::Active if entry.is_expired(now) => "expired",
                        KeyStatus::Active => "rotated_out",
                    }
                };
                let svc = self.service(&entry.service_id);
                out.push(Classified {
                    status,
                    id: Some(entry.id.clone()),
                    service: svc.as_ref().map(|s| s.name.clone()),
                    owner: svc.map(|s| s.owner),
                });
            } else {
                let fp = keyward_core::crypto::fingerprint(secret);
                match upstream_fps.iter().find(|(f, _)| *f == fp) {
                    Some((_, id)) => {
                        out.push(Classified { status: "upstream", id: Some(id.clone()), service: None, owner: None })
                    }
                    None => out.push(unknown),
                }
            }
        }
        out
    }
}

/// What a key update changed, for its audit entry: field names with old and
/// new values (none of them secret).
fn key_changes(before: &KeyRow, after: &KeyRow) -> serde_json::Value {
    let mut changed = serde_json::Map::new();
    let mut note = |field: &str, old: serde_json::Value, new: serde_json::Value| {
        if old != new {
            changed.insert(field.to_string(), json!({ "from": old, "to": new }));
        }
    };
    let policy = |r: &KeyRow| serde_json::from_str::<serde_json::Value>(&r.policy).unwrap_or(json!({}));
    note("policy", policy(before), policy(after));
    note("name", json!(before.name), json!(after.name));
    note("expires_at", json!(before.expires_at_ms.map(rfc3339)), json!(after.expires_at_ms.map(rfc3339)));
    note("rotate_every_s", json!(before.rotate_every_s), json!(after.rotate_every_s));
    note(
        "deliver_to",
        json!(before.deliver_to.as_deref().map(crate::upstreams::source_kind)),
        json!(after.deliver_to.as_deref().map(crate::upstreams::source_kind)),
    );
    json!({ "changed": changed })
}
