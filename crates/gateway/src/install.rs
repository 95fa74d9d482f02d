//! `keyward init`: a complete installation in one directory.
//!
//! Creates `keyward.toml`, the master key file (0600), the SQLite database and
//! a bootstrap owner admin token (returned once, and stored 0600 in the
//! directory for the CLI). Refuses, changing nothing, if any of them exists.

use crate::state::App;
use keyward_core::config::{Config, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_UPSTREAM_URL};
use keyward_core::crypto::MasterKey;
use keyward_store::SqliteStore;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CONFIG_FILE: &str = "keyward.toml";
pub const MASTER_KEY_FILE: &str = "master.key";
pub const DB_FILE: &str = "keyward.db";
pub const TOKEN_FILE: &str = "admin.token";
/// Written by `serve` with the admin plane's actual address (for port 0).
pub const ADMIN_URL_FILE: &str = "admin.url";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0} already exists: refusing to overwrite an existing installation")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("master key file {0} is readable by group or others; run: chmod 600 {0}")]
    MasterKeyPermissions(PathBuf),
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub upstream_url: Option<String>,
}

pub struct Installed {
    pub config_path: PathBuf,
    pub token_path: PathBuf,
    pub token: SecretString,
}

/// Write a file that must not exist yet, with `mode`.
fn write_new(path: &Path, mode: u32, content: &[u8]) -> Result<(), InstallError> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    f.write_all(content).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub async fn init(opts: &InitOptions) -> Result<Installed, InstallError> {
    let dir = &opts.data_dir;
    let listen = opts.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into());
    let admin_listen = opts.admin_listen.clone().unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
    let upstream = opts.upstream_url.clone().unwrap_or_else(|| DEFAULT_UPSTREAM_URL.into());
    let config_text = format!(
        "# keyward configuration. Unknown keys are an error; `keyward serve --config FILE --check` validates.\n\
         # Prices: a dated table per model is built in; add [[prices]] rows here to override or extend it.\n\n\
         [server]\nlisten = {}\nadmin_listen = {}\n\n[upstream]\nurl = {}\n\n\
         [master]\nkey_file = \"{MASTER_KEY_FILE}\"\n\n[store]\nsqlite_path = \"{DB_FILE}\"\n\n\
         [secrets]\ncache_ttl = \"20s\"\nstale_window = \"15m\"\n",
        toml_string(&listen),
        toml_string(&admin_listen),
        toml_string(&upstream)
    );
    // validate before touching the disk
    Config::from_toml(&config_text, dir).map_err(|e| InstallError::Invalid(e.to_string()))?;

    for name in [CONFIG_FILE, MASTER_KEY_FILE, DB_FILE, TOKEN_FILE] {
        let p = dir.join(name);
        if p.exists() {
            return Err(InstallError::Exists(p));
        }
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let master = MasterKey::generate();
    let master_path = dir.join(MASTER_KEY_FILE);
    write_new(&master_path, 0o600, format!("{}\n", master.to_hex().as_str()).as_bytes())?;
    let result = async {
        let config_path = dir.join(CONFIG_FILE);
        write_new(&config_path, 0o644, config_text.as_bytes())?;
        let cfg = Config::from_toml(&config_text, dir).map_err(|e| InstallError::Invalid(e.to_string()))?;
        let db_path = dir.join(DB_FILE);
        // the database holds digests and sealed secrets: private to the owner
        write_new(&db_path, 0o600, b"")?;
        let store = SqliteStore::open(&db_path).map_err(|e| InstallError::Other(e.to_string()))?;
        let (app, _writer) =
            App::load(cfg, Arc::new(store), &master).await.map_err(|e| InstallError::Other(e.to_string()))?;
        let init = crate::audit::Actor::system("init");
        app.audit_event(
            &init,
            "install.init",
            vec![],
            serde_json::json!({ "audit_public_key": app.audit_public_key() }),
        )
        .await
        .map_err(|e| InstallError::Other(e.to_string()))?;
        let bootstrap = crate::state::NewToken {
            role: "owner".into(),
            name: Some("bootstrap (keyward init)".into()),
            ..Default::default()
        };
        let (_view, token) =
            app.create_token(&init, bootstrap).await.map_err(|e| InstallError::Other(e.to_string()))?;
        let token_path = dir.join(TOKEN_FILE);
        write_new(&token_path, 0o600, format!("{}\n", token.expose_secret()).as_bytes())?;
        Ok(Installed { config_path, token_path, token })
    }
    .await;
    if result.is_err() {
        // leave nothing half-made behind
        for name in [CONFIG_FILE, MASTER_KEY_FILE, DB_FILE, "keyward.db-wal", "keyward.db-shm", TOKEN_FILE] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    result
}

/// Read the master key file, refusing one that group or others can read.
pub fn load_master_key(path: &Path) -> Result<MasterKey, InstallError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(InstallError::MasterKeyPermissions(path.to_path_buf()));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    MasterKey::from_hex(&text).map_err(|e| InstallError::Other(format!("{}: {e}", path.display())))
}
