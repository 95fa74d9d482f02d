//! Management commands: thin calls to the admin API and their printing.

use crate::client::AdminClient;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use keyward_gateway::install::{ADMIN_URL_FILE, TOKEN_FILE};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

/// Where the admin API is and which token to use.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// keyward.toml of the installation (admin address and token are found from it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Admin API base URL.
    #[arg(long, env = "KEYWARD_ADMIN_URL")]
    server: Option<String>,
    /// Admin token (kwa_...).
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Conn {
    fn client(&self) -> Result<AdminClient> {
        let mut server = self.server.clone();
        let mut token = self.token.clone().map(SecretString::from);
        if let Some(cfg_path) = &self.config {
            let dir = cfg_path
                .parent()
                .map(PathBuf::from)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| ".".into());
            if server.is_none() {
                // a running server writes its actual admin address (it may listen on port 0)
                server = std::fs::read_to_string(dir.join(ADMIN_URL_FILE))
                    .ok()
                    .map(|s| s.trim().to_string());
            }
            if server.is_none() {
                let cfg = keyward_gateway::server::load_config(cfg_path)?;
                server = Some(format!("http://{}", cfg.admin_listen));
            }
            if token.is_none() {
                let t = std::fs::read_to_string(dir.join(TOKEN_FILE)).with_context(|| {
                    format!(
                        "reading the admin token from {}",
                        dir.join(TOKEN_FILE).display()
                    )
                })?;
                token = Some(SecretString::from(t.trim().to_string()));
            }
        }
        let server = server
            .unwrap_or_else(|| format!("http://{}", keyward_core::config::DEFAULT_ADMIN_LISTEN));
        if token.is_none() {
            bail!("no admin token: pass --config DIR/keyward.toml, --token, or set KEYWARD_TOKEN");
        }
        Ok(AdminClient::new(&server, token))
    }
}

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Register a service.
    Add {
        name: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List services.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one service.
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum UpstreamCmd {
    /// Add a real Anthropic key: its value is read from stdin, or give --ref.
    Add {
        name: String,
        #[arg(long)]
        env: String,
        /// Where the key lives instead (env:VAR, local:NAME, ...).
        #[arg(long = "ref")]
        reference: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List upstream keys (names, environments, fingerprints; never values).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a virtual key; its secret is printed once.
    Create {
        #[arg(long)]
        service: String,
        #[arg(long)]
        env: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List virtual keys.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one key.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a key: refused from the next request on.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
pub struct UsageArgs {
    /// How far back, e.g. 1h, 7d (default 30d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Print rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn service(c: ServiceCmd) -> Result<u8> {
    match c {
        ServiceCmd::Add {
            name,
            owner,
            json,
            conn,
        } => {
            let v = conn
                .client()?
                .call(
                    Method::POST,
                    "/admin/v1/services",
                    Some(&json!({"name": name, "owner": owner})),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "service {} created ({}, owner {})",
                    s(&v["name"]),
                    s(&v["id"]),
                    s(&v["owner"])
                );
            }
        }
        ServiceCmd::List { json, conn } => {
            let v = conn
                .client()?
                .call(Method::GET, "/admin/v1/services", None)
                .await?;
            if json {
                print_json(&v["data"]);
            } else {
                let data = v["data"].as_array().cloned().unwrap_or_default();
                let rows = data.iter().map(|r| {
                    vec![
                        s(&r["name"]),
                        s(&r["id"]),
                        s(&r["owner"]),
                        s(&r["status"]),
                        s(&r["keys"]),
                        s(&r["created_at"]),
                    ]
                });
                table(
                    &["name", "id", "owner", "status", "keys", "created"],
                    rows.collect(),
                );
            }
        }
        ServiceCmd::Show { name, conn } => {
            let v = conn
                .client()?
                .call(
                    Method::GET,
                    &format!("/admin/v1/services/{}", enc(&name)),
                    None,
                )
                .await?;
            print_json(&v);
        }
    }
    Ok(0)
}

pub async fn upstream(c: UpstreamCmd) -> Result<u8> {
    match c {
        UpstreamCmd::Add {
            name,
            env,
            reference,
            json,
            conn,
        } => {
            let body = match reference {
                Some(r) => json!({"name": name, "env": env, "ref": r}),
                None => {
                    let mut value = String::new();
                    std::io::stdin()
                        .read_to_string(&mut value)
                        .context("reading the upstream key from stdin")?;
                    let value = value.trim().to_string();
                    if value.is_empty() {
                        bail!("no upstream key on stdin (pipe it in, or use --ref env:VAR)");
                    }
                    json!({"name": name, "env": env, "value": value})
                }
            };
            let v = conn
                .client()?
                .call(Method::POST, "/admin/v1/upstreams", Some(&body))
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "upstream {} added for {} ({}, {}, {})",
                    s(&v["name"]),
                    s(&v["env"]),
                    s(&v["id"]),
                    s(&v["ref"]),
                    s(&v["fingerprint"])
                );
            }
        }
        UpstreamCmd::List { json, conn } => {
            let v = conn
                .client()?
                .call(Method::GET, "/admin/v1/upstreams", None)
                .await?;
            if json {
                print_json(&v["data"]);
            } else {
                let data = v["data"].as_array().cloned().unwrap_or_default();
                let rows = data.iter().map(|r| {
                    vec![
                        s(&r["name"]),
                        s(&r["id"]),
                        s(&r["env"]),
                        s(&r["ref"]),
                        s(&r["fingerprint"]),
                        s(&r["status"]),
                    ]
                });
                table(
                    &["name", "id", "env", "ref", "fingerprint", "status"],
                    rows.collect(),
                );
            }
        }
    }
    Ok(0)
}

fn key_rows(keys: &[Value]) -> Vec<Vec<String>> {
    keys.iter()
        .map(|r| {
            vec![
                s(&r["id"]),
                s(&r["service"]),
                s(&r["env"]),
                s(&r["status"]),
                s(&r["name"]),
                s(&r["created_at"]),
                s(&r["last_used_at"]),
            ]
        })
        .collect()
}

const KEY_HEADERS: &[&str] = &[
    "id",
    "service",
    "env",
    "status",
    "name",
    "created",
    "last used",
];

pub async fn key(c: KeyCmd) -> Result<u8> {
    match c {
        KeyCmd::Create {
            service,
            env,
            name,
            json,
            conn,
        } => {
            let body = json!({"service": service, "env": env, "name": name});
            let v = conn
                .client()?
                .call(Method::POST, "/admin/v1/keys", Some(&body))
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "key {} created for service {} ({})",
                    s(&v["id"]),
                    s(&v["service"]),
                    s(&v["env"])
                );
                println!("secret: {}", s(&v["secret"]));
                println!("This secret is shown once; keyward stores only a keyed digest of it.");
            }
        }
        KeyCmd::List {
            service,
            env,
            status,
            json,
            conn,
        } => {
            let mut q = Vec::new();
            for (k, v) in [("service", service), ("env", env), ("status", status)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let path = if q.is_empty() {
                "/admin/v1/keys".to_string()
            } else {
                format!("/admin/v1/keys?{}", q.join("&"))
            };
            let v = conn.client()?.call(Method::GET, &path, None).await?;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            if json {
                print_json(&Value::Array(data));
            } else {
                table(KEY_HEADERS, key_rows(&data));
            }
        }
        KeyCmd::Show { id, json, conn } => {
            let v = conn
                .client()?
                .call(Method::GET, &format!("/admin/v1/keys/{}", enc(&id)), None)
                .await?;
            if json {
                print_json(&v);
            } else {
                for (k, val) in v.as_object().cloned().unwrap_or_default() {
                    println!("{k:<18} {}", s(&val));
                }
            }
        }
        KeyCmd::Revoke {
            id,
            reason,
            json,
            conn,
        } => {
            let v = conn
                .client()?
                .call(
                    Method::POST,
                    &format!("/admin/v1/keys/{}/revoke", enc(&id)),
                    Some(&json!({"reason": reason})),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!("key {} revoked", s(&v["id"]));
            }
        }
    }
    Ok(0)
}

