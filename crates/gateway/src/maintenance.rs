//! Work the gateway does on a timer: scheduled rotations, the end of grace
//! windows, retirement of rotated-out upstream keys, and flushing counters.
//! And the inventory review, which reads the same facts.

use crate::audit::Actor;
use crate::index::Slot;
use crate::keys::KeyPages;
use crate::state::{now_ms, rfc3339, App, OpError};
use keyward_core::crypto::KeyDigest;
use keyward_store::{KeyRow, KeyStatus};
use serde::Serialize;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;
/// Keys without a delivery target are warned about this many days ahead.
const WARN_DAYS: [i64; 3] = [14, 7, 1];

/// One key in the inventory review.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub key_id: String,
    pub service: String,
    pub owner: String,
    pub env: String,
    pub status: KeyStatus,
    pub age_days: i64,
    pub last_rotated_at: Option<String>,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub next_rotation_at: Option<String>,
    pub findings: Vec<&'static str>,
}

impl App {
    /// One round of timed work; `serve` runs it every `keys.rotation_check_interval`.
    pub async fn maintenance(&self) {
        let now = now_ms();
        self.flush_stale().await;
        self.flush_security_events().await;
        if let Err(e) = self.expire_grace_windows(now).await {
            tracing::warn!(error = %e, "ending grace windows failed");
        }
        if let Err(e) = self.scheduled_rotations(now).await {
            tracing::warn!(error = %e, "scheduled rotation failed");
        }
        if let Err(e) = self.note_expiries(now).await {
            tracing::warn!(error = %e, "recording key expiries failed");
        }
        self.process_retirements(now).await;
        if let Err(e) = self.store.purge_rotations(now).await {
            tracing::warn!(error = %e, "purging rotation records failed");
        }
    }

    /// Persist the counts of stale secrets presented since the last flush.
    pub async fn flush_stale(&self) {
        let counts: Vec<(String, i64, i64)> =
            self.keys.all().iter().filter_map(|e| e.take_stale().map(|(n, last)| (e.id.clone(), n, last))).collect();
        if counts.is_empty() {
            return;
        }
        for (id, n, _) in &counts {
            tracing::warn!(key_id = %id, presented = n, "a revoked, suspended, expired or rotated-out secret is still being presented");
        }
        if let Err(e) = self.store.add_stale_presented(&counts).await {
            tracing::warn!(error = %e, "recording stale-secret presentations failed");
        }
    }

    /// Audit what happened since the last flush, in aggregate: failed
    /// authentications per source address and plane, and secret-source fetch
    /// failures. Also records when admin tokens were last used.
    pub async fn flush_security_events(&self) {
        let now = now_ms();
        for r in self.auth_guard.drain(now) {
            tracing::warn!(plane = r.plane.as_str(), source = %r.source, failures = r.failures, throttled = r.throttled, "failed authentications");
            self.audit_event_logged(
                &Actor { name: "anonymous".into(), source: Some(r.source.to_string()) },
                "auth.failed",
                vec![],
                json!({
                    "plane": r.plane.as_str(),
                    "failures": r.failures,
                    "throttled": r.throttled,
                    "first": crate::audit::rfc3339_millis(r.first_ms),
                    "last": crate::audit::rfc3339_millis(r.last_ms),
                }),
            )
            .await;
        }
        let st = self.secrets.stats();
        let (failures, unavailable) = (st.failures, st.unavailable);
        let (seen_failures, seen_unavailable) = {
            let mut seen = self.secret_failures_seen.lock().unwrap_or_else(|p| p.into_inner());
            let prev = *seen;
            *seen = (failures, unavailable);
            prev
        };
        if failures > seen_failures {
            self.audit_event_logged(
                &Actor::system("secrets"),
                "secret.fetch_failed",
                vec![],
                json!({
                    "failures": failures - seen_failures,
                    "refused_unavailable": unavailable.saturating_sub(seen_unavailable),
                    "stale_serves_total": st.stale_serves,
                }),
            )
            .await;
        }
        let used = self.tokens.take_used();
        if !used.is_empty() {
            if let Err(e) = self.store.touch_tokens(&used).await {
                tracing::warn!(error = %e, "recording admin token use failed");
            }
        }
    }

    /// Rotated-out secrets whose window has passed become retired digests.
    async fn expire_grace_windows(&self, now: i64) -> Result<(), OpError> {
        let _w = self.write_lock.lock().await;
        let mut pages = KeyPages::default();
        while let Some(page) = pages.next(self.store.as_ref()).await? {
            for k in page {
                self.end_grace_window(k, now).await?;
            }
        }
        Ok(())
    }

    /// Retire a key's rotated-out secret once its grace window has passed.
    async fn end_grace_window(&self, mut k: KeyRow, now: i64) -> Result<(), OpError> {
        let (Some(prev), Some(until)) = (k.prev_digest, k.prev_valid_until_ms) else { return Ok(()) };
        if until > now {
            return Ok(());
        }
        k.prev_digest = None;
        k.prev_valid_until_ms = None;
        let draft = self.draft(
            &Actor::system("scheduler"),
            "key.grace_ended",
            vec![k.id.clone()],
            json!({ "rotated_at": k.rotated_at_ms.map(rfc3339) }),
        );
        self.store.save_key(&k, &[prev], None, &draft).await?;
        self.audited();
        if let Some(e) = self.keys.get(&k.id) {
            self.keys.set_slot(KeyDigest(prev), &e, Slot::Retired);
            e.set_prev_valid_until(None);
        }
        Ok(())
    }

