//! The shared state of a running gateway, and the service layer that changes
//! it: every change is written to the store first, then to the in-memory
//! indexes the request path reads.

use crate::audit::Actor;
use crate::index::{KeyIndex, TokenEntry, TokenIndex, UpstreamIndex};
use crate::meter::{Meter, MeterWriter};
use crate::metrics::Metrics;
use crate::upstream::{self, UpstreamClient};
use keyward_core::config::Config;
use keyward_core::crypto::{Digester, Envelope, MasterKey};
use keyward_core::{ids, keys, Environment};
use keyward_secrets::{DefaultSources, SecretCache};
use keyward_store::{ServiceRow, Store, StoreError, TokenRow, UsageSummary};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct App {
    pub cfg: Config,
    pub audit: crate::audit::AuditLog,
    pub store: Arc<dyn Store>,
    pub digester: Digester,
    pub envelope: Arc<Envelope>,
    pub keys: KeyIndex,
    pub tokens: TokenIndex,
    pub auth_guard: crate::authguard::AuthGuard,
    pub upstreams: UpstreamIndex,
    pub secrets: SecretCache,
    /// Where rotated virtual keys are delivered (`--deliver-to`).
    pub sink: Arc<dyn keyward_secrets::SecretSink>,
    pub meter: Meter,
    pub metrics: Arc<Metrics>,
    /// The monitor's queue (usage, stale secrets, upstream usage reports).
    pub monitor: crate::monitor::MonitorFeed,
    /// Taken by the monitor task when `serve` starts it.
    pub(crate) monitor_rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<crate::monitor::MonitorInput>>>,
    pub monitor_cfg: keyward_monitor::MonitorConfig,
    /// `[alerts]`: the sinks and the retry policy.
    pub alerts: crate::alerts::AlertsConfig,
    /// Wakes the alert delivery worker when something was queued.
    pub(crate) alert_wake: tokio::sync::Notify,
    pub client: UpstreamClient,
    /// The runtime `App::load` ran on: background work started from a data-plane
    /// thread (audit entries) runs there, and outlives that thread's runtime.
    pub background: tokio::runtime::Handle,
    pub upstream_base: String,
    /// The injection classifier, shared by every request: the fast stage, and the
    /// deep stage when its weights are built in.
    pub shield: Arc<keyward_detect::shield::Pipeline>,
    /// Scores of long parts each key has sent before (`[shield] cache_entries`).
    pub shield_cache: crate::shield::ScoreCache,
    /// Established key policies, shared by the keys that have the same one.
    pub(crate) policies: std::sync::Mutex<crate::keys::SharedPolicies>,
    services: RwLock<HashMap<String, ServiceRow>>,
    /// Serialises changes to keys and upstreams (rotations, updates) so that
    /// read-modify-write cycles never interleave.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// (key id, days ahead) rotation warnings already logged by this process.
    pub(crate) warned: std::sync::Mutex<std::collections::HashSet<(String, i64)>>,
    /// Secret-source (failures, unavailable) totals already audited.
    pub(crate) secret_failures_seen: std::sync::Mutex<(u64, u64)>,
}

/// Errors of the service layer, mapped to statuses by the admin plane.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("not permitted")]
    Forbidden,
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(w) => OpError::Conflict(w),
            StoreError::NotFound(w) => OpError::NotFound(w),
            other => OpError::Store(other.to_string()),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub status: String,
    pub created_at: String,
    pub keys: usize,
}

pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn parse_env(s: &str) -> Result<Environment, OpError> {
    s.parse().map_err(|e: keyward_core::env::UnknownEnvironment| OpError::Invalid(e.to_string()))
}

pub(crate) fn valid_name(what: &str, s: &str) -> Result<(), OpError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "{what} name {s:?} must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

