//! Upstream (real Anthropic) keys: add, rotate with a grace window, retire,
//! and deactivation of rotated-out keys through the Anthropic Admin API.

use crate::audit::Actor;
use crate::index::UpstreamEntry;
use crate::state::{now_ms, parse_env, rfc3339, valid_name, App, OpError};
use bytes::Bytes;
use http_body_util::BodyExt;
use keyward_secrets::{CacheEntry, SecretRef};
use keyward_store::{KeyStatus, LocalSecretRow, UpstreamRetirement, UpstreamRow};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    pub id: String,
    pub name: String,
    pub env: String,
    #[serde(rename = "ref")]
    pub secret_ref: String,
    pub fingerprint: Option<String>,
    pub status: String,
    pub created_at: String,
    pub anthropic_key_id: Option<String>,
    pub last_rotated_at: Option<String>,
}

/// Where an upstream key comes from: a value to seal, or a reference.
pub enum UpstreamSecret {
    Value(SecretString),
    Ref(String),
}

fn view(u: &UpstreamRow) -> UpstreamView {
    UpstreamView {
        id: u.id.clone(),
        name: u.name.clone(),
        env: u.env.clone(),
        secret_ref: u.secret_ref.clone(),
        fingerprint: u.fingerprint.clone(),
        status: u.status.clone(),
        created_at: rfc3339(u.created_at_ms),
        anthropic_key_id: u.anthropic_key_id.clone(),
        last_rotated_at: u.rotated_at_ms.map(rfc3339),
    }
}

fn parse_ref(r: &str) -> Result<SecretRef, OpError> {
    r.parse().map_err(|e: keyward_secrets::RefError| OpError::Invalid(e.to_string()))
}

impl App {
    pub(crate) fn index_upstream(
        &self,
        u: &UpstreamRow,
        previous: Option<(Arc<CacheEntry>, i64)>,
    ) -> Result<(), OpError> {
        let env = parse_env(&u.env)?;
        let secret = self.secrets.entry(&parse_ref(&u.secret_ref)?);
        self.upstreams.set(env, UpstreamEntry { id: u.id.clone(), name: u.name.clone(), secret, previous });
        Ok(())
    }

    /// Seal a value into the local store under `local_name`, or check a reference.
    fn prepare_secret(
        &self,
        local_name: &str,
        s: UpstreamSecret,
    ) -> Result<(String, Option<LocalSecretRow>, Option<String>), OpError> {
        match s {
            UpstreamSecret::Value(v) => {
                let v = SecretString::from(v.expose_secret().trim().to_string());
                if v.expose_secret().is_empty() {
                    return Err(OpError::Invalid("the upstream key is empty".into()));
                }
                keyward_secrets::Credential::new(v.clone()).map_err(|_| {
                    OpError::Invalid("the upstream key contains characters not allowed in a header".into())
                })?;
                let r = format!("local:{local_name}");
                let s = self.envelope.seal(&v, &r);
                let row = LocalSecretRow {
                    name: local_name.to_string(),
                    wrapped_key: s.wrapped_key,
                    ciphertext: s.ciphertext,
                    created_at_ms: now_ms(),
                };
                Ok((r, Some(row), Some(keyward_core::crypto::fingerprint(v.expose_secret()))))
            }
            UpstreamSecret::Ref(r) => Ok((parse_ref(&r)?.to_string(), None, None)),
        }
    }

    /// Add an upstream key for an environment; it serves that environment from now on.
    pub async fn create_upstream(
        &self,
        actor: &Actor,
        name: &str,
        env: &str,
        secret: UpstreamSecret,
        anthropic_key_id: Option<String>,
    ) -> Result<UpstreamView, OpError> {
        valid_name("upstream", name)?;
        let env = parse_env(env)?;
        let _w = self.write_lock.lock().await;
        let (secret_ref, sealed, fingerprint) = self.prepare_secret(name, secret)?;
        let row = UpstreamRow {
            id: keyward_core::ids::upstream_id(),
            name: name.to_string(),
            env: env.as_str().to_string(),
            secret_ref,
            fingerprint,
            status: "active".into(),
            created_at_ms: now_ms(),
            anthropic_key_id,
            rotated_at_ms: None,
        };
        let draft = self.draft(
            actor,
            "upstream.create",
            vec![row.id.clone()],
            json!({ "name": row.name, "env": row.env, "secret_source": source_kind(&row.secret_ref), "fingerprint": row.fingerprint }),
        );
        self.store.create_upstream(&row, sealed.as_ref(), &draft).await?;
        self.audited();
        self.index_upstream(&row, None)?;
        Ok(view(&row))
    }

    pub async fn list_upstreams(&self) -> Result<Vec<UpstreamView>, OpError> {
        Ok(self.store.list_upstreams().await?.iter().map(view).collect())
    }

    async fn upstream_row(&self, name: &str) -> Result<UpstreamRow, OpError> {
        self.store
            .list_upstreams()
            .await?
            .into_iter()
            .find(|u| u.name == name || u.id == name)
            .ok_or_else(|| OpError::NotFound(format!("upstream {name:?}")))
    }

