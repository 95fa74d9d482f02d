//! Configuration in two stages: [`RawConfig`] is what the TOML file says
//! (unknown keys are an error, so a typo never silently disables a control);
//! [`Config`] is the validated result with durations, addresses and paths.
//!
//! Config says *where* a secret lives, never what it is.

use crate::policy::KeyPolicy;
use crate::prices::{PriceRow, PriceTable};
use crate::Environment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_UPSTREAM_URL: &str = "https://api.anthropic.com";
/// The Messages API's own request size limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// A large body streamed through holds at most this much per connection on each
/// side (hyper's own default is about 400 KB; see benches/README.md).
pub const DEFAULT_CONN_BUF_BYTES: usize = 128 * 1024;
/// Screening scores remembered for parts keys send again (`[shield] cache_entries`).
pub const DEFAULT_SHIELD_CACHE_ENTRIES: usize = 16_384;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub master: RawMaster,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub secrets: RawSecrets,
    #[serde(default)]
    pub metering: RawMetering,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub keys: RawKeys,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub environments: RawEnvironments,
    #[serde(default)]
    pub shield: RawShield,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<PriceRow>,
    /// `[monitor]`: anomaly detection; validated by keyward-monitor when the
    /// config is loaded (core cannot name its types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<toml::Value>,
    /// `[alerts]`: where alerts are delivered; validated by the gateway when
    /// the config is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<toml::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// Grace window in which a rotated-out secret keeps working (default 15m).
    pub default_grace: Option<String>,
    /// Default rotation period for new keys (default 90d).
    pub rotate_every: Option<String>,
    /// How often the rotation scheduler looks for due keys (default 60s).
    pub rotation_check_interval: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShield {
    /// Scores of parts (of at least 256 bytes) remembered per process, each
    /// scoped to the key that sent it, so a conversation's history is not
    /// screened again with every turn (default 16384; 0 turns it off).
    pub cache_entries: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Sign the chain head after this many new entries (default 100), and at shutdown.
    pub checkpoint_every: Option<u64>,
    /// Also append every entry and checkpoint to this JSON-lines file (fsynced).
    pub jsonl_path: Option<String>,
    /// Also send every entry to syslog: `udp://HOST:PORT` or `unix:/dev/log` (RFC 5424).
    pub syslog: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironments {
    pub dev: Option<RawEnvDefaults>,
    pub stg: Option<RawEnvDefaults>,
    pub prod: Option<RawEnvDefaults>,
}

/// Defaults for keys of one environment; a key's own settings win.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvDefaults {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub budget_usd: Option<f64>,
    pub models: Option<Vec<String>>,
    pub allow_cidr: Option<Vec<String>>,
    /// Log one line of request metadata (key id, model, status, tokens,
    /// latency, client address; never content) per request.
    pub log_request_metadata: Option<bool>,
    /// Rotation period for new keys of this environment.
    pub rotate_every: Option<String>,
    /// Prompt-injection shield defaults (see `keyward key create --help`).
    pub shield: Option<crate::policy::ShieldMode>,
    pub shield_threshold: Option<f32>,
    pub shield_deep: Option<crate::policy::DeepStage>,
    /// The system prompt text pinned for keys of this environment.
    pub pin_system: Option<String>,
    pub client_system: Option<crate::policy::ClientSystem>,
    pub guard_instruction: Option<bool>,
    pub spotlight: Option<bool>,
    pub allow_tools: Option<Vec<String>>,
    pub tool_policy: Option<crate::policy::ToolPolicy>,
    pub tool_rules: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    /// Most each connection buffers, client side and upstream side (hyper's
    /// read and write buffers); request headers must fit.
    pub conn_buf_bytes: Option<usize>,
    /// A request body read whole must have arrived within this long.
    pub body_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    /// Runtime worker threads (default: one per core). Fewer workers mean fewer
    /// cross-thread wake-ups per request; see benches/README.md.
    pub worker_threads: Option<usize>,
    /// Data-plane threads (default: one per core). Each runs its own
    /// single-threaded runtime and upstream connection pool and accepts from
    /// the one listening socket, so a request never changes threads.
    pub data_threads: Option<usize>,
    /// PEM files for TLS on the admin listener (both or neither).
    pub admin_tls_cert: Option<String>,
    pub admin_tls_key: Option<String>,
    /// Failed authentications a source address may make before back-off starts (default 20).
    pub auth_fail_burst: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub connect_timeout: Option<String>,
    /// Where the Anthropic Admin API key lives (`env:VAR`, `local:NAME`, ...): used to
    /// deactivate rotated-out upstream keys after their grace window.
    pub admin_key_ref: Option<String>,
    /// Base URL of the Anthropic Admin API (default: the upstream URL).
    pub admin_url: Option<String>,
    /// Time allowed until the upstream's response headers arrive.
    pub response_timeout: Option<String>,
    /// Longest silence allowed between two chunks of a response body.
    pub idle_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaster {
    pub key_file: Option<String>,
    /// Fetch the master key (64 hex characters) from a secret reference
    /// (`aws-sm://...`, `vault://...`, `env:VAR`, ...) instead of the key file.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite database file (the embedded default).
    pub sqlite_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub cache_ttl: Option<String>,
    pub stale_window: Option<String>,
    /// Allow `exec:` references (runs a command on the gateway host; off by default,
    /// since references arrive through the admin API).
    pub allow_exec: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetering {
    pub flush_interval: Option<String>,
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Toml(String),
    #[error("config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the config file; relative paths are resolved against it.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub conn_buf_bytes: usize,
    /// Screening scores remembered (0: none).
    pub shield_cache_entries: usize,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
    pub worker_threads: Option<usize>,
    /// Data-plane threads (`None`: one per core).
    pub data_threads: Option<usize>,
    /// Certificate chain and private key (PEM) for TLS on the admin plane.
    pub admin_tls: Option<(PathBuf, PathBuf)>,
    /// Allow a non-loopback admin listener without TLS (`serve --insecure-admin`;
    /// never read from the file).
    pub insecure_admin: bool,
    pub auth_fail_burst: u32,
    pub audit_checkpoint_every: u64,
    pub audit_jsonl_path: Option<PathBuf>,
    pub audit_syslog: Option<String>,
    pub upstream_url: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub master_key_file: PathBuf,
    /// Where the master key lives when it is not the local file.
    pub master_ref: Option<String>,
    pub sqlite_path: PathBuf,
    pub secrets_cache_ttl: Duration,
    pub secrets_stale_window: Duration,
    pub secrets_allow_exec: bool,
    /// The raw `[monitor]` table (validated by keyward-monitor).
    pub monitor: Option<toml::Value>,
    /// The raw `[alerts]` table (validated by the gateway's alert module).
    pub alerts: Option<toml::Value>,
    pub metering_flush_interval: Duration,
    pub metering_batch_size: usize,
    pub log_level: String,
    pub log_format: LogFormat,
    pub prices: PriceTable,
    pub admin_key_ref: Option<String>,
    pub admin_url: String,
    pub default_grace: Duration,
    pub rotation_check_interval: Duration,
    /// Per environment: policy defaults, request-metadata logging, rotation period.
    pub env_defaults: [EnvDefaults; 3],
}

#[derive(Debug, Clone, Default)]
pub struct EnvDefaults {
    pub policy: KeyPolicy,
    pub log_request_metadata: bool,
    pub rotate_every: Duration,
}

impl Config {
    pub fn env(&self, env: Environment) -> &EnvDefaults {
        &self.env_defaults[env as usize]
    }
}

pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| invalid(field, format!("{text:?} is not a duration ({e}); use e.g. \"20s\", \"15m\", \"90d\"")))
}

