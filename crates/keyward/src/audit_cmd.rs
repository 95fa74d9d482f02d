//! `keyward audit`: tail and export the log through the admin API, and verify
//! a chain — offline from an exported file with only the public key, or
//! live through the admin API.

use crate::manage::Conn;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http::Method;
use keyward_core::audit::{self, Line};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check a chain: hashes, links, sequence numbers and checkpoint signatures. Exit 0 with
    /// the count when intact; 1 naming the first bad sequence number. Offline with --from-file.
    Verify {
        /// An exported chain (JSONL); without it the live log is fetched through the admin API.
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// The installation's audit public key (hex, or a file holding it), as printed by
        /// `keyward audit pubkey`. Required with --from-file.
        #[arg(long)]
        pubkey: Option<String>,
        /// Accept entries after the last checkpoint (a live JSONL sink file between
        /// checkpoints). Exports end with a checkpoint, so by default an unsigned tail
        /// is reported as possible truncation.
        #[arg(long)]
        allow_unsigned_tail: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print the public key that verifies this installation's checkpoints.
    Pubkey {
        #[command(flatten)]
        conn: Conn,
    },
    /// The newest entries; with -f, keep printing new ones as they are written.
    Tail {
        /// How many entries to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Export the chain as JSON lines (entries and signed checkpoints), for a SIEM or for
    /// `audit verify --from-file`. A full export ends with a checkpoint signed at export time.
    Export {
        /// Only entries at or after this time (RFC 3339 or `24h`-style age). A partial export
        /// does not verify on its own: it does not start at the first entry.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn read_pubkey(p: &str) -> Result<String> {
    let path = std::path::Path::new(p);
    if path.is_file() {
        return Ok(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().into());
    }
    Ok(p.trim().to_string())
}

/// Every line of the live chain, ending with a checkpoint signed now.
async fn fetch_all(conn: &Conn, since: Option<&str>, sign_head: bool) -> Result<Vec<Value>> {
    let client = conn.client()?;
    if sign_head {
        // the server refuses to sign a chain that does not link up; the
        // entries are still fetched, and verification names the break
        if let Err(e) = client.call(Method::POST, "/admin/v1/audit/checkpoint", None).await {
            eprintln!("warning: the server did not sign the chain head: {e}");
        }
    }
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let mut path = format!("/admin/v1/audit?after={after}&limit=5000");
        if let Some(s) = since {
            path.push_str(&format!("&since={}", encode(s)));
        }
        let v = client.call(Method::GET, &path, None).await?;
        out.extend(v["data"].as_array().cloned().unwrap_or_default());
        match v["next_after"].as_u64() {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    Ok(out)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `--since`: an RFC 3339 time, or an age such as `24h`.
fn since_time(s: &str) -> Result<String> {
    if humantime::parse_rfc3339_weak(s).is_ok() {
        return Ok(s.to_string());
    }
    let age =
        humantime::parse_duration(s).with_context(|| format!("--since {s:?}: use RFC 3339 or an age like 24h"))?;
    let t = std::time::SystemTime::now().checked_sub(age).context("--since is too far back")?;
    Ok(humantime::format_rfc3339_seconds(t).to_string())
}

fn human(e: &Value) -> String {
    format!(
        "#{} {} {} {} {} {} {}",
        e["seq"],
        e["ts"].as_str().unwrap_or("-"),
        e["actor"].as_str().unwrap_or("-"),
        e["source"].as_str().unwrap_or("-"),
        e["action"].as_str().unwrap_or("-"),
        e["targets"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        e["summary"]
    )
}

pub async fn run(cmd: AuditCmd) -> Result<u8> {
    match cmd {
        AuditCmd::Verify { from_file, pubkey, allow_unsigned_tail, conn } => {
            let (lines, pubkey) = match &from_file {
                Some(f) => {
                    let Some(pk) = pubkey else { bail!("--from-file needs --pubkey (from `keyward audit pubkey`)") };
                    let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                    match audit::parse_jsonl(&text) {
                        Ok(l) => (l, read_pubkey(&pk)?),
                        Err(e) => {
                            println!("{e}");
                            return Ok(1);
                        }
                    }
                }
                None => {
                    let pk = match pubkey {
                        Some(p) => read_pubkey(&p)?,
                        None => {
                            let v = conn.client()?.call(Method::GET, "/admin/v1/audit/pubkey", None).await?;
                            eprintln!("(verifying with the public key the server reports; pass --pubkey to pin yours)");
                            v["public_key"].as_str().unwrap_or_default().to_string()
                        }
                    };
                    let raw = fetch_all(&conn, None, true).await?;
                    let mut lines = Vec::with_capacity(raw.len());
                    for (i, v) in raw.into_iter().enumerate() {
                        match serde_json::from_value::<Line>(v) {
                            Ok(l) => lines.push(l),
                            Err(e) => {
                                println!("audit chain broken at line {}: {e}", i + 1);
                                return Ok(1);
                            }
                        }
                    }
                    (lines, pk)
                }
            };
            match audit::verify(&lines, &pubkey) {
                Ok(v) if v.unsigned_tail > 0 && !allow_unsigned_tail => {
                    println!(
                        "audit chain broken at sequence number {}: the last {} entries are not covered by a signed checkpoint (truncated after the last checkpoint, or appended later)",
                        v.entries - v.unsigned_tail + 1,
                        v.unsigned_tail
                    );
                    Ok(1)
                }
                Ok(v) => {
                    println!(
                        "intact: {} entries, {} signed checkpoints, {} entries after the last checkpoint",
                        v.entries, v.checkpoints, v.unsigned_tail
                    );
                    Ok(0)
                }
                Err(e) => {
                    println!("{e}");
                    Ok(1)
                }
            }
        }
        AuditCmd::Pubkey { conn } => {
            // the public key is in the store in the clear: with --config it is read there,
            // so it can be taken (and pinned) while no server runs
            if let Some(cfg) = conn.config_path() {
                let cfg = keyward_gateway::server::load_config(cfg)?;
                use keyward_store::Store;
                let store = keyward_store::SqliteStore::open(&cfg.sqlite_path)?;
                let row =
                    store.signing_key("audit").await?.context("this installation has no audit signing key yet")?;
                println!("{}", row.public_key);
                return Ok(0);
            }
            let v = conn.client()?.call(Method::GET, "/admin/v1/audit/pubkey", None).await?;
            println!("{}", v["public_key"].as_str().unwrap_or_default());
            Ok(0)
        }
        AuditCmd::Tail { lines, follow, json, conn } => {
            let client = conn.client()?;
            let head = client.call(Method::GET, "/admin/v1/audit?after=0&limit=1", None).await?["head_seq"]
                .as_u64()
                .unwrap_or(0);
            let mut after = head.saturating_sub(lines);
            loop {
                let v = client.call(Method::GET, &format!("/admin/v1/audit?after={after}&limit=1000"), None).await?;
                for l in v["data"].as_array().into_iter().flatten().filter(|l| l["type"] == "entry") {
                    if json {
                        println!("{l}");
                    } else {
                        println!("{}", human(l));
                    }
                }
                std::io::stdout().flush().ok();
                if let Some(n) = v["next_after"].as_u64() {
                    after = n;
                    continue;
                }
                if !follow {
                    return Ok(0);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        AuditCmd::Export { since, format, output, conn } => {
            if format != "jsonl" {
                bail!("--format {format:?}: only jsonl is supported");
            }
            let since = since.as_deref().map(since_time).transpose()?;
            let lines = fetch_all(&conn, since.as_deref(), true).await?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for l in &lines {
                serde_json::to_writer(&mut out, l)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            if let Some(p) = &output {
                let entries = lines.iter().filter(|l| l["type"] == "entry").count();
                eprintln!("exported {entries} entries to {}", p.display());
            }
            Ok(0)
        }
    }
}
