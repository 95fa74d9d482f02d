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
    /// CA certificate (PEM) to trust for an https admin API with its own certificate.
    #[arg(long, env = "KEYWARD_ADMIN_CA")]
    cacert: Option<PathBuf>,
}

impl Conn {
    /// The `--config` file, when one was given.
    pub(crate) fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    pub(crate) fn client(&self) -> Result<AdminClient> {
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
                server = std::fs::read_to_string(dir.join(ADMIN_URL_FILE)).ok().map(|s| s.trim().to_string());
            }
            if server.is_none() {
                let cfg = keyward_gateway::server::load_config(cfg_path)?;
                server = Some(format!("http://{}", cfg.admin_listen));
            }
            if token.is_none() {
                let t = std::fs::read_to_string(dir.join(TOKEN_FILE))
                    .with_context(|| format!("reading the admin token from {}", dir.join(TOKEN_FILE).display()))?;
                token = Some(SecretString::from(t.trim().to_string()));
            }
        }
        let server = server.unwrap_or_else(|| format!("http://{}", keyward_core::config::DEFAULT_ADMIN_LISTEN));
        if token.is_none() {
            bail!("no admin token: pass --config DIR/keyward.toml, --token, or set KEYWARD_TOKEN");
        }
        match &self.cacert {
            Some(ca) => AdminClient::with_ca(&server, token, ca),
            None => Ok(AdminClient::new(&server, token)),
        }
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
    /// Revoke every key of the service in one step and mark it retired.
    Decommission {
        name: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Policy settings shared by `key create` and `key update`.
#[derive(Args, Debug, Default)]
pub struct KeySettings {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<String>,
    /// Input + output tokens per minute.
    #[arg(long)]
    tpm: Option<String>,
    #[arg(long)]
    max_concurrent: Option<String>,
    /// USD per calendar month (UTC).
    #[arg(long)]
    budget_usd: Option<String>,
    /// Allowed models, comma-separated globs (claude-sonnet-*,claude-haiku-*).
    #[arg(long)]
    models: Option<String>,
    /// Allowed client networks, comma-separated CIDRs.
    #[arg(long)]
    allow_cidr: Option<String>,
    /// Rotation period, e.g. 90d.
    #[arg(long)]
    rotate_every: Option<String>,
    /// Where a rotated secret is written: file:/ABSOLUTE/PATH.
    #[arg(long)]
    deliver_to: Option<String>,
    /// Prompt-injection screening of user turns, documents and tool results: off, flag or block.
    #[arg(long, value_name = "off|flag|block")]
    shield: Option<String>,
    /// Score (0..1, exclusive) from which a request is flagged or blocked (default: the classifier's own).
    #[arg(long, value_name = "X")]
    shield_threshold: Option<String>,
    /// When the classifier's deep stage runs: off (fast stage only, the default), on (every part),
    /// uncertain (only parts the fast stage is unsure of).
    #[arg(long, value_name = "off|on|uncertain")]
    shield_deep: Option<String>,
    /// Pin the system prompt to the text of FILE (the file is read here; the key stores the text).
    #[arg(long, value_name = "FILE")]
    pin_system: Option<String>,
    /// With a pinned system prompt, a client's `system` is refused (default) or appended below it as untrusted.
    #[arg(long, value_name = "refuse|append")]
    client_system: Option<String>,
    /// Append the standard instruction to ignore instructions in user content, documents and tool results.
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on")]
    guard_instruction: Option<String>,
    /// Wrap untrusted parts in delimiters with a random per-request marker; the system prompt says they are data.
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on")]
    spotlight: Option<String>,
    /// Tools the model may call (comma-separated names or globs); other tool calls are blocked or flagged.
    #[arg(long, value_name = "NAME,...")]
    allow_tools: Option<String>,
    /// What a disallowed tool call does: block (the response becomes an error) or flag.
    #[arg(long, value_name = "block|flag")]
    tool_policy: Option<String>,
    /// Argument rule, repeatable: TOOL:ARG:hosts=H,... | TOOL:ARG:domains=D,... | TOOL:ARG:values=V,...
    /// (e.g. 'fetch_url:url:hosts=example.com,*.corp.example'); replaces the key's rules.
    #[arg(long, value_name = "RULE")]
    tool_rule: Vec<String>,
}

fn setting(v: &str, kind: &str) -> Result<Value> {
    if v == "none" {
        return Ok(Value::Null);
    }
    Ok(match kind {
        "int" => json!(v.parse::<u64>().with_context(|| format!("{v:?} is not a whole number"))?),
        "float" => json!(v.parse::<f64>().with_context(|| format!("{v:?} is not an amount"))?),
        "list" => json!(v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>()),
        "switch" => match v {
            "on" | "true" => json!(true),
            "off" | "false" => json!(false),
            _ => bail!("{v:?}: use on or off"),
        },
        _ => json!(v),
    })
}

impl KeySettings {
    fn apply(&self, body: &mut Value, allow_none: bool) -> Result<()> {
        for (field, v, kind) in [
            ("rpm", &self.rpm, "int"),
            ("tpm", &self.tpm, "int"),
            ("max_concurrent", &self.max_concurrent, "int"),
            ("budget_usd", &self.budget_usd, "float"),
            ("models", &self.models, "list"),
            ("allow_cidr", &self.allow_cidr, "list"),
            ("rotate_every", &self.rotate_every, "text"),
            ("deliver_to", &self.deliver_to, "text"),
            ("shield", &self.shield, "text"),
            ("shield_threshold", &self.shield_threshold, "float"),
            ("shield_deep", &self.shield_deep, "text"),
            ("client_system", &self.client_system, "text"),
            ("guard_instruction", &self.guard_instruction, "switch"),
            ("spotlight", &self.spotlight, "switch"),
            ("allow_tools", &self.allow_tools, "list"),
            ("tool_policy", &self.tool_policy, "text"),
        ] {
            if let Some(v) = v {
                if v == "none" && !allow_none {
                    bail!("--{} none: only `key update` removes settings", field.replace('_', "-"));
                }
                body[field] = setting(v, kind)?;
            }
        }
        if let Some(f) = &self.pin_system {
            if f == "none" && !allow_none {
                bail!("--pin-system none: only `key update` removes settings");
            }
            body["pin_system"] = if f == "none" {
                Value::Null
            } else {
                json!(std::fs::read_to_string(f).with_context(|| format!("reading the system prompt from {f}"))?)
            };
        }
        match self.tool_rule.as_slice() {
            [] => {}
            [none] if none == "none" => {
                if !allow_none {
                    bail!("--tool-rule none: only `key update` removes settings");
                }
                body["tool_rules"] = Value::Null;
            }
            rules => body["tool_rules"] = json!(rules),
        }
        Ok(())
    }
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
        /// The key's id at Anthropic (apikey_...), to deactivate it through the Admin API after rotation.
        #[arg(long)]
        anthropic_key_id: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace an upstream key (new value on stdin, or --ref); the old one stays loaded for the grace window.
    Rotate {
        name: String,
        #[arg(long = "ref")]
        reference: Option<String>,
        #[arg(long)]
        grace: Option<String>,
        /// The new key's id at Anthropic.
        #[arg(long)]
        anthropic_key_id: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Take an upstream key out of service (refused while keys still route to it, unless --force).
    Retire {
        name: String,
        #[arg(long)]
        force: bool,
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
        /// Refused after this long (contractor and third-party keys), e.g. 30d.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        settings: KeySettings,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a key's settings; "none" removes a setting (back to the environment default).
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// New expiry, counted from now (or "none").
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        settings: KeySettings,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Issue a new secret for the same key id; the old one works for the grace window.
    Rotate {
        id: String,
        /// How long the old secret keeps working (default from config, 15m; 0 = revoke it now).
        #[arg(long)]
        grace: Option<String>,
        /// Repeating a rotation with the same key returns the same new secret.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Suspend a key (reversible): refused from the next request on.
    Suspend {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Resume a suspended key.
    Resume {
        id: String,
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
        /// Only keys with this review finding (e.g. not_rotated, unused_30d, expiring_14d).
        #[arg(long)]
        finding: Option<String>,
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

/// Print the API's answer as JSON, or one line for people.
fn report(json: bool, v: &Value, human: impl FnOnce() -> String) {
    if json {
        print_json(v);
    } else {
        println!("{}", human());
    }
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
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
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
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn service(c: ServiceCmd) -> Result<u8> {
    match c {
        ServiceCmd::Add { name, owner, json, conn } => {
            let v = conn
                .client()?
                .call(Method::POST, "/admin/v1/services", Some(&json!({"name": name, "owner": owner})))
                .await?;
            report(json, &v, || {
                format!("service {} created ({}, owner {})", s(&v["name"]), s(&v["id"]), s(&v["owner"]))
            });
        }
        ServiceCmd::List { json, conn } => {
            let v = conn.client()?.call(Method::GET, "/admin/v1/services", None).await?;
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
                table(&["name", "id", "owner", "status", "keys", "created"], rows.collect());
            }
        }
        ServiceCmd::Decommission { name, reason, json, conn } => {
            let v = conn
                .client()?
                .call(
                    Method::POST,
                    &format!("/admin/v1/services/{}/decommission", enc(&name)),
                    Some(&json!({"reason": reason})),
                )
                .await?;
            report(json, &v, || {
                format!("service {} retired; {} key(s) revoked", s(&v["service"]["name"]), s(&v["revoked_keys"]))
            });
        }
        ServiceCmd::Show { name, conn } => {
            let v = conn.client()?.call(Method::GET, &format!("/admin/v1/services/{}", enc(&name)), None).await?;
            print_json(&v);
        }
    }
    Ok(0)
}

/// The upstream key from stdin, or a reference.
fn upstream_secret_body(reference: Option<String>) -> Result<Value> {
    match reference {
        Some(r) => Ok(json!({"ref": r})),
        None => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).context("reading the upstream key from stdin")?;
            let value = value.trim().to_string();
            if value.is_empty() {
                bail!("no upstream key on stdin (pipe it in, or use --ref env:VAR)");
            }
            Ok(json!({"value": value}))
        }
    }
}

pub async fn upstream(c: UpstreamCmd) -> Result<u8> {
    match c {
        UpstreamCmd::Add { name, env, reference, anthropic_key_id, json, conn } => {
            let mut body = upstream_secret_body(reference)?;
            body["name"] = json!(name);
            body["env"] = json!(env);
            body["anthropic_key_id"] = json!(anthropic_key_id);
            let v = conn.client()?.call(Method::POST, "/admin/v1/upstreams", Some(&body)).await?;
            report(json, &v, || {
                format!(
                    "upstream {} added for {} ({}, {}, {})",
                    s(&v["name"]),
                    s(&v["env"]),
                    s(&v["id"]),
                    s(&v["ref"]),
                    s(&v["fingerprint"])
                )
            });
        }
        UpstreamCmd::Rotate { name, reference, grace, anthropic_key_id, json, conn } => {
            let mut body = upstream_secret_body(reference)?;
            body["grace"] = json!(grace);
            body["anthropic_key_id"] = json!(anthropic_key_id);
            let v = conn
                .client()?
                .call(Method::POST, &format!("/admin/v1/upstreams/{}/rotate", enc(&name)), Some(&body))
                .await?;
            report(json, &v, || {
                format!(
                    "upstream {} rotated: new requests use {} ({})",
                    s(&v["name"]),
                    s(&v["ref"]),
                    s(&v["fingerprint"])
                )
            });
        }
        UpstreamCmd::Retire { name, force, json, conn } => {
            let v = conn
                .client()?
                .call(
                    Method::POST,
                    &format!("/admin/v1/upstreams/{}/retire", enc(&name)),
                    Some(&json!({"force": force})),
                )
                .await?;
            report(json, &v, || format!("upstream {} retired", s(&v["name"])));
        }
        UpstreamCmd::List { json, conn } => {
            let v = conn.client()?.call(Method::GET, "/admin/v1/upstreams", None).await?;
            if json {
                print_json(&v["data"]);
            } else {
                let data = v["data"].as_array().cloned().unwrap_or_default();
                let rows = data.iter().map(|r| {
                    vec![s(&r["name"]), s(&r["id"]), s(&r["env"]), s(&r["ref"]), s(&r["fingerprint"]), s(&r["status"])]
                });
                table(&["name", "id", "env", "ref", "fingerprint", "status"], rows.collect());
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

const KEY_HEADERS: &[&str] = &["id", "service", "env", "status", "name", "created", "last used"];

pub async fn key(c: KeyCmd) -> Result<u8> {
    match c {
        KeyCmd::Create { service, env, name, expires_in, settings, json, conn } => {
            let mut body = json!({"service": service, "env": env, "name": name, "expires_in": expires_in});
            settings.apply(&mut body, false)?;
            let v = conn.client()?.call(Method::POST, "/admin/v1/keys", Some(&body)).await?;
            report(json, &v, || {
                format!(
                    "key {} created for service {} ({})\nsecret: {}\nThis secret is shown once; keyward stores only a keyed digest of it.",
                    s(&v["id"]),
                    s(&v["service"]),
                    s(&v["env"]),
                    s(&v["secret"])
                )
            });
        }
        KeyCmd::Update { id, name, expires_in, settings, json, conn } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = setting(&n, "text")?;
            }
            if let Some(e) = expires_in {
                body["expires_in"] = setting(&e, "text")?;
            }
            settings.apply(&mut body, true)?;
            let v = conn.client()?.call(Method::PATCH, &format!("/admin/v1/keys/{}", enc(&id)), Some(&body)).await?;
            report(json, &v, || format!("key {} updated", s(&v["id"])));
        }
        KeyCmd::Rotate { id, grace, idempotency_key, json, conn } => {
            let body = json!({"grace": grace, "idempotency_key": idempotency_key});
            let v =
                conn.client()?.call(Method::POST, &format!("/admin/v1/keys/{}/rotate", enc(&id)), Some(&body)).await?;
            if json {
                print_json(&v);
            } else {
                println!("key {} rotated", s(&v["id"]));
                println!("new secret: {}", s(&v["secret"]));
                match v["old_secret_valid_until"].as_str() {
                    Some(t) => println!("the old secret keeps working until {t}"),
                    None => println!("the old secret no longer works"),
                }
                if let Some(t) = v["delivery"]["delivered_to"].as_str() {
                    println!("delivered to {t}");
                }
                if let Some(e) = v["delivery"]["error"].as_str() {
                    println!("delivery FAILED: {e}");
                }
                println!("This secret is shown once.");
            }
        }
        KeyCmd::Suspend { id, reason, json, conn } => {
            let v = conn
                .client()?
                .call(Method::POST, &format!("/admin/v1/keys/{}/suspend", enc(&id)), Some(&json!({"reason": reason})))
                .await?;
            report(json, &v, || format!("key {} suspended", s(&v["id"])));
        }
        KeyCmd::Resume { id, json, conn } => {
            let v = conn
                .client()?
                .call(Method::POST, &format!("/admin/v1/keys/{}/resume", enc(&id)), Some(&json!({})))
                .await?;
            report(json, &v, || format!("key {} resumed", s(&v["id"])));
        }
        KeyCmd::List { service, env, status, finding, json, conn } => {
            let mut q = Vec::new();
            for (k, v) in [("service", service), ("env", env), ("status", status)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let path =
                if q.is_empty() { "/admin/v1/keys".to_string() } else { format!("/admin/v1/keys?{}", q.join("&")) };
            let client = conn.client()?;
            let v = client.call(Method::GET, &path, None).await?;
            let mut data = v["data"].as_array().cloned().unwrap_or_default();
            if let Some(f) = finding {
                let review = client.call(Method::GET, "/admin/v1/review", None).await?;
                let with: Vec<String> = review["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|r| {
                        r["findings"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(f.as_str())))
                    })
                    .filter_map(|r| r["key_id"].as_str().map(str::to_string))
                    .collect();
                data.retain(|k| k["id"].as_str().is_some_and(|id| with.iter().any(|w| w == id)));
            }
            if json {
                print_json(&Value::Array(data));
            } else {
                table(KEY_HEADERS, key_rows(&data));
            }
        }
        KeyCmd::Show { id, json, conn } => {
            let v = conn.client()?.call(Method::GET, &format!("/admin/v1/keys/{}", enc(&id)), None).await?;
            if json {
                print_json(&v);
            } else {
                for (k, val) in v.as_object().cloned().unwrap_or_default() {
                    println!("{k:<18} {}", s(&val));
                }
            }
        }
        KeyCmd::Revoke { id, reason, json, conn } => {
            let v = conn
                .client()?
                .call(Method::POST, &format!("/admin/v1/keys/{}/revoke", enc(&id)), Some(&json!({"reason": reason})))
                .await?;
            report(json, &v, || format!("key {} revoked", s(&v["id"])));
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
            let cost = if unpriced > 0 { format!("{cost:.6} (+{unpriced} unpriced)") } else { format!("{cost:.6}") };
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
    table(&["key", "service", "requests", "errors", "input", "output", "cache write", "cache read", "cost usd"], rows);
    Ok(0)
}

#[derive(Args)]
pub struct ReviewArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// The inventory review; exit 1 when there are findings (for CI or cron).
pub async fn review(a: ReviewArgs) -> Result<u8> {
    let v = a.conn.client()?.call(Method::GET, "/admin/v1/review", None).await?;
    let data = v["data"].as_array().cloned().unwrap_or_default();
    let findings = data.iter().filter(|r| r["findings"].as_array().is_some_and(|f| !f.is_empty())).count();
    if a.json {
        print_json(&Value::Array(data));
    } else {
        let rows = data
            .iter()
            .map(|r| {
                let f: Vec<String> = r["findings"].as_array().cloned().unwrap_or_default().iter().map(s).collect();
                vec![
                    s(&r["key_id"]),
                    s(&r["service"]),
                    s(&r["owner"]),
                    s(&r["env"]),
                    s(&r["status"]),
                    s(&r["age_days"]),
                    s(&r["last_rotated_at"]),
                    s(&r["last_used_at"]),
                    s(&r["expires_at"]),
                    if f.is_empty() { "-".into() } else { f.join(",") },
                ]
            })
            .collect();
        table(
            &["key", "service", "owner", "env", "status", "age d", "rotated", "last used", "expires", "findings"],
            rows,
        );
        println!("{findings} key(s) with findings");
    }
    Ok(if findings > 0 { 1 } else { 0 })
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an admin token; its secret is printed once.
    Create {
        /// owner, operator, auditor or service-owner.
        #[arg(long)]
        role: String,
        /// For service-owner: the services it may manage (comma-separated).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Lifetime, e.g. 90d (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Who or what the token is for.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List admin tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke an admin token at once.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn token(c: TokenCmd) -> Result<u8> {
    match c {
        TokenCmd::Create { role, services, expires_in, name, json, conn } => {
            let body = json!({"role": role, "services": services, "expires_in": expires_in, "name": name});
            let v = conn.client()?.call(Method::POST, "/admin/v1/tokens", Some(&body)).await?;
            report(json, &v, || {
                let scope = v["services"]
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .map(|a| format!(" for {}", a.iter().map(s).collect::<Vec<_>>().join(",")));
                format!(
                    "token {} ({}{}) created; its secret, shown once:\n{}",
                    s(&v["id"]),
                    s(&v["role"]),
                    scope.unwrap_or_default(),
                    s(&v["secret"])
                )
            });
        }
        TokenCmd::List { json, conn } => {
            let v = conn.client()?.call(Method::GET, "/admin/v1/tokens", None).await?;
            if json {
                print_json(&v["data"]);
            } else {
                let data = v["data"].as_array().cloned().unwrap_or_default();
                let rows = data.iter().map(|t| {
                    let services = t["services"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(","));
                    vec![
                        s(&t["id"]),
                        s(&t["role"]),
                        services.filter(|x| !x.is_empty()).unwrap_or_else(|| "-".into()),
                        s(&t["status"]),
                        s(&t["name"]),
                        s(&t["created_at"]),
                        s(&t["expires_at"]),
                        s(&t["last_used_at"]),
                    ]
                });
                table(&["id", "role", "services", "status", "name", "created", "expires", "last used"], rows.collect());
            }
        }
        TokenCmd::Revoke { id, json, conn } => {
            let v = conn.client()?.call(Method::POST, &format!("/admin/v1/tokens/{}/revoke", enc(&id)), None).await?;
            report(json, &v, || format!("token {} revoked", s(&v["id"])));
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    cmd: Option<AlertsCmd>,
    /// Only alerts that are still open.
    #[arg(long)]
    open: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Acknowledge an alert (it stays open until its condition clears).
    Ack {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `keyward alerts [--open] [--json]` and `keyward alerts ack ID`.
pub async fn alerts(a: AlertsArgs) -> Result<u8> {
    if let Some(AlertsCmd::Ack { id, json, conn }) = a.cmd {
        let v = conn.client()?.call(Method::POST, &format!("/admin/v1/alerts/{}/ack", enc(&id)), None).await?;
        report(json, &v, || format!("alert {} acknowledged", s(&v["id"])));
        return Ok(0);
    }
    let path = if a.open { "/admin/v1/alerts?open=true" } else { "/admin/v1/alerts" };
    let v = a.conn.client()?.call(Method::GET, path, None).await?;
    let data = v["data"].as_array().cloned().unwrap_or_default();
    if a.json {
        print_json(&Value::Array(data));
        return Ok(0);
    }
    let rows = data
        .iter()
        .map(|r| {
            let subject =
                if r["key_id"].is_string() { s(&r["key_id"]) } else { format!("upstream {}", s(&r["upstream"])) };
            let status = if r["status"] == "open" && r["acked_at"].is_string() {
                "open (acked)".into()
            } else {
                s(&r["status"])
            };
            vec![s(&r["id"]), s(&r["severity"]), s(&r["rule"]), subject, status, s(&r["raised_at"]), s(&r["summary"])]
        })
        .collect();
    table(&["id", "severity", "rule", "subject", "status", "raised", "summary"], rows);
    Ok(0)
}
