//! `keyward-scan`: the scanner alone, with the same subcommands as
//! `keyward scan` and `keyward hook install` (for CI images without the
//! gateway, the benchmarks, and this crate's black-box tests).

use clap::{Parser, Subcommand};
use keyward_scanner::{HookArgs, ScanArgs, EXIT_ERROR};

#[derive(Debug, Parser)]
#[command(
    name = "keyward-scan",
    version,
    about = "Find Claude API keys and keyward keys in files, archives and git history"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan files, directories, git history (--git) or staged changes (--staged).
    Scan(ScanArgs),
    /// Git hooks.
    Hook {
        #[command(subcommand)]
        command: HookCommand,
    },
}

#[derive(Debug, Subcommand)]
enum HookCommand {
    /// Install a pre-commit hook that scans staged changes.
    Install(HookArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => keyward_scanner::run_scan(args),
        Command::Hook { command: HookCommand::Install(args) } => keyward_scanner::run_hook_install(args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}