pub async fn usage(a: UsageArgs) -> Result<u8> {
    let path = match &a.since {
        Some(since) => format!("/admin/v1/usage?since={}", enc(since)),
        None => "/admin/v1/usage".to_string(),
    };
    let v = a.conn.client()?.call(Method::GET, &path, None).await?;
    let data = v["data"].as_array().cloned().unwrap_or_default();
    if a.json {
        print_json(&Value::Array(data));
        return Ok(0);
    }
    println!("usage since {}", s(&v["since"]));
    let rows = data
        .iter()
        .map(|r| {
            let cost = r["cost_usd"].as_f64().unwrap_or(0.0);
            let unpriced = r["unpriced_requests"].as_u64().unwrap_or(0);
            let cost = if unpriced > 0 {
                format!("{cost:.6} (+{unpriced} unpriced)")
            } else {
                format!("{cost:.6}")
            };
            vec![
                s(&r["key_id"]),
                s(&r["service"]),
                s(&r["requests"]),
                s(&r["errors"]),
                s(&r["input_tokens"]),
                s(&r["output_tokens"]),
                s(&r["cache_creation_input_tokens"]),
                s(&r["cache_read_input_tokens"]),
                cost,
            ]
        })
        .collect();
    table(
        &[
            "key",
            "service",
            "requests",
            "errors",
            "input",
            "output",
            "cache write",
            "cache read",
            "cost usd",
        ],
        rows,
    );
    Ok(0)
}
