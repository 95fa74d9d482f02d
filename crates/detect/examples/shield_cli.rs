//! `keyward shield` without the rest of the binary: compiles the CLI module of
//! `crates/keyward` as it is, so the shield can be checked and evaluated while
//! building only this crate (the full binary pulls in the gateway).
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_cli -- eval --data FILE.jsonl --json
//! ```

#[path = "../../keyward/src/shield_cmd.rs"]
mod shield_cmd;

use clap::Parser;

#[derive(Parser)]
#[command(name = "keyward shield")]
struct Cli {
    #[command(subcommand)]
    cmd: shield_cmd::ShieldCmd,
}

fn main() -> std::process::ExitCode {
    match shield_cmd::run(Cli::parse().cmd) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
