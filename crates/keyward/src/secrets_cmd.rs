//! `keyward secrets check REF`: fetch a secret once from where it lives and
//! print its fingerprint and version — never the value.
//!
//! Exit codes: 0 fetched; 1 the source refused or failed (the reason class is
//! printed: not_found, denied, unreachable, malformed, not_configured);
//! 2 the reference itself is not valid.

use clap::Subcommand;
use keyward_secrets::{Credential, DefaultSources, FetchError, SecretRef, SecretSource};

#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Fetch a secret once and print its fingerprint and version (never the value).
    Check {
        /// A secret reference: env:VAR, file:PATH, exec:COMMAND, aws-sm://ID[#FIELD],
        /// vault://MOUNT/PATH#FIELD, gcp-sm://projects/P/secrets/S[/versions/V],
        /// azure-kv://VAULT/SECRET.
        reference: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: SecretsCmd) -> anyhow::Result<u8> {
    match cmd {
        SecretsCmd::Check { reference, json } => check(&reference, json).await,
    }
}

struct Checked {
    fingerprint: String,
    version: Option<String>,
    previous_fingerprint: Option<String>,
}

async fn fetch(r: &SecretRef) -> Result<Checked, FetchError> {
    let f = DefaultSources::external().fetch_versioned(r).await?;
    let current = Credential::new(f.value)?;
    let previous = f.previous.and_then(|p| Credential::new(p).ok());
    Ok(Checked {
        fingerprint: current.fingerprint().to_string(),
        version: f.version,
        previous_fingerprint: previous.map(|p| p.fingerprint().to_string()),
    })
}

async fn check(reference: &str, json: bool) -> anyhow::Result<u8> {
    let r: SecretRef = match reference.parse() {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": "invalid_reference", "message": e.to_string()})
                );
            } else {
                eprintln!("keyward: {e}");
            }
            return Ok(2);
        }
    };
    match fetch(&r).await {
        Ok(c) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "reference": r.to_string(),
                        "scheme": r.scheme(),
                        "fingerprint": c.fingerprint,
                        "version": c.version,
                        "previous_fingerprint": c.previous_fingerprint,
                    })
                );
            } else {
                println!("ok {r}");
                println!("  fingerprint  {}", c.fingerprint);
                println!("  version      {}", c.version.as_deref().unwrap_or("-"));
                if let Some(p) = &c.previous_fingerprint {
                    println!("  previous     {p}");
                }
            }
            Ok(0)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": false,
                        "reference": r.to_string(),
                        "scheme": r.scheme(),
                        "error": e.class(),
                        "message": e.to_string(),
                    })
                );
            } else {
                eprintln!("keyward: secrets check {r} failed ({}): {e}", e.class());
            }
            Ok(1)
        }
    }
}
