//! The shared state of a running gateway, and the service layer that changes
//! it: every change is written to the store first, then to the in-memory
//! indexes the request path reads.

use crate::index::{KeyEntry, KeyIndex, TokenEntry, TokenIndex, UpstreamEntry, UpstreamIndex};
use crate::meter::{Meter, MeterWriter};
use crate::metrics::Metrics;
use crate::upstream::{self, UpstreamClient};
use keyward_core::config::Config;
use keyward_core::crypto::{Digester, Envelope, MasterKey};
use keyward_core::{ids, keys, Environment};
use keyward_secrets::{DefaultSources, SecretCache, SecretRef};
use keyward_store::{
    KeyRow, KeyStatus, LocalSecretRow, ServiceRow, Store, StoreError, TokenRow, UpstreamRow,
    UsageSummary,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct App {
    pub cfg: Config,
    pub store: Arc<dyn Store>,
    pub digester: Digester,
    pub envelope: Arc<Envelope>,
    pub keys: KeyIndex,
    pub tokens: TokenIndex,
    pub upstreams: UpstreamIndex,
    pub secrets: SecretCache,
    pub meter: Meter,
    pub metrics: Metrics,
    pub client: UpstreamClient,
    pub upstream_base: String,
    services: RwLock<HashMap<String, ServiceRow>>,
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
}

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

fn parse_env(s: &str) -> Result<Environment, OpError> {
    s.parse()
        .map_err(|e: keyward_core::env::UnknownEnvironment| OpError::Invalid(e.to_string()))
}

fn valid_name(what: &str, s: &str) -> Result<(), OpError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
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
        let sources = Arc::new(DefaultSources::new(store.clone(), envelope.clone()));
        let secrets = SecretCache::new(sources, cfg.secrets_cache_ttl, cfg.secrets_stale_window);
        let (meter, writer) = Meter::new(
            store.clone(),
            Arc::new(cfg.prices.clone()),
            cfg.metering_batch_size,
            cfg.metering_flush_interval,
        );
        let client = upstream::client(&cfg).map_err(|e| OpError::Invalid(e.to_string()))?;
        let app = Arc::new(App {
            upstream_base: cfg.upstream_url.clone(),
            cfg,
            store,
            digester,
            envelope,
            keys: KeyIndex::default(),
            tokens: TokenIndex::default(),
            upstreams: UpstreamIndex::default(),
            secrets,
            meter,
            metrics: Metrics::default(),
            client,
            services: RwLock::new(HashMap::new()),
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
        for k in self.store.list_keys().await? {
            self.index_key(&k);
        }
        for t in self.store.list_tokens().await? {
            if t.status == "active" {
                self.tokens.insert(
                    keyward_core::crypto::KeyDigest(t.digest),
                    TokenEntry {
                        id: t.id,
                        role: t.role,
                        services: t.services,
                        expires_at_ms: t.expires_at_ms,
                    },
                );
            }
        }
        // the newest active upstream of each environment serves it
        let mut ups = self.store.list_upstreams().await?;
        ups.sort_by_key(|u| u.created_at_ms);
        for u in ups.into_iter().filter(|u| u.status == "active") {
            self.index_upstream(&u)?;
        }
        Ok(())
    }

    fn service(&self, id: &str) -> Option<ServiceRow> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn service_by_name(&self, name: &str) -> Option<ServiceRow> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|s| s.name == name)
            .cloned()
    }

    fn index_key(&self, k: &KeyRow) {
        let Ok(env) = k.env.parse::<Environment>() else {
            tracing::error!(key_id = %k.id, "key has an unknown environment; not loaded (fail closed)");
            return;
        };
        let service_name = self
            .service(&k.service_id)
            .map(|s| s.name)
            .unwrap_or_default();
        self.keys.insert(
            keyward_core::crypto::KeyDigest(k.digest),
            KeyEntry::new(
                k.id.clone(),
                k.service_id.clone(),
                service_name,
                env,
                k.status,
            ),
        );
    }

    fn index_upstream(&self, u: &UpstreamRow) -> Result<(), OpError> {
        let env = parse_env(&u.env)?;
        let r: SecretRef = u
            .secret_ref
            .parse()
            .map_err(|e: keyward_secrets::RefError| OpError::Invalid(e.to_string()))?;
        self.upstreams.set(
            env,
            UpstreamEntry {
                id: u.id.clone(),
                name: u.name.clone(),
                secret: self.secrets.entry(&r),
            },
        );
        Ok(())
    }

    pub async fn create_service(&self, name: &str, owner: &str) -> Result<ServiceView, OpError> {
        valid_name("service", name)?;
        if owner.trim().is_empty() {
            return Err(OpError::Invalid(
                "a service needs an owner (--owner TEAM)".into(),
            ));
        }
        let row = ServiceRow {
            id: ids::service_id(),
            name: name.to_string(),
            owner: owner.trim().to_string(),
            status: "active".into(),
            created_at_ms: now_ms(),
        };
        self.store.create_service(&row).await?;
        self.services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(row.id.clone(), row.clone());
        Ok(self.service_view(&row))
    }

    fn service_view(&self, s: &ServiceRow) -> ServiceView {
        let keys = self
            .keys
            .all()
            .iter()
            .filter(|k| k.service_id == s.id)
            .count();
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
        let mut all: Vec<ServiceRow> = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.iter().map(|s| self.service_view(s)).collect()
    }

    pub fn get_service(&self, name_or_id: &str) -> Result<ServiceView, OpError> {
        self.service(name_or_id)
            .or_else(|| self.service_by_name(name_or_id))
            .map(|s| self.service_view(&s))
            .ok_or_else(|| OpError::NotFound(format!("service {name_or_id:?}")))
    }

    /// Add an upstream (real Anthropic) key: by value, sealed into the local
    /// store, or by reference to where it lives.
    pub async fn create_upstream(
        &self,
        name: &str,
        env: &str,
        value: Option<SecretString>,
        reference: Option<&str>,
    ) -> Result<UpstreamView, OpError> {
        valid_name("upstream", name)?;
        let env = parse_env(env)?;
        let now = now_ms();
        let (secret_ref, sealed, fingerprint) = match (value, reference) {
            (Some(v), None) => {
                let v = SecretString::from(v.expose_secret().trim().to_string());
                if v.expose_secret().is_empty() {
                    return Err(OpError::Invalid("the upstream key is empty".into()));
                }
                keyward_secrets::Credential::new(v.clone()).map_err(|_| {
                    OpError::Invalid(
                        "the upstream key contains characters not allowed in a header".into(),
                    )
                })?;
                let r = format!("local:{name}");
                let s = self.envelope.seal(&v, &r);
                let row = LocalSecretRow {
                    name: name.to_string(),
                    wrapped_key: s.wrapped_key,
                    ciphertext: s.ciphertext,
                    created_at_ms: now,
                };
                (
                    r,
                    Some(row),
                    Some(keyward_core::crypto::fingerprint(v.expose_secret())),
                )
            }
            (None, Some(r)) => {
                let parsed: SecretRef = r
                    .parse()
                    .map_err(|e: keyward_secrets::RefError| OpError::Invalid(e.to_string()))?;
                (parsed.to_string(), None, None)
            }
            _ => {
                return Err(OpError::Invalid(
                    "give the upstream key either by value (stdin) or by --ref, not both".into(),
                ))
            }
        };
        let row = UpstreamRow {
            id: ids::upstream_id(),
            name: name.to_string(),
            env: env.as_str().to_string(),
            secret_ref,
            fingerprint,
            status: "active".into(),
            created_at_ms: now,
        };
        self.store.create_upstream(&row, sealed.as_ref()).await?;
        self.index_upstream(&row)?;
        Ok(upstream_view(&row))
    }

    pub async fn list_upstreams(&self) -> Result<Vec<UpstreamView>, OpError> {
        Ok(self
            .store
            .list_upstreams()
            .await?
            .iter()
            .map(upstream_view)
            .collect())
    }

    /// Mint a virtual key. The secret is returned once, here, and never stored.
    pub async fn create_key(
        &self,
        service: &str,
        env: &str,
        name: Option<&str>,
    ) -> Result<(KeyView, SecretString), OpError> {
        let env = parse_env(env)?;
        let svc = self
            .service_by_name(service)
            .or_else(|| self.service(service))
            .ok_or_else(|| OpError::NotFound(format!("service {service:?}")))?;
        if svc.status != "active" {
            return Err(OpError::Invalid(format!(
                "service {:?} is {}",
                svc.name, svc.status
            )));
        }
        let secret = keys::generate_virtual(env);
        let row = KeyRow {
            id: ids::key_id(),
            service_id: svc.id.clone(),
            env: env.as_str().to_string(),
            name: name.map(str::to_string),
            digest: self.digester.digest(secret.expose_secret()).0,
            status: KeyStatus::Active,
            created_at_ms: now_ms(),
            status_changed_at_ms: None,
            status_reason: None,
            last_used_ms: None,
        };
        self.store.create_key(&row).await?;
        self.index_key(&row);
        Ok((self.key_view(&row), secret))
    }

    fn key_view(&self, k: &KeyRow) -> KeyView {
        let svc = self.service(&k.service_id);
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
        }
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyView>, OpError> {
        Ok(self
            .store
            .list_keys()
            .await?
            .iter()
            .map(|k| self.key_view(k))
            .collect())
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyView, OpError> {
        self.list_keys()
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpError::NotFound(format!("key {id:?}")))
    }

    /// Revoke a key: stored first, then refused from the next request on.
    pub async fn revoke_key(&self, id: &str, reason: Option<&str>) -> Result<KeyView, OpError> {
        self.set_key_status(id, KeyStatus::Revoked, reason).await
    }

    pub async fn set_key_status(
        &self,
        id: &str,
        status: KeyStatus,
        reason: Option<&str>,
    ) -> Result<KeyView, OpError> {
        let current = self.get_key(id).await?;
        if current.status == KeyStatus::Revoked && status != KeyStatus::Revoked {
            return Err(OpError::Invalid(format!(
                "key {id} is revoked; revocation is permanent"
            )));
        }
        self.store
            .update_key_status(id, status, now_ms(), reason)
            .await?;
        self.keys.set_status(id, status);
        self.get_key(id).await
    }

    pub async fn usage_by_key(&self, since_ms: i64) -> Result<Vec<UsageSummary>, OpError> {
        Ok(self.store.usage_by_key(since_ms).await?)
    }

    /// Create an admin token. The secret is returned once.
    pub async fn create_token(
        &self,
        role: &str,
        services: Vec<String>,
    ) -> Result<(String, SecretString), OpError> {
        if !["owner", "operator", "auditor", "service-owner"].contains(&role) {
            return Err(OpError::Invalid(format!("unknown role {role:?}")));
        }
        let secret = keys::generate_admin_token();
        let row = TokenRow {
            id: ids::token_id(),
            role: role.to_string(),
            services,
            digest: self.digester.digest(secret.expose_secret()).0,
            status: "active".into(),
            created_at_ms: now_ms(),
            expires_at_ms: None,
        };
        self.store.create_token(&row).await?;
        self.tokens.insert(
            keyward_core::crypto::KeyDigest(row.digest),
            TokenEntry {
                id: row.id.clone(),
                role: row.role.clone(),
                services: row.services.clone(),
                expires_at_ms: None,
            },
        );
        Ok((row.id, secret))
    }
}

fn upstream_view(u: &UpstreamRow) -> UpstreamView {
    UpstreamView {
        id: u.id.clone(),
        name: u.name.clone(),
        env: u.env.clone(),
        secret_ref: u.secret_ref.clone(),
        fingerprint: u.fingerprint.clone(),
        status: u.status.clone(),
        created_at: rfc3339(u.created_at_ms),
    }
}
