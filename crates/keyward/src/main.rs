//! `keyward`: the command line. Glue only: local commands call the libraries,
//! management commands call the admin API.
//!
//! Exit codes: 0 ok; 1 findings or refused; 2 usage or runtime error.

mod audit_cmd;
mod client;
mod demo;
mod manage;
mod monitor_cmd;
mod scan_cmd;
mod secrets_cmd;
mod shield_cmd;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use keyward_gateway::install::{self, InitOptions};
use keyward_gateway::server;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "keyward", version, about = "A self-hosted security gateway for the Claude API")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new installation in a directory (config, master key, database, owner token).
    Init(InitArgs),
    /// Run the gateway: data plane and admin plane.
    Serve(ServeArgs),
    /// Start a complete gateway in front of the simulated upstream, with a sample key.
    Demo(DemoArgs),
    /// Run the simulated Anthropic API (for demos, tests and benchmarks).
    MockUpstream(MockArgs),
    /// Services (one per application, with an owner).
    #[command(subcommand)]
    Service(manage::ServiceCmd),
    /// Upstream (real Anthropic) keys, by value (stdin) or by secret reference.
    #[command(subcommand)]
    Upstream(manage::UpstreamCmd),
    /// Virtual keys.
    #[command(subcommand)]
    Key(Box<manage::KeyCmd>),
    /// Admin tokens and their roles.
    #[command(subcommand)]
    Token(manage::TokenCmd),
    /// Usage per key.
    Usage(manage::UsageArgs),
    /// Alerts raised by the usage monitor (open and resolved); `ack ID` acknowledges one.
    Alerts(manage::AlertsArgs),
    /// Inventory review: unrotated, unused, expiring, orphaned keys (exit 1 on findings).
    Review(manage::ReviewArgs),
    /// Secret references: fetch one once and print its fingerprint and version (never the value).
    #[command(subcommand)]
    Secrets(secrets_cmd::SecretsCmd),
    /// Anomaly detection offline: replay a recorded trace through the detectors.
    #[command(subcommand)]
    Monitor(monitor_cmd::MonitorCmd),
    /// The audit log: tail, export, verify (offline, with only the public key), pubkey.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Prompt-injection shield: score a text, evaluate on labelled data.
    #[command(subcommand)]
    Shield(shield_cmd::ShieldCmd),
    /// Find Claude API keys and keyward keys in files, archives and git history (exit 1 on findings).
    Scan(scan_cmd::ScanCli),
    /// Git hooks.
    #[command(subcommand)]
    Hook(HookCmd),
}

#[derive(Subcommand)]
enum HookCmd {
    /// Install a pre-commit hook that scans staged changes and blocks commits with keys.
    Install(keyward_scanner::HookArgs),
}

#[derive(Args)]
struct InitArgs {
    /// Directory for the installation (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Data plane address.
    #[arg(long)]
    listen: Option<String>,
    /// Admin plane address.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Base URL of the upstream API.
    #[arg(long)]
    upstream_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long)]
    config: PathBuf,
    /// Validate the configuration and the master key file, then exit.
    #[arg(long)]
    check: bool,
    /// Allow the admin plane on a non-loopback address without TLS (admin tokens cross the network in clear).
    #[arg(long)]
    insecure_admin: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Data plane address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Admin plane address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: String,
}

#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// An upstream key the mock accepts (repeatable). Without any, every non-empty key is accepted.
    #[arg(long = "accept-key")]
    accept_keys: Vec<String>,
    /// Delay before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// A key accepted on the simulated Admin API (/v1/organizations/...), repeatable.
    #[arg(long = "admin-key")]
    admin_keys: Vec<String>,
}

fn init_tracing(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,h2=warn,rustls=warn")));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Init(a) => {
            let opts = InitOptions {
                data_dir: a.data_dir,
                listen: a.listen,
                admin_listen: a.admin_listen,
                upstream_url: a.upstream_url,
            };
            match install::init(&opts).await {
                Ok(done) => {
                    println!("keyward installed in {}", opts.data_dir.display());
                    println!("  config:      {}", done.config_path.display());
                    println!(
                        "  owner token: {} (stored in {}, mode 0600)",
                        secrecy::ExposeSecret::expose_secret(&done.token),
                        done.token_path.display()
                    );
                    println!(
                        "The owner token is shown once. Next: keyward serve --config {}",
                        done.config_path.display()
                    );
                    Ok(0)
                }
                Err(e @ install::InstallError::Exists(_)) => {
                    eprintln!("keyward: {e}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        Cmd::Serve(a) => {
            if a.check {
                let cfg = server::check(&a.config).await?;
                println!(
                    "{}: configuration is valid (data plane {}, admin plane {})",
                    a.config.display(),
                    cfg.listen,
                    cfg.admin_listen
                );
                return Ok(0);
            }
            let mut cfg = server::load_config(&a.config)?;
            cfg.insecure_admin = a.insecure_admin;
            init_tracing(&cfg.log_level, cfg.log_format == keyward_core::config::LogFormat::Json);
            let admin_scheme = if cfg.admin_tls.is_some() { "https" } else { "http" };
            server::run(cfg, server::shutdown_signal(), move |bound, _| {
                println!("keyward: data plane listening on http://{}", bound.data);
                println!("keyward: admin plane listening on {admin_scheme}://{}", bound.admin);
            })
            .await?;
            Ok(0)
        }
        Cmd::Demo(a) => demo::run(a).await,
        Cmd::MockUpstream(a) => {
            init_tracing("info", false);
            let listener = tokio::net::TcpListener::bind(&a.listen).await?;
            // before the line that tells a supervisor it may signal us
            let stop = keyward_testkit::mock::shutdown_signal();
            println!("keyward mock-upstream: listening on http://{}", listener.local_addr()?);
            let cfg = keyward_testkit::mock::MockConfig {
                accept_keys: a.accept_keys,
                latency: std::time::Duration::from_millis(a.latency_ms),
                admin_keys: a.admin_keys,
            };
            keyward_testkit::mock::serve_until(listener, cfg, stop).await?;
            Ok(0)
        }
        Cmd::Service(c) => manage::service(c).await,
        Cmd::Upstream(c) => manage::upstream(c).await,
        Cmd::Key(c) => manage::key(*c).await,
        Cmd::Token(c) => manage::token(c).await,
        Cmd::Usage(a) => manage::usage(a).await,
        Cmd::Review(a) => manage::review(a).await,
        Cmd::Alerts(a) => manage::alerts(a).await,
        Cmd::Secrets(c) => secrets_cmd::run(c).await,
        Cmd::Monitor(c) => monitor_cmd::run(c),
        Cmd::Shield(c) => shield_cmd::run(c),
        Cmd::Audit(c) => audit_cmd::run(c).await,
        Cmd::Scan(a) => tokio::task::block_in_place(|| scan_cmd::run(a)),
        Cmd::Hook(HookCmd::Install(a)) => exit_code(keyward_scanner::run_hook_install(a)?),
    }
}

fn exit_code(code: i32) -> Result<u8> {
    Ok(u8::try_from(code).unwrap_or(2))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // `serve` may ask for a number of runtime workers in its config
    let workers = match &cli.cmd {
        Cmd::Serve(a) if !a.check => server::load_config(&a.config).ok().and_then(|c| c.worker_threads),
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyward: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let refused = e.downcast_ref::<client::ApiFailure>().is_some_and(|f| f.status.is_client_error());
            eprintln!("keyward: {e:#}");
            ExitCode::from(if refused { 1 } else { 2 })
        }
    }
}
