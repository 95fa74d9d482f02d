//! The backends that fetch a secret's current value, and write delivered ones.

use crate::backends::{aws::Aws, azure::Azure, exec, file, gcp::Gcp, vault::Vault};
use crate::backends::{azure::AzureConfig, gcp::GcpConfig, vault::VaultConfig};
use crate::SecretRef;
use async_trait::async_trait;
use keyward_core::crypto::{Envelope, Sealed};
use keyward_store::{Store, StoreError};
use secrecy::SecretString;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Why a fetch (or a delivery) failed, by class. Never carries the value, and
/// the detail strings are written by keyward, never copied from a response.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("not found")]
    NotFound,
    #[error("access denied")]
    Denied,
    #[error("source unreachable: {0}")]
    Unreachable(String),
    #[error("malformed value: {0}")]
    Malformed(String),
    /// The backend lacks what it needs to authenticate or to find the source
    /// (an unset `VAULT_ADDR`, no credentials, no region).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// A delivery to a source keyward only reads.
    #[error("the {0} source is read-only: keyward does not write to it")]
    ReadOnly(&'static str),
    #[error("the {0} backend is not available in this build")]
    Unsupported(&'static str),
}

impl FetchError {
    /// The class alone, for exit messages, logs and metric labels.
    pub fn class(&self) -> &'static str {
        match self {
            FetchError::NotFound => "not_found",
            FetchError::Denied => "denied",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Malformed(_) => "malformed",
            FetchError::NotConfigured(_) => "not_configured",
            FetchError::ReadOnly(_) => "read_only",
            FetchError::Unsupported(_) => "unsupported",
        }
    }
}

/// One fetch: the current value, the source's version id for it when the
/// source has versions, and the previous version's value when the source
/// keeps one (AWS `AWSPREVIOUS`, Vault KV v2 and GCP version N-1).
pub struct Fetched {
    pub value: SecretString,
    pub version: Option<String>,
    pub previous: Option<SecretString>,
}

impl Fetched {
    pub fn current(value: SecretString) -> Self {
        Fetched { value, version: None, previous: None }
    }
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("version", &self.version)
            .field("has_previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    async fn fetch(&self, r: &SecretRef) -> Result<SecretString, FetchError>;

    /// The value with its version id and the previous value, where the
    /// source has them. The default knows only the value.
    async fn fetch_versioned(&self, r: &SecretRef) -> Result<Fetched, FetchError> {
        self.fetch(r).await.map(Fetched::current)
    }
}

/// A delivery target: where a rotated secret is written so its consumer can
/// read it from its own secret manager.
#[async_trait]
pub trait SecretSink: Send + Sync + 'static {
    /// Write `value` as the new current value of `r`; returns the version id
    /// the target gave it, when it has versions.
    async fn deliver(&self, r: &SecretRef, value: &SecretString) -> Result<Option<String>, FetchError>;
}

/// Every backend keyward ships: `local:` (sealed in the store), `env:`,
/// `file:`, `exec:`, `aws-sm://`, `vault://`, `gcp-sm://`, `azure-kv://`.
/// External backends read their configuration from the environment on first
/// use, unless it was given with the `with_*` methods.
pub struct DefaultSources {
    local: Option<(Arc<dyn Store>, Arc<Envelope>)>,
    exec_allowed: bool,
    exec_timeout: Duration,
    aws: Aws,
    vault: OnceLock<Result<Vault, FetchError>>,
    gcp: OnceLock<Result<Gcp, FetchError>>,
    azure: OnceLock<Result<Azure, FetchError>>,
}

/// How long an `exec:` command may run before it is killed.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

impl DefaultSources {
    /// The gateway's sources. `exec:` is off until [`DefaultSources::allow_exec`]
    /// turns it on: a reference can arrive through the admin API, and running
    /// a command named there is code execution on the gateway host, so it
    /// takes a decision in the server's own configuration.
    pub fn new(store: Arc<dyn Store>, envelope: Arc<Envelope>) -> Self {
        let mut s = Self::external();
        s.local = Some((store, envelope));
        s.exec_allowed = false;
        s
    }

    /// Without the embedded store, for a command run by the operator
    /// (`keyward secrets check`): `local:` references are refused as not
    /// configured; `exec:` is allowed.
    pub fn external() -> Self {
        DefaultSources {
            local: None,
            exec_allowed: true,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            aws: Aws::from_env(),
            vault: OnceLock::new(),
            gcp: OnceLock::new(),
            azure: OnceLock::new(),
        }
    }

    /// Allow or refuse `exec:` references (reads and deliveries).
    pub fn allow_exec(mut self, allowed: bool) -> Self {
        self.exec_allowed = allowed;
        self
    }

    fn exec_permitted(&self) -> Result<(), FetchError> {
        if self.exec_allowed {
            Ok(())
        } else {
            Err(FetchError::NotConfigured("exec: references are disabled on this gateway".into()))
        }
    }