fn duration(field: &'static str, v: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    v.as_deref().map_or(Ok(default), |t| parse_duration(field, t))
}

fn addr(field: &'static str, v: &Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = v.as_deref().unwrap_or(default);
    text.parse().map_err(|_| invalid(field, format!("{text:?} is not an address like 127.0.0.1:8080")))
}

fn path(base: &Path, v: &Option<String>, default: &str) -> PathBuf {
    let p = Path::new(v.as_deref().unwrap_or(default));
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn env_defaults(
    field: &'static str,
    raw: &Option<RawEnvDefaults>,
    rotate_every: Duration,
) -> Result<EnvDefaults, ConfigError> {
    let Some(r) = raw else {
        return Ok(EnvDefaults { rotate_every, ..Default::default() });
    };
    let policy = KeyPolicy {
        rpm: r.rpm,
        tpm: r.tpm,
        max_concurrent: r.max_concurrent,
        budget_usd: r.budget_usd,
        models: r.models.clone(),
        allow_cidr: r.allow_cidr.clone(),
        shield: r.shield,
        shield_threshold: r.shield_threshold,
        shield_deep: r.shield_deep,
        pin_system: r.pin_system.clone(),
        client_system: r.client_system,
        guard_instruction: r.guard_instruction,
        spotlight: r.spotlight,
        allow_tools: r.allow_tools.clone(),
        tool_policy: r.tool_policy,
        tool_rules: r.tool_rules.clone(),
    };
    policy.validate().map_err(|e| invalid(field, e))?;
    Ok(EnvDefaults {
        policy,
        log_request_metadata: r.log_request_metadata.unwrap_or(false),
        rotate_every: duration(field, &r.rotate_every, rotate_every)?,
    })
}

impl RawConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))
    }

    pub fn validate(&self, base_dir: &Path) -> Result<Config, ConfigError> {
        let upstream_url = self
            .upstream
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_UPSTREAM_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        if !(upstream_url.starts_with("http://") || upstream_url.starts_with("https://")) {
            return Err(invalid("upstream.url", "must start with http:// or https://"));
        }
        let secrets_cache_ttl = duration("secrets.cache_ttl", &self.secrets.cache_ttl, Duration::from_secs(20))?;
        if !(Duration::from_secs(5)..=Duration::from_secs(300)).contains(&secrets_cache_ttl) {
            return Err(invalid("secrets.cache_ttl", "must be between 5s and 300s"));
        }
        let level = self.log.level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(invalid("log.level", format!("{level:?}: use error, warn, info, debug or trace")));
        }
        let log_format = match self.log.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log.format", format!("{other:?}: use text or json"))),
        };
        let max_body_bytes = self.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be positive"));
        }
        let conn_buf_bytes = self.server.conn_buf_bytes.unwrap_or(DEFAULT_CONN_BUF_BYTES);
        if conn_buf_bytes < 8192 {
            return Err(invalid("server.conn_buf_bytes", "must be at least 8192"));
        }
        let shield_cache_entries = self.shield.cache_entries.unwrap_or(DEFAULT_SHIELD_CACHE_ENTRIES);
        if shield_cache_entries > 1 << 22 {
            return Err(invalid("shield.cache_entries", "must be at most 4194304"));
        }
        let metering_batch_size = self.metering.batch_size.unwrap_or(1000);
        if metering_batch_size == 0 {
            return Err(invalid("metering.batch_size", "must be positive"));
        }
        let prices = PriceTable::builtin()
            .and_then(|t| t.with_overrides(self.prices.clone()))
            .map_err(|e| invalid("prices", e.to_string()))?;
        let rotate_every = duration("keys.rotate_every", &self.keys.rotate_every, Duration::from_secs(90 * 86_400))?;
        let env_defaults = [
            env_defaults("environments.dev", &self.environments.dev, rotate_every)?,
            env_defaults("environments.stg", &self.environments.stg, rotate_every)?,
            env_defaults("environments.prod", &self.environments.prod, rotate_every)?,
        ];
        let rotation_check_interval =
            duration("keys.rotation_check_interval", &self.keys.rotation_check_interval, Duration::from_secs(60))?;
        if rotation_check_interval < Duration::from_secs(1) {
            return Err(invalid("keys.rotation_check_interval", "must be at least 1s"));
        }
        let upstream_admin_url = self.upstream.admin_url.clone().unwrap_or_else(|| upstream_url.clone());
        let admin_tls = match (&self.server.admin_tls_cert, &self.server.admin_tls_key) {
            (Some(c), Some(k)) => Some((path(base_dir, &Some(c.clone()), ""), path(base_dir, &Some(k.clone()), ""))),
            (None, None) => None,
            _ => return Err(invalid("server.admin_tls_cert", "admin_tls_cert and admin_tls_key go together")),
        };
        let audit_checkpoint_every = self.audit.checkpoint_every.unwrap_or(100);
        if audit_checkpoint_every == 0 {
            return Err(invalid("audit.checkpoint_every", "must be at least 1"));
        }
        if let Some(s) = &self.audit.syslog {
            if !(s.starts_with("udp://") || s.starts_with("unix:")) {
                return Err(invalid("audit.syslog", format!("{s:?}: use udp://HOST:PORT or unix:/dev/log")));
            }
        }
        Ok(Config {
            admin_tls,
            insecure_admin: false,
            auth_fail_burst: self.server.auth_fail_burst.unwrap_or(20).max(1),
            audit_checkpoint_every,
            audit_jsonl_path: self.audit.jsonl_path.as_ref().map(|p| path(base_dir, &Some(p.clone()), "")),
            audit_syslog: self.audit.syslog.clone(),
            admin_key_ref: self.upstream.admin_key_ref.clone(),
            admin_url: upstream_admin_url.trim_end_matches('/').to_string(),
            default_grace: duration("keys.default_grace", &self.keys.default_grace, Duration::from_secs(15 * 60))?,
            rotation_check_interval,
            env_defaults,
            worker_threads: match self.server.worker_threads {
                Some(0) => return Err(invalid("server.worker_threads", "must be at least 1")),
                n => n,
            },
            data_threads: match self.server.data_threads {
                Some(0) => return Err(invalid("server.data_threads", "must be at least 1")),
                n => n,
            },
            secrets_allow_exec: self.secrets.allow_exec.unwrap_or(false),
            monitor: self.monitor.clone(),
            alerts: self.alerts.clone(),
            base_dir: base_dir.to_path_buf(),
            listen: addr("server.listen", &self.server.listen, DEFAULT_LISTEN)?,
            admin_listen: addr("server.admin_listen", &self.server.admin_listen, DEFAULT_ADMIN_LISTEN)?,
            max_body_bytes,
            conn_buf_bytes,
            shield_cache_entries,
            shutdown_grace: duration("server.shutdown_grace", &self.server.shutdown_grace, Duration::from_secs(30))?,
            body_timeout: duration("server.body_timeout", &self.server.body_timeout, Duration::from_secs(60))?,
            upstream_url,
            connect_timeout: duration(
                "upstream.connect_timeout",
                &self.upstream.connect_timeout,
                Duration::from_secs(10),
            )?,
            response_timeout: duration(
                "upstream.response_timeout",
                &self.upstream.response_timeout,
                Duration::from_secs(600),
            )?,
            idle_timeout: duration("upstream.idle_timeout", &self.upstream.idle_timeout, Duration::from_secs(300))?,
            pool_idle_timeout: duration(
                "upstream.pool_idle_timeout",
                &self.upstream.pool_idle_timeout,
                Duration::from_secs(90),
            )?,
            pool_max_idle_per_host: self.upstream.pool_max_idle_per_host.unwrap_or(256),
            master_key_file: path(base_dir, &self.master.key_file, "master.key"),
            master_ref: self.master.reference.clone(),
            sqlite_path: path(base_dir, &self.store.sqlite_path, "keyward.db"),
            secrets_cache_ttl,
            secrets_stale_window: duration(
                "secrets.stale_window",
                &self.secrets.stale_window,
                Duration::from_secs(15 * 60),
            )?,
            metering_flush_interval: duration(
                "metering.flush_interval",
                &self.metering.flush_interval,
                Duration::from_secs(1),
            )?,
            metering_batch_size,
            log_level: level,
            log_format,
            prices,
        })
    }
}

