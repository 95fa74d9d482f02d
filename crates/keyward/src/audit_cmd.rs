//! `keyward audit`: the offline side of the tamper-evident audit log.

use anyhow::{Context, Result};
use clap::Subcommand;
use keyward_core::audit;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check an exported chain (JSONL) offline: hashes, links, sequence and checkpoint
    /// signatures. Exit 0 with the count when intact; 1 naming the first bad sequence number.
    Verify {
        #[arg(long)]
        from_file: PathBuf,
        /// The installation's audit public key (hex), as printed by `keyward audit pubkey`.
        #[arg(long)]
        pubkey: String,
    },
    /// Print the public key that verifies this installation's checkpoints.
    Pubkey {
        #[arg(long)]
        config: PathBuf,
    },
}

pub async fn run(cmd: AuditCmd) -> Result<u8> {
    match cmd {
        AuditCmd::Verify { from_file, pubkey } => {
            let text =
                std::fs::read_to_string(&from_file).with_context(|| format!("reading {}", from_file.display()))?;
            let result = audit::parse_jsonl(&text).and_then(|lines| audit::verify(&lines, &pubkey));
            match result {
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
        AuditCmd::Pubkey { config } => {
            let cfg = keyward_gateway::server::load_config(&config)?;
            let master = keyward_gateway::server::master_key(&cfg).await?;
            let signer = audit::Signer::from_seed(&master.derive_seed("audit-sign"))
                .context("deriving the audit signing key")?;
            println!("{}", signer.public_hex());
            Ok(0)
        }
    }
}