    pub fn with_exec_timeout(mut self, t: Duration) -> Self {
        self.exec_timeout = t;
        self
    }

    /// Use this AWS Secrets Manager client instead of one from the environment.
    pub fn with_aws(mut self, client: aws_sdk_secretsmanager::Client) -> Self {
        self.aws = Aws::with_client(client);
        self
    }

    pub fn with_vault(self, cfg: VaultConfig) -> Self {
        let _ = self.vault.set(Ok(Vault::new(cfg)));
        self
    }

    pub fn with_gcp(self, cfg: GcpConfig) -> Self {
        let _ = self.gcp.set(Ok(Gcp::new(cfg)));
        self
    }

    pub fn with_azure(self, cfg: AzureConfig) -> Self {
        let _ = self.azure.set(Ok(Azure::new(cfg)));
        self
    }

    fn vault(&self) -> Result<&Vault, FetchError> {
        self.vault.get_or_init(|| VaultConfig::from_env().map(Vault::new)).as_ref().map_err(Clone::clone)
    }

    fn gcp(&self) -> Result<&Gcp, FetchError> {
        self.gcp.get_or_init(|| GcpConfig::from_env().map(Gcp::new)).as_ref().map_err(Clone::clone)
    }

    fn azure(&self) -> Result<&Azure, FetchError> {
        self.azure.get_or_init(|| AzureConfig::from_env().map(Azure::new)).as_ref().map_err(Clone::clone)
    }

    async fn fetch_local(&self, name: &str) -> Result<SecretString, FetchError> {
        let (store, envelope) = self.local.as_ref().ok_or_else(|| {
            FetchError::NotConfigured(
                "local: secrets are sealed in the gateway's store; check them through the server".into(),
            )
        })?;
        let row = store.get_local_secret(name).await.map_err(|e| match e {
            StoreError::NotFound(_) => FetchError::NotFound,
            other => FetchError::Unreachable(other.to_string()),
        })?;
        let sealed = Sealed { wrapped_key: row.wrapped_key, ciphertext: row.ciphertext };
        envelope.open(&sealed, &format!("local:{name}")).map_err(|e| FetchError::Malformed(e.to_string()))
    }
}

/// Trim, and refuse empty values and control characters (a value ends up in
/// an HTTP header).
pub(crate) fn clean(value: &str) -> Result<SecretString, FetchError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FetchError::Malformed("empty value".into()));
    }
    if v.bytes().any(|b| b.is_ascii_control()) {
        return Err(FetchError::Malformed("control characters in value".into()));
    }
    Ok(SecretString::from(v.to_string()))
}

#[async_trait]
impl SecretSource for DefaultSources {
    async fn fetch(&self, r: &SecretRef) -> Result<SecretString, FetchError> {
        self.fetch_versioned(r).await.map(|f| f.value)
    }

    async fn fetch_versioned(&self, r: &SecretRef) -> Result<Fetched, FetchError> {
        match r {
            SecretRef::Local(name) => self.fetch_local(name).await.map(Fetched::current),
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) => clean(&zeroize::Zeroizing::new(v)).map(Fetched::current),
                Err(std::env::VarError::NotPresent) => Err(FetchError::NotFound),
                Err(std::env::VarError::NotUnicode(_)) => Err(FetchError::Malformed("not UTF-8".into())),
            },
            SecretRef::File(path) => file::fetch(path).await.map(Fetched::current),
            SecretRef::Exec(cmd) => {
                self.exec_permitted()?;
                exec::fetch(cmd, self.exec_timeout).await.map(Fetched::current)
            }
            SecretRef::AwsSm { secret_id, field } => self.aws.fetch(secret_id, field.as_deref()).await,
            SecretRef::Vault { mount, path, field } => self.vault()?.fetch(mount, path, field).await,
            SecretRef::GcpSm(name) => self.gcp()?.fetch(name).await,
            SecretRef::AzureKv { vault, secret } => self.azure()?.fetch(vault, secret).await,
        }
    }
}

#[async_trait]
impl SecretSink for DefaultSources {
    async fn deliver(&self, r: &SecretRef, value: &SecretString) -> Result<Option<String>, FetchError> {
        match r {
            SecretRef::File(path) => file::deliver(path, value).await.map(|()| None),
            SecretRef::Exec(cmd) => {
                self.exec_permitted()?;
                exec::deliver(cmd, value, self.exec_timeout).await.map(|()| None)
            }
            SecretRef::AwsSm { secret_id, field } => self.aws.deliver(secret_id, field.as_deref(), value).await,
            SecretRef::Vault { mount, path, field } => self.vault()?.deliver(mount, path, field, value).await,
            other => Err(FetchError::ReadOnly(other.scheme())),
        }
    }
}