impl Config {
    /// Parse and validate `text`, resolving relative paths against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        RawConfig::from_toml(text)?.validate(base_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shield_cache_has_a_default_an_off_and_a_ceiling() {
        let c = Config::from_toml("", Path::new("/srv/kw")).unwrap();
        assert_eq!(c.shield_cache_entries, DEFAULT_SHIELD_CACHE_ENTRIES);
        let c = Config::from_toml("[shield]\ncache_entries = 0", Path::new("/srv/kw")).unwrap();
        assert_eq!(c.shield_cache_entries, 0);
        let e = Config::from_toml("[shield]\ncache_entries = 4194305", Path::new("/srv/kw")).unwrap_err();
        assert!(e.to_string().contains("shield.cache_entries"), "{e}");
        assert!(Config::from_toml("[shield]\nentries = 5", Path::new("/srv/kw")).is_err());
    }

    #[test]
    fn connection_buffers_have_hypers_floor() {
        let c = Config::from_toml("[server]\nconn_buf_bytes = 8192", Path::new("/srv/kw")).unwrap();
        assert_eq!(c.conn_buf_bytes, 8192);
        let e = Config::from_toml("[server]\nconn_buf_bytes = 8191", Path::new("/srv/kw")).unwrap_err();
        assert!(e.to_string().contains("server.conn_buf_bytes"), "{e}");
    }

    #[test]
    fn empty_config_gets_defaults() {
        let c = Config::from_toml("", Path::new("/srv/kw")).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.sqlite_path, Path::new("/srv/kw/keyward.db"));
        assert_eq!(c.secrets_cache_ttl, Duration::from_secs(20));
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.conn_buf_bytes, 128 * 1024);
        assert_eq!(c.body_timeout, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n", Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        assert!(Config::from_toml("[sever]\n", Path::new("/")).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "[secrets]\ncache_ttl = \"1s\"",
            "[secrets]\ncache_ttl = \"soon\"",
            "[upstream]\nurl = \"ftp://x\"",
            "[server]\nlisten = \"nowhere\"",
            "[log]\nformat = \"xml\"",
            "[server]\nworker_threads = 0",
            "[server]\ndata_threads = 0",
            "[[prices]]\nmodel = \"m\"\neffective = \"2026\"\ninput = 1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0",
        ] {
            assert!(Config::from_toml(bad, Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_defaults() {
        let c = Config::from_toml(
            "[keys]\nrotate_every = \"30d\"\n[environments.prod]\nrpm = 100\nlog_request_metadata = true\nrotate_every = \"7d\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.env(Environment::Prod).policy.rpm, Some(100));
        assert!(c.env(Environment::Prod).log_request_metadata);
        assert_eq!(c.env(Environment::Prod).rotate_every, Duration::from_secs(7 * 86_400));
        assert_eq!(c.env(Environment::Dev).rotate_every, Duration::from_secs(30 * 86_400));
        assert!(Config::from_toml("[environments.qa]\nrpm = 1\n", Path::new("/")).is_err());
        assert!(Config::from_toml("[environments.dev]\nrpm = 0\n", Path::new("/")).is_err());
    }

    #[test]
    fn environment_shield_defaults() {
        let c = Config::from_toml(
            "[environments.prod]\nshield = \"block\"\nshield_threshold = 0.7\npin_system = \"You are the helper.\"\n\
             client_system = \"append\"\nguard_instruction = true\nspotlight = true\nallow_tools = [\"fetch_url\"]\n\
             tool_policy = \"flag\"\ntool_rules = [\"fetch_url:url:hosts=example.com\"]\n",
            Path::new("/"),
        )
        .unwrap();
        let p = &c.env(Environment::Prod).policy;
        assert_eq!(p.shield, Some(crate::policy::ShieldMode::Block));
        assert_eq!(p.client_system, Some(crate::policy::ClientSystem::Append));
        assert_eq!(p.tool_policy, Some(crate::policy::ToolPolicy::Flag));
        assert_eq!(p.pin_system.as_deref(), Some("You are the helper."));
        assert_eq!(p.parsed_tool_rules().unwrap().len(), 1);
        for bad in ["shield = \"maybe\"", "shield_threshold = 2.0", "tool_rules = [\"x\"]", "spotlight = \"yes\""] {
            assert!(Config::from_toml(&format!("[environments.dev]\n{bad}\n"), Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn price_overrides_apply() {
        let c = Config::from_toml(
            "[[prices]]\nmodel = \"my-model\"\neffective = \"2020-01-01\"\ninput = 1.0\noutput = 2.0\ncache_write_5m = 0.0\ncache_write_1h = 0.0\ncache_read = 0.0",
            Path::new("/"),
        )
        .unwrap();
        assert!(c.prices.lookup("my-model", "2026-01-01").is_some());
        assert!(c.prices.lookup("claude-sonnet-4-6", "2026-01-01").is_some());
    }
}