    /// Replace an upstream key. New requests use the new key at once; the old
    /// one stays loaded for `grace`, then is dropped and, when an Anthropic
    /// admin key is configured, set inactive through the Admin API.
    pub async fn rotate_upstream(
        &self,
        actor: &Actor,
        name: &str,
        secret: UpstreamSecret,
        grace: Option<Duration>,
        anthropic_key_id: Option<String>,
    ) -> Result<UpstreamView, OpError> {
        let _w = self.write_lock.lock().await;
        let mut row = self.upstream_row(name).await?;
        // a compromised key is rotated exactly like an active one (and is then active again)
        if row.status != "active" && row.status != "compromised" {
            return Err(OpError::Invalid(format!("upstream {name:?} is {}", row.status)));
        }
        let grace = grace.unwrap_or(self.cfg.default_grace);
        let now = now_ms();
        let (new_ref, sealed, fingerprint) = self.prepare_secret(&format!("{}.{now}", row.name), secret)?;
        let retire_at = now + grace.as_millis() as i64;
        let retirement = UpstreamRetirement {
            id: 0,
            upstream_id: row.id.clone(),
            secret_ref: row.secret_ref.clone(),
            anthropic_key_id: row.anthropic_key_id.clone(),
            retire_at_ms: retire_at,
            done_at_ms: None,
            outcome: None,
        };
        let old_entry = self.secrets.entry(&parse_ref(&row.secret_ref)?);
        row.secret_ref = new_ref;
        row.fingerprint = fingerprint;
        row.anthropic_key_id = anthropic_key_id;
        row.rotated_at_ms = Some(now);
        row.status = "active".into();
        let draft = self.draft(
            actor,
            "upstream.rotate",
            vec![row.id.clone()],
            json!({ "name": row.name, "grace_s": grace.as_secs(), "secret_source": source_kind(&row.secret_ref), "fingerprint": row.fingerprint }),
        );
        self.store.update_upstream(&row, sealed.as_ref(), Some(&retirement), &draft).await?;
        self.audited();
        let previous = (!grace.is_zero()).then_some((old_entry, retire_at));
        // only if it serves its environment now (a newer upstream may)
        let env = parse_env(&row.env)?;
        if self.upstreams.get(env).is_some_and(|u| u.id == row.id) {
            self.index_upstream(&row, previous)?;
        }
        if grace.is_zero() {
            self.process_retirements(now).await;
        }
        Ok(view(&row))
    }

    /// Mark an upstream key compromised (found by the leak scanner, or by
    /// hand). It keeps serving — refusing it would take the environment down —
    /// until it is rotated; the mark shows in listings and the audit log, and
    /// an alert with the rotation steps is raised.
    pub async fn mark_upstream_compromised(
        &self,
        actor: &Actor,
        name: &str,
        found_in: Option<&str>,
    ) -> Result<UpstreamView, OpError> {
        let _w = self.write_lock.lock().await;
        let mut row = self.upstream_row(name).await?;
        if row.status == "retired" {
            return Err(OpError::Invalid(format!("upstream {name:?} is retired")));
        }
        row.status = "compromised".into();
        let draft = self.draft(
            actor,
            "upstream.compromised",
            vec![row.id.clone()],
            json!({ "name": row.name, "env": row.env, "fingerprint": row.fingerprint, "found_in": found_in }),
        );
        self.store.update_upstream(&row, None, None, &draft).await?;
        self.audited();
        tracing::error!(upstream_id = %row.id, upstream = %row.name, "upstream key marked compromised: rotate it now");
        self.raise_compromised_alert(&row, found_in).await;
        Ok(view(&row))
    }

    /// A critical alert with the rotation steps, through the same store and
    /// sinks as the monitor's (deduplicated per upstream while open).
    async fn raise_compromised_alert(&self, row: &UpstreamRow, found_in: Option<&str>) {
        let now = now_ms();
        let summary = format!(
            "upstream key {} ({}) was found outside the secret store{}: 1) keyward upstream rotate {} with a new key \
             from the Anthropic Console; 2) the old key is set inactive after the grace window (or revoke it in the \
             Console now); 3) remove it from where it was found and from history.",
            row.name,
            row.env,
            found_in.map(|f| format!(" (in {f})")).unwrap_or_default(),
            row.name
        );
        let alert = keyward_store::AlertRow {
            id: keyward_core::ids::new_id("alr"),
            dedup_key: format!("keyward:compromised:upstream:{}", row.id),
            rule: "upstream_compromised".into(),
            severity: "critical".into(),
            key_id: None,
            upstream: Some(row.name.clone()),
            summary,
            value: 1.0,
            threshold: 0.0,
            action: None,
            status: "open".into(),
            raised_at_ms: now,
            last_seen_ms: now,
            resolved_at_ms: None,
            acked_at_ms: None,
            acked_by: None,
            occurrences: 1,
        };
        let deliveries = self.alerts.deliveries_for(&alert, "trigger", now);
        match self.store.raise_alert(&alert, &deliveries).await {
            Ok(_) => self.metrics.alert_raised("upstream_compromised", "critical"),
            Err(e) => tracing::error!(upstream_id = %row.id, error = %e, "raising the compromised-key alert failed"),
        }
    }