    /// Rotate keys that are due and have a delivery target; warn about the others.
    async fn scheduled_rotations(&self, now: i64) -> Result<(), OpError> {
        let mut pages = KeyPages::default();
        while let Some(page) = pages.next(self.store.as_ref()).await? {
            for k in page.iter().filter(|k| k.status == KeyStatus::Active) {
                self.rotate_if_due(k, now).await;
            }
        }
        Ok(())
    }

    async fn rotate_if_due(&self, k: &KeyRow, now: i64) {
        let due = self.next_rotation_ms(k);
        match &k.deliver_to {
            Some(_) if due <= now => {
                // the idempotency key names this due date: a restart mid-way repeats, never doubles
                let ik = format!("scheduled-{due}");
                match self.rotate_key(&Actor::system("scheduler"), &k.id, None, Some(&ik)).await {
                    Ok(r) => {
                        tracing::info!(key_id = %k.id, delivered = r.delivery.as_ref().is_some_and(|d| d.is_ok()), "scheduled rotation done")
                    }
                    Err(e) => tracing::error!(key_id = %k.id, error = %e, "scheduled rotation failed"),
                }
            }
            Some(_) => {}
            None => self.warn_due(k, due, now),
        }
    }

    /// One audit entry per key that passed its expiry (keys expire by time on
    /// the request path; this records when the scheduler saw it).
    async fn note_expiries(&self, now: i64) -> Result<(), OpError> {
        let expired: Vec<_> = self.keys.all().into_iter().filter(|e| e.is_expired(now)).collect();
        for e in expired {
            let draft = self.draft(
                &Actor::system("scheduler"),
                "key.expired",
                vec![e.id.clone()],
                json!({ "service_id": e.service_id }),
            );
            if self.store.note_key_expired(&e.id, now, &draft).await? {
                tracing::info!(key_id = %e.id, "key expired");
                self.audited();
            }
        }
        Ok(())
    }

    fn warn_due(&self, k: &KeyRow, due: i64, now: i64) {
        let days_left = (due - now).div_euclid(DAY_MS);
        let Some(&threshold) = WARN_DAYS.iter().rev().find(|&&d| days_left < d).or((days_left < 0).then_some(&0))
        else {
            return;
        };
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.insert((k.id.clone(), threshold)) {
            tracing::warn!(
                key_id = %k.id,
                due_at = %rfc3339(due),
                "key is due for rotation and has no delivery target (--deliver-to); rotate it with `keyward key rotate`"
            );
        }
    }

    /// The inventory review: every key with its findings.
    pub async fn review(&self) -> Result<Vec<ReviewItem>, OpError> {
        let now = now_ms();
        let keys = self.store.list_keys().await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in &keys {
            let svc = self.service(&k.service_id);
            let mut f = Vec::new();
            let active = k.status != KeyStatus::Revoked;
            let due = self.next_rotation_ms(k);
            if active && due <= now {
                f.push("not_rotated");
            }
            if active && k.deliver_to.is_none() && due - now < 14 * DAY_MS {
                f.push("rotation_due_without_delivery");
            }
            let last = k.last_used_ms.unwrap_or(k.created_at_ms);
            if active && now - last > 30 * DAY_MS {
                f.push("unused_30d");
            }
            match k.expires_at_ms {
                Some(e) if active && e <= now => f.push("expired"),
                Some(e) if active && e - now < 14 * DAY_MS => f.push("expiring_14d"),
                _ => {}
            }
            if active && svc.as_ref().is_some_and(|s| s.status != "active") {
                f.push("retired_service");
            }
            if active && svc.as_ref().is_none_or(|s| s.owner.trim().is_empty()) {
                f.push("no_owner");
            }
            let pending = self.keys.get(&k.id).map(|e| e.peek_stale()).unwrap_or(0);
            if k.stale_presented + pending > 0 {
                f.push("stale_secret_presented");
            }
            out.push(ReviewItem {
                key_id: k.id.clone(),
                service: svc.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                owner: svc.map(|s| s.owner).unwrap_or_default(),
                env: k.env.clone(),
                status: k.status,
                age_days: (now - k.created_at_ms) / DAY_MS,
                last_rotated_at: k.rotated_at_ms.map(rfc3339),
                last_used_at: k.last_used_ms.map(rfc3339),
                expires_at: k.expires_at_ms.map(rfc3339),
                next_rotation_at: active.then(|| rfc3339(due)),
                findings: f,
            });
        }
        Ok(out)
    }

    /// Revoke every key of a service and mark it retired.
    pub async fn decommission_service(
        &self,
        actor: &Actor,
        name: &str,
        reason: Option<&str>,
    ) -> Result<(crate::state::ServiceView, usize), OpError> {
        let svc = self
            .service_by_name(name)
            .or_else(|| self.service(name))
            .ok_or_else(|| OpError::NotFound(format!("service {name:?}")))?;
        let keys: Vec<_> = self
            .store
            .list_keys()
            .await?
            .into_iter()
            .filter(|k| k.service_id == svc.id && k.status != KeyStatus::Revoked)
            .collect();
        let reason = reason.unwrap_or("service decommissioned");
        for k in &keys {
            self.revoke_key(actor, &k.id, Some(reason)).await?;
        }
        self.set_service_status(actor, &svc.id, "retired").await?;
        Ok((self.get_service(&svc.id)?, keys.len()))
    }
}