impl App {
    /// Build the state from the store: indexes for keys, tokens and upstreams.
    pub async fn load(
        cfg: Config,
        store: Arc<dyn Store>,
        master: &MasterKey,
    ) -> Result<(Arc<App>, MeterWriter), OpError> {
        let digester = master.digester();
        let envelope = Arc::new(master.envelope());
        let sources = Arc::new(DefaultSources::new(store.clone(), envelope.clone()).allow_exec(cfg.secrets_allow_exec));
        let sink: Arc<dyn keyward_secrets::SecretSink> = sources.clone();
        let secrets = SecretCache::new(sources, cfg.secrets_cache_ttl, cfg.secrets_stale_window);
        let (meter, mut writer) = Meter::new(
            store.clone(),
            Arc::new(cfg.prices.clone()),
            cfg.metering_batch_size,
            cfg.metering_flush_interval,
        );
        let monitor_cfg =
            crate::monitor::monitor_config(&cfg).map_err(|e| OpError::Invalid(format!("[monitor]: {e}")))?;
        let alerts = crate::alerts::AlertsConfig::from_toml_value(cfg.alerts.as_ref())
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let metrics = Arc::new(Metrics::default());
        let (monitor, monitor_rx) = crate::monitor::MonitorFeed::new();
        writer.observe(metrics.clone(), monitor.clone());
        let client = upstream::client(&cfg);
        let audit = crate::audit::load_signer(&store, &envelope, cfg.audit_checkpoint_every).await?;
        let auth_guard = crate::authguard::AuthGuard::new(cfg.auth_fail_burst);
        let app = Arc::new(App {
            audit,
            upstream_base: cfg.upstream_url.clone(),
            shield: Arc::new(
                keyward_detect::shield::Pipeline::builtin()
                    .map_err(|e| OpError::Invalid(format!("the injection classifier's weights: {e}")))?,
            ),
            shield_cache: crate::shield::ScoreCache::new(cfg.shield_cache_entries),
            policies: Default::default(),
            cfg,
            store,
            digester,
            envelope,
            keys: KeyIndex::default(),
            tokens: TokenIndex::default(),
            auth_guard,
            upstreams: UpstreamIndex::default(),
            secrets,
            sink,
            meter,
            metrics,
            monitor,
            monitor_rx: std::sync::Mutex::new(Some(monitor_rx)),
            monitor_cfg,
            alerts,
            alert_wake: tokio::sync::Notify::new(),
            client,
            background: tokio::runtime::Handle::current(),
            services: RwLock::new(HashMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            warned: Default::default(),
            secret_failures_seen: Default::default(),
        });
        app.reload().await?;
        Ok((app, writer))
    }

    /// (Re)load every index from the store.
    pub async fn reload(&self) -> Result<(), OpError> {
        let services = self.store.list_services().await?;
        {
            let mut map = self.services.write().unwrap_or_else(|p| p.into_inner());
            map.clear();
            map.extend(services.into_iter().map(|s| (s.id.clone(), s)));
        }
        let month_start = keyward_core::prices::month_start_ms(now_ms());
        let spend: HashMap<String, f64> = self.store.spend_since(month_start).await?.into_iter().collect();
        let month = keyward_core::prices::month_of_ms(now_ms());
        let mut pages = crate::keys::KeyPages::default();
        while let Some(page) = pages.next(self.store.as_ref()).await? {
            for k in &page {
                if let Some(e) = self.index_key(k) {
                    e.spend.set(month.clone(), spend.get(&k.id).copied().unwrap_or(0.0));
                }
            }
        }
        for (digest, key_id) in self.store.list_retired_digests().await? {
            if let Some(e) = self.keys.get(&key_id) {
                self.keys.set_slot(keyward_core::crypto::KeyDigest(digest), &e, crate::index::Slot::Retired);
            }
        }
        for t in self.store.list_tokens().await? {
            if t.status == "active" {
                self.tokens.insert(
                    keyward_core::crypto::KeyDigest(t.digest),
                    TokenEntry { id: t.id, role: t.role, services: t.services, expires_at_ms: t.expires_at_ms },
                );
            }
        }
        // the newest active upstream of each environment serves it
        let mut ups = self.store.list_upstreams().await?;
        ups.sort_by_key(|u| u.created_at_ms);
        // a compromised key serves until it is rotated (refusing it would be an outage)
        for u in ups.into_iter().filter(|u| u.status == "active" || u.status == "compromised") {
            self.index_upstream(&u, None)?;
        }
        Ok(())
    }

    /// The monitor's queue receiver, once (the monitor task takes it).
    pub fn take_monitor_rx(&self) -> Option<tokio::sync::mpsc::Receiver<crate::monitor::MonitorInput>> {
        self.monitor_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Service id -> name, for metric labels.
    pub fn service_names(&self) -> HashMap<String, String> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect()
    }

    pub(crate) fn service(&self, id: &str) -> Option<ServiceRow> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub(crate) fn service_by_name(&self, name: &str) -> Option<ServiceRow> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).values().find(|s| s.name == name).cloned()
    }

    pub(crate) async fn set_service_status(&self, actor: &Actor, id: &str, status: &str) -> Result<(), OpError> {
        let draft = self.draft(actor, "service.status", vec![id.to_string()], json!({ "status": status }));
        self.store.set_service_status(id, status, &draft).await?;
        self.audited();
        if let Some(s) = self.services.write().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            s.status = status.to_string();
        }
        Ok(())
    }

    pub async fn create_service(&self, actor: &Actor, name: &str, owner: &str) -> Result<ServiceView, OpError> {
        valid_name("service", name)?;
        if owner.trim().is_empty() {
            return Err(OpError::Invalid("a service needs an owner (--owner TEAM)".into()));
        }
        let row = ServiceRow {
            id: ids::service_id(),
            name: name.to_string(),
            owner: owner.trim().to_string(),
            status: "active".into(),
            created_at_ms: now_ms(),
        };
        let draft =
            self.draft(actor, "service.create", vec![row.id.clone()], json!({ "name": row.name, "owner": row.owner }));
        self.store.create_service(&row, &draft).await?;
        self.audited();
        self.services.write().unwrap_or_else(|p| p.into_inner()).insert(row.id.clone(), row.clone());
        Ok(self.service_view(&row))
    }

    fn service_view(&self, s: &ServiceRow) -> ServiceView {
        let keys = self.keys.all().iter().filter(|k| k.service_id == s.id).count();
        ServiceView {
            id: s.id.clone(),
            name: s.name.clone(),
            owner: s.owner.clone(),
            status: s.status.clone(),
            created_at: rfc3339(s.created_at_ms),
            keys,
        }
    }

    pub fn list_services(&self) -> Vec<ServiceView> {
        let mut all: Vec<ServiceRow> =
            self.services.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.iter().map(|s| self.service_view(s)).collect()
    }

    pub fn get_service(&self, name_or_id: &str) -> Result<ServiceView, OpError> {
        self.service(name_or_id)
            .or_else(|| self.service_by_name(name_or_id))
            .map(|s| self.service_view(&s))
            .ok_or_else(|| OpError::NotFound(format!("service {name_or_id:?}")))
    }

    pub async fn usage_by_key(&self, since_ms: i64) -> Result<Vec<UsageSummary>, OpError> {
        Ok(self.store.usage_by_key(since_ms).await?)
    }

    /// Create an admin token. The secret is returned once.
    pub async fn create_token(&self, actor: &Actor, n: NewToken) -> Result<(TokenView, SecretString), OpError> {
        if !ROLES.contains(&n.role.as_str()) {
            return Err(OpError::Invalid(format!(
                "unknown role {:?}: use owner, operator, auditor or service-owner",
                n.role
            )));
        }
        let services: Vec<String> = n.services.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if n.role == "service-owner" && services.is_empty() {
            return Err(OpError::Invalid("a service-owner token names its services (--services A,B)".into()));
        }
        if n.role != "service-owner" && !services.is_empty() {
            return Err(OpError::Invalid("only service-owner tokens are scoped to services".into()));
        }
        for s in &services {
            if self.service_by_name(s).is_none() {
                return Err(OpError::NotFound(format!("service {s:?}")));
            }
        }
        let now = now_ms();
        let secret = keys::generate_admin_token();
        let row = TokenRow {
            id: ids::token_id(),
            role: n.role.clone(),
            services,
            digest: self.digester.digest(secret.expose_secret()).0,
            status: "active".into(),
            created_at_ms: now,
            expires_at_ms: n.expires_in.map(|d| now + d.as_millis() as i64),
            name: n.name,
            revoked_at_ms: None,
            last_used_ms: None,
        };
        let draft = self.draft(
            actor,
            "token.create",
            vec![row.id.clone()],
            json!({ "role": row.role, "services": row.services, "name": row.name, "expires_at": row.expires_at_ms.map(rfc3339) }),
        );
        self.store.create_token(&row, &draft).await?;
        self.audited();
        self.tokens.insert(
            keyward_core::crypto::KeyDigest(row.digest),
            TokenEntry {
                id: row.id.clone(),
                role: row.role.clone(),
                services: row.services.clone(),
                expires_at_ms: row.expires_at_ms,
            },
        );
        Ok((token_view(&row), secret))
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, OpError> {
        Ok(self.store.list_tokens().await?.iter().map(token_view).collect())
    }

    /// Revoke an admin token: refused from the next request on.
    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<TokenView, OpError> {
        let row = self
            .store
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| OpError::NotFound(format!("token {id}")))?;
        if row.status == "revoked" {
            return Ok(token_view(&row));
        }
        let draft = self.draft(actor, "token.revoke", vec![id.to_string()], json!({ "role": row.role }));
        let now = now_ms();
        self.store.revoke_token(id, now, &draft).await?;
        self.audited();
        self.tokens.remove_id(id);
        Ok(token_view(&TokenRow { status: "revoked".into(), revoked_at_ms: Some(now), ..row }))
    }
}

pub const ROLES: [&str; 4] = ["owner", "operator", "auditor", "service-owner"];

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: String,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub expires_in: Option<std::time::Duration>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `"30d"` style durations in JSON.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|s| humantime::parse_duration(s.trim()).map_err(serde::de::Error::custom)).transpose()
    }
}

/// An admin token as listings show it: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub services: Vec<String>,
    pub name: Option<String>,
    pub status: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

fn token_view(t: &TokenRow) -> TokenView {
    TokenView {
        id: t.id.clone(),
        role: t.role.clone(),
        services: t.services.clone(),
        name: t.name.clone(),
        status: t.status.clone(),
        created_at: rfc3339(t.created_at_ms),
        expires_at: t.expires_at_ms.map(rfc3339),
        revoked_at: t.revoked_at_ms.map(rfc3339),
        last_used_at: t.last_used_ms.map(rfc3339),
    }
}