    /// Take an upstream key out of service (decommission). Refused while
    /// active virtual keys still route to it, unless `force`.
    pub async fn retire_upstream(&self, actor: &Actor, name: &str, force: bool) -> Result<UpstreamView, OpError> {
        let _w = self.write_lock.lock().await;
        let mut row = self.upstream_row(name).await?;
        let env = parse_env(&row.env)?;
        let serving = self.upstreams.get(env).is_some_and(|u| u.id == row.id);
        if serving && !force {
            let routed = self
                .store
                .list_keys()
                .await?
                .iter()
                .filter(|k| k.env == row.env && k.status != KeyStatus::Revoked)
                .count();
            if routed > 0 {
                return Err(OpError::Invalid(format!(
                    "{routed} virtual key(s) of environment {} still route to upstream {name:?}; add another upstream for {} first, revoke them, or use --force",
                    row.env, row.env
                )));
            }
        }
        row.status = "retired".into();
        let now = now_ms();
        let retirement = UpstreamRetirement {
            id: 0,
            upstream_id: row.id.clone(),
            secret_ref: row.secret_ref.clone(),
            anthropic_key_id: row.anthropic_key_id.clone(),
            retire_at_ms: now,
            done_at_ms: None,
            outcome: None,
        };
        let draft =
            self.draft(actor, "upstream.retire", vec![row.id.clone()], json!({ "name": row.name, "force": force }));
        self.store.update_upstream(&row, None, Some(&retirement), &draft).await?;
        self.audited();
        self.upstreams.remove(env, &row.id);
        // another active upstream of the environment takes over, if there is one
        let mut others: Vec<UpstreamRow> = self
            .store
            .list_upstreams()
            .await?
            .into_iter()
            .filter(|u| u.env == row.env && (u.status == "active" || u.status == "compromised"))
            .collect();
        others.sort_by_key(|u| u.created_at_ms);
        if let Some(next) = others.last() {
            self.index_upstream(next, None)?;
        }
        self.process_retirements(now).await;
        Ok(view(&row))
    }

    /// Drop rotated-out upstream keys whose grace window has ended, and set
    /// them inactive at Anthropic when an admin key is configured.
    pub(crate) async fn process_retirements(&self, now: i64) {
        let due = match self.store.pending_retirements().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending upstream retirements failed");
                return;
            }
        };
        for r in due.into_iter().filter(|r| r.retire_at_ms <= now) {
            // stop using it: clear the "previous" of the environment it served
            for (env, u) in self.upstreams.all() {
                if u.id == r.upstream_id && u.previous.is_some() {
                    self.upstreams.set(
                        env,
                        UpstreamEntry {
                            id: u.id.clone(),
                            name: u.name.clone(),
                            secret: u.secret.clone(),
                            previous: None,
                        },
                    );
                }
            }
            let outcome = match &r.anthropic_key_id {
                None => "dropped (no Anthropic key id recorded)".to_string(),
                Some(kid) => match self.deactivate_at_anthropic(kid).await {
                    Ok(()) => format!("dropped; set inactive at Anthropic ({kid})"),
                    Err(e) => {
                        tracing::error!(upstream_id = %r.upstream_id, anthropic_key_id = %kid, reason = %e, "could not set the old upstream key inactive; will retry");
                        continue;
                    }
                },
            };
            tracing::info!(upstream_id = %r.upstream_id, %outcome, "rotated-out upstream key retired");
            let draft = self.draft(
                &Actor::system("scheduler"),
                "upstream.retired",
                vec![r.upstream_id.clone()],
                json!({ "outcome": outcome, "anthropic_key_id": r.anthropic_key_id }),
            );
            if let Err(e) = self.store.finish_retirement(r.id, now, &outcome, &draft).await {
                tracing::warn!(error = %e, "recording an upstream retirement failed");
            }
            self.audited();
        }
    }

    /// `POST /v1/organizations/api_keys/{id}` with `{"status":"inactive"}`.
    async fn deactivate_at_anthropic(&self, anthropic_key_id: &str) -> Result<(), String> {
        let Some(r) = &self.cfg.admin_key_ref else {
            return Err("no Anthropic admin key configured ([upstream] admin_key_ref)".into());
        };
        let entry = self.secrets.entry(&parse_ref(r).map_err(|e| e.to_string())?);
        let cred = self.secrets.get(&entry).await.map_err(|e| e.to_string())?;
        if !anthropic_key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("malformed Anthropic key id".into());
        }
        let uri = format!("{}/v1/organizations/api_keys/{anthropic_key_id}", self.cfg.admin_url);
        let req = http::Request::post(uri)
            .header("x-api-key", cred.header().clone())
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(crate::upstream::full(Bytes::from_static(b"{\"status\":\"inactive\"}")))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("unreachable: {e}"))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the Admin API answered {status}"))
        }
    }
}

/// The kind of place a secret reference points to (`local`, `aws-sm`, ...):
/// what an audit entry says about it.
pub(crate) fn source_kind(reference: &str) -> &str {
    reference.split(':').next().unwrap_or("")
}
