//! `keyward scan`: the scanner of `keyward-scanner`, plus what needs a running
//! gateway: classifying findings against its inventory and revoking live keys.

use crate::manage::Conn;
use anyhow::Result;
use clap::Args;
use http::Method;
use keyward_scanner::{Classification, Finding, FindingHandler, ScanArgs, Status};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ScanCli {
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Classify each finding against a running gateway: a live keyward key (id, service,
    /// owner), a rotated-out, suspended, expired or revoked one, an upstream key, or unknown.
    #[arg(long)]
    pub check_inventory: bool,
    /// Revoke live keyward keys found, at once (implies --check-inventory).
    #[arg(long)]
    pub revoke: bool,
    #[command(flatten)]
    pub conn: Conn,
}

struct Inventory {
    client: crate::client::AdminClient,
    revoke: bool,
    rt: tokio::runtime::Handle,
}

fn status(s: &str) -> Status {
    match s {
        "live" => Status::Live,
        "rotated_out" => Status::RotatedOut,
        "revoked" => Status::Revoked,
        "suspended" => Status::Suspended,
        "expired" => Status::Expired,
        "upstream" => Status::Upstream,
        _ => Status::Unknown,
    }
}

impl Inventory {
    async fn classify(&self, findings: &mut [Finding]) -> Result<()> {
        // each distinct secret once
        let mut distinct: Vec<usize> = Vec::new();
        for (i, f) in findings.iter().enumerate() {
            if !distinct.iter().any(|&j| findings[j].fingerprint == f.fingerprint) {
                distinct.push(i);
            }
        }
        let secrets: Vec<&str> = distinct.iter().map(|&i| findings[i].secret.expose_secret()).collect();
        let v = self.client.call(Method::POST, "/admin/v1/scan/classify", Some(&json!({ "secrets": secrets }))).await?;
        let data = v["data"].as_array().cloned().unwrap_or_default();
        let (mut revoked, mut marked): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for (&i, c) in distinct.iter().zip(data.iter()) {
            let st = status(c["status"].as_str().unwrap_or("unknown"));
            let id = c["id"].as_str().map(str::to_string);
            let mut action = None;
            if st == Status::Live && self.revoke {
                if let Some(id) = &id {
                    let reason = format!("found by keyward scan in {}", findings[i].path);
                    self.client
                        .call(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), Some(&json!({ "reason": reason })))
                        .await?;
                    revoked.push(id.clone());
                    action = Some("revoked".to_string());
                }
            }
            if st == Status::Upstream {
                let name = id.clone().unwrap_or_default();
                if self.revoke && !name.is_empty() {
                    let found_in = findings[i].path.clone();
                    let v = self
                        .client
                        .call(
                            Method::POST,
                            &format!("/admin/v1/upstreams/{name}/compromised"),
                            Some(&json!({ "found_in": found_in })),
                        )
                        .await?;
                    marked.push(v["name"].as_str().unwrap_or(&name).to_string());
                }
                action = Some(format!(
                    "compromised: rotate it now (`keyward upstream rotate {name}`), then revoke the old key in the Anthropic Console"
                ));
            }
            let class =
                Classification { status: st, id, service: str_of(&c["service"]), owner: str_of(&c["owner"]), action };
            let fp = findings[i].fingerprint.clone();
            for f in findings.iter_mut().filter(|f| f.fingerprint == fp) {
                f.classification = Some(class.clone());
            }
        }
        for id in &revoked {
            eprintln!("keyward scan: revoked {id}");
        }
        for name in &marked {
            eprintln!("keyward scan: upstream key {name} marked compromised; rotate it now with `keyward upstream rotate {name}`");
        }
        Ok(())
    }
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl FindingHandler for Inventory {
    fn handle(&self, findings: &mut [Finding]) -> Result<()> {
        if findings.is_empty() {
            return Ok(());
        }
        // `keyward scan` runs inside `block_in_place`, so blocking on the runtime here is allowed
        self.rt.block_on(self.classify(findings))
    }
}

pub fn run(a: ScanCli) -> Result<u8> {
    let code = if a.check_inventory || a.revoke {
        let inv = Inventory { client: a.conn.client()?, revoke: a.revoke, rt: tokio::runtime::Handle::current() };
        keyward_scanner::run_scan_with(a.scan, Some(&inv))?
    } else {
        keyward_scanner::run_scan(a.scan)?
    };
    Ok(u8::try_from(code).unwrap_or(2))
}
