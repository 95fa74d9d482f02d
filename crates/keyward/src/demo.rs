//! `keyward demo`: a complete gateway on a temporary installation, in front of
//! the built-in simulated upstream, with a sample service and key.

use crate::DemoArgs;
use anyhow::{Context, Result};
use keyward_gateway::install::{self, InitOptions};
use keyward_gateway::keys::NewKey;
use keyward_gateway::server;
use keyward_gateway::upstreams::UpstreamSecret;
use secrecy::{ExposeSecret, SecretString};

pub async fn run(a: DemoArgs) -> Result<u8> {
    crate::init_tracing("warn", false);
    // the simulated upstream accepts exactly one upstream key: the one the
    // gateway injects (never a virtual key)
    let upstream_key = format!("sk-ant-demo-{}", keyward_core::base62::random(32));
    let mock_listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.context("starting the simulated upstream")?;
    let mock_addr = mock_listener.local_addr()?;
    let mock_cfg = keyward_testkit::mock::MockConfig {
        accept_keys: vec![upstream_key.clone()],
        latency: std::time::Duration::ZERO,
        admin_keys: Vec::new(),
    };
    tokio::spawn(keyward_testkit::mock::serve(mock_listener, mock_cfg));

    let dir = tempfile::Builder::new().prefix("keyward-demo-").tempdir().context("creating a temporary directory")?;
    let installed = install::init(&InitOptions {
        data_dir: dir.path().to_path_buf(),
        listen: Some(a.listen.clone()),
        admin_listen: Some(a.admin_listen.clone()),
        upstream_url: Some(format!("http://{mock_addr}")),
    })
    .await?;
    let cfg = server::load_config(&installed.config_path)?;
    let config_path = installed.config_path.clone();
    let admin_token = installed.token;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let serving = tokio::spawn(server::run(cfg, server::shutdown_signal(), move |bound, app| {
        let _ = ready_tx.send((bound, app.clone()));
    }));
    let (bound, app) = match ready_rx.await {
        Ok(v) => v,
        Err(_) => {
            // the server stopped before it was ready: report why
            serving.await.context("the gateway task failed")??;
            anyhow::bail!("the gateway stopped before it was ready");
        }
    };
    let demo = keyward_gateway::audit::Actor::system("demo");
    app.create_service(&demo, "demo-app", "demo-team").await?;
    let upstream = UpstreamSecret::Value(SecretString::from(upstream_key));
    app.create_upstream(&demo, "demo-upstream", "dev", upstream, None).await?;
    let new_key =
        NewKey { service: "demo-app".into(), env: "dev".into(), name: Some("demo key".into()), ..Default::default() };
    let (key, secret) = app.create_key(&demo, new_key).await?;
    let secret = secret.expose_secret();
    let base = format!("http://{}", bound.data);

    println!("keyward demo is running (temporary installation in {})", dir.path().display());
    println!();
    println!("  data plane:  {base}   (speaks the Anthropic API)");
    println!("  admin plane: http://{}", bound.admin);
    println!("  upstream:    simulated Anthropic API at http://{mock_addr}");
    println!("  service demo-app, virtual key {} (dev):", key.id);
    println!("    {secret}");
    println!();
    println!("Try it with curl:");
    println!();
    println!(
        "  curl -s {base}/v1/messages -H 'x-api-key: {secret}' -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \\\n    -d '{{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
    );
    println!();
    println!("Or with the Python SDK (pip install anthropic):");
    println!();
    println!("  python3 - <<'EOF'");
    println!("import anthropic");
    println!("client = anthropic.Anthropic(base_url=\"{base}\", api_key=\"{secret}\")");
    println!("msg = client.messages.create(model=\"claude-sonnet-4-6\", max_tokens=64, messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}])");
    println!("print(msg.content[0].text)");
    println!("print(msg.usage)");
    println!("EOF");
    println!();
    println!("Manage it (another terminal):");
    println!("  export KEYWARD_TOKEN={}", admin_token.expose_secret());
    println!("  keyward key list --config {}", config_path.display());
    println!("  keyward usage --config {}", config_path.display());
    println!();
    println!("Press Ctrl-C to stop; the temporary installation is deleted.");
    serving.await.context("the gateway task failed")??;
    drop(dir);
    Ok(0)
}
