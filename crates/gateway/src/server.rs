//! `keyward serve`: both listeners, the metering writer, and a graceful stop
//! that drains in-flight requests and queued usage records.

use crate::install::{self, InstallError, ADMIN_URL_FILE};
use crate::state::App;
use axum::serve::ListenerExt;
use keyward_core::config::Config;
use keyward_store::SqliteStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] keyward_core::config::ConfigError),
    #[error("{0}")]
    Install(#[from] InstallError),
    #[error("store: {0}")]
    Store(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Load and validate a config file; relative paths resolve against its directory.
pub fn load_config(path: &Path) -> Result<Config, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read { path: path.to_path_buf(), source })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let cfg = Config::from_toml(&text, &dir)?;
    if let Some(m) = &cfg.monitor {
        keyward_monitor::MonitorConfig::from_toml_value(m.clone())
            .and_then(|m| m.settings().map(|_| ()))
            .map_err(|e| ServeError::Other(format!("config: [monitor]: {e}")))?;
    }
    crate::alerts::AlertsConfig::from_toml_value(cfg.alerts.as_ref())
        .map_err(|e| ServeError::Other(format!("config: [alerts]: {e}")))?;
    Ok(cfg)
}

/// The master key: from `[master] ref` when set, else the 0600 key file.
pub async fn master_key(cfg: &Config) -> Result<keyward_core::crypto::MasterKey, ServeError> {
    use keyward_secrets::SecretSource;
    use secrecy::ExposeSecret;
    let Some(r) = &cfg.master_ref else {
        return Ok(install::load_master_key(&cfg.master_key_file)?);
    };
    let reference: keyward_secrets::SecretRef =
        r.parse().map_err(|e: keyward_secrets::RefError| ServeError::Other(format!("config: master.ref: {e}")))?;
    let value = keyward_secrets::DefaultSources::external()
        .fetch(&reference)
        .await
        .map_err(|e| ServeError::Other(format!("master key from {} unavailable: {}", reference.scheme(), e.class())))?;
    keyward_core::crypto::MasterKey::from_hex(value.expose_secret())
        .map_err(|e| ServeError::Other(format!("master key from {}: {e}", reference.scheme())))
}

/// `serve --check`: everything `serve` verifies before listening.
pub async fn check(path: &Path) -> Result<Config, ServeError> {
    let cfg = load_config(path)?;
    master_key(&cfg).await?;
    Ok(cfg)
}

/// The addresses a running gateway listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub data: SocketAddr,
    pub admin: SocketAddr,
}

/// Resolves when SIGTERM or SIGINT arrives. The handlers are installed when
/// this is called, not when the future is first polled: a signal sent as soon
/// as the server says it is listening (before `run` awaits the future) stops it
/// cleanly instead of killing it. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run a gateway from a validated config until `stop` resolves. `on_ready` is
/// called once both listeners are bound.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Bound, &Arc<App>),
) -> Result<(), ServeError> {
    let admin_tls = match &cfg.admin_tls {
        Some((cert, key)) => {
            Some(crate::tls::server_config(cert, key).map_err(|e| ServeError::Other(format!("admin TLS: {e}")))?)
        }
        None => None,
    };
    if admin_tls.is_none() && !cfg.admin_listen.ip().is_loopback() {
        if !cfg.insecure_admin {
            return Err(ServeError::Other(format!(
                "refusing to serve the admin plane on {} without TLS: set [server] admin_tls_cert and admin_tls_key, \
                 bind it to loopback, or pass --insecure-admin",
                cfg.admin_listen
            )));
        }
        tracing::warn!(admin = %cfg.admin_listen, "INSECURE: the admin plane listens beyond loopback without TLS (--insecure-admin); admin tokens cross the network in clear text");
    }
    let master = master_key(&cfg).await?;
    let store = SqliteStore::open(&cfg.sqlite_path).map_err(|e| ServeError::Store(e.to_string()))?;
    let base_dir = cfg.base_dir.clone();
    let grace = cfg.shutdown_grace;
    let (data_addr, admin_addr) = (cfg.listen, cfg.admin_listen);
    let (app, writer) = App::load(cfg, Arc::new(store), &master).await.map_err(|e| ServeError::Store(e.to_string()))?;
    drop(master);

    let data_l = TcpListener::bind(data_addr).await.map_err(|source| ServeError::Bind { addr: data_addr, source })?;
    let admin_l =
        TcpListener::bind(admin_addr).await.map_err(|source| ServeError::Bind { addr: admin_addr, source })?;
    let bound = Bound {
        data: data_l.local_addr().map_err(|e| ServeError::Other(e.to_string()))?,
        admin: admin_l.local_addr().map_err(|e| ServeError::Other(e.to_string()))?,
    };
    let url_file = base_dir.join(ADMIN_URL_FILE);
    let scheme = if admin_tls.is_some() { "https" } else { "http" };
    let _ = std::fs::write(&url_file, format!("{scheme}://{}\n", bound.admin));

    // fail closed: a server that cannot audit does not serve
    let system = crate::audit::Actor::system("server");
    app.audit_event(
        &system,
        "server.start",
        vec![],
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "data": bound.data.to_string(),
            "admin": bound.admin.to_string(),
            "admin_tls": admin_tls.is_some(),
        }),
    )
    .await
    .map_err(|e| ServeError::Store(format!("writing the audit log: {e}")))?;
    let (audit_tx, audit_rx) = tokio::sync::watch::channel(false);
    let audit_task = tokio::spawn(crate::audit::run(app.clone(), audit_rx));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (writer_tx, writer_rx) = tokio::sync::watch::channel(false);
    let writer_task = tokio::spawn(writer.run(writer_rx));

    // timed work: scheduled rotations, grace windows, upstream retirements
    let (maint_tx, mut maint_rx) = tokio::sync::watch::channel(false);
    let maint_app = app.clone();
    let maint_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(maint_app.cfg.rotation_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => maint_app.maintenance().await,
                _ = maint_rx.changed() => break,
            }
        }
    });

    // the monitor (fed by the writer, authentication and the usage-report
    // poller) and the alert delivery worker; both off the request path
    let (mon_tx, mon_rx) = tokio::sync::watch::channel(false);
    let monitor_task =
        app.take_monitor_rx().map(|rx| tokio::spawn(crate::monitor::run(app.clone(), rx, mon_rx.clone())));
    let poller_task = tokio::spawn(crate::monitor::run_usage_report_poller(app.clone(), mon_rx));
    let (deliver_tx, deliver_rx) = tokio::sync::watch::channel(false);
    let deliver_task = tokio::spawn(crate::alerts::run(app.clone(), deliver_rx));

    let admin_router = crate::admin::router(app.clone());
    let threads = app.cfg.data_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let data_plane = spawn_data_plane(&app, data_l, threads, stop_rx.clone())?;
    let admin_service = admin_router.into_make_service_with_connect_info::<SocketAddr>();
    let admin_task = match admin_tls {
        Some(tls) => {
            let l = crate::tls::TlsListener::new(admin_l, tls)
                .map_err(|e| ServeError::Other(e.to_string()))?
                .tap_io(|_| {});
            let srv = axum::serve(l, admin_service).with_graceful_shutdown(stopped(stop_rx));
            tokio::spawn(async move { srv.await })
        }
        None => {
            let l = admin_l.tap_io(|t| {
                let _ = t.set_nodelay(true);
            });
            let srv = axum::serve(l, admin_service).with_graceful_shutdown(stopped(stop_rx));
            tokio::spawn(async move { srv.await })
        }
    };

    tracing::info!(data = %bound.data, admin = %bound.admin, keys = app.keys.len(), data_threads = threads, "keyward is serving");
    // says whether the injection classifier runs with its deep stage or the fast stage alone
    tracing::info!("prompt-injection shield: {}", app.shield.deep_status());
    on_ready(bound, &app);

    stop.await;
    tracing::info!(grace_s = grace.as_secs(), "shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        for done in data_plane {
            let _ = done.await;
        }
        let _ = admin_task.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight requests still open after the grace period; closing them");
    }
    let _ = maint_tx.send(true);
    let _ = maint_task.await;
    app.flush_stale().await;
    app.flush_security_events().await;
    app.audit_event_logged(&system, "server.stop", vec![], serde_json::json!({})).await;
    // the audit task signs the head and copies the last entries to its sinks
    let _ = audit_tx.send(true);
    let _ = audit_task.await;
    let _ = writer_tx.send(true);
    let _ = writer_task.await;
    // the writer fed its last records to the monitor: judge them, then stop
    let _ = mon_tx.send(true);
    let _ = poller_task.await;
    if let Some(t) = monitor_task {
        let _ = t.await;
    }
    let _ = deliver_tx.send(true);
    let _ = deliver_task.await;
    let _ = std::fs::remove_file(&url_file);
    tracing::info!("keyward stopped; usage records flushed");
    Ok(())
}

/// Resolves once `stop` turns true (a listener's graceful shutdown).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// Serve the data plane on `n` threads, each with a single-threaded runtime and
/// its own upstream pool, all accepting from the one listening socket: a request
/// is read, screened, forwarded and answered on one thread, with no cross-thread
/// wake-ups (see benches/README.md). Each receiver resolves when its thread has
/// drained its connections after `stop`.
fn spawn_data_plane(
    app: &Arc<App>,
    listener: TcpListener,
    n: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::sync::oneshot::Receiver<()>>, ServeError> {
    let io = |e: std::io::Error| ServeError::Other(format!("starting the data plane: {e}"));
    let listener = listener.into_std().map_err(io)?;
    let mut done = Vec::with_capacity(n);
    for i in 0..n {
        // every thread polls the same socket (a duplicated descriptor): the kernel
        // hands each new connection to one of them
        let l = listener.try_clone().map_err(io)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io)?;
        let pool = crate::pool::Pool::new(crate::upstream::connector(&app.cfg), &app.cfg);
        let (app, stop) = (app.clone(), stop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new().name(format!("keyward-data-{i}"));
        thread
            .spawn(move || {
                pool.install();
                rt.block_on(async move {
                    // idle upstream connections close even when no request comes to notice
                    // them. The tick also saves a system call per request: tokio wakes its
                    // own driver (an eventfd write) whenever a new timer is due before every
                    // pending one, and with this tick pending, a request's timeouts (30 s
                    // and longer) never are (benches/README.md, system calls)
                    tokio::spawn(async {
                        while let Some(idle) = crate::pool::sweep() {
                            let tick =
                                (idle / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30));
                            tokio::time::sleep(tick).await;
                        }
                    });
                    match TcpListener::from_std(l) {
                        Ok(l) => serve_data_connections(app, l, stop).await,
                        Err(e) => tracing::error!(error = %e, "a data-plane thread could not listen"),
                    }
                });
                let _ = tx.send(());
            })
            .map_err(io)?;
        done.push(rx);
    }
    Ok(done)
}

/// One data-plane thread's accept loop: each connection is served by hyper's
/// HTTP/1.1 connection driver straight into [`crate::proxy::handle`], with no
/// router or middleware stack between them. After `stop`: no new connections,
/// open ones finish their in-flight request and close; returns when all have.
async fn serve_data_connections(app: Arc<App>, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // a connection's read buffer grows up to this (request headers must fit); a
    // large body streamed upstream passes through it in pieces of at most this size
    http.max_buf_size(app.cfg.conn_buf_bytes);
    // every connection task holds a clone; `recv` returns None once all are gone
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // per-connection failures (reset before accept) are routine; anything
                    // else (out of descriptors) is logged and retried after a pause
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accepting a data-plane connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    continue;
                }
            },
            _ = stop.wait_for(|v| *v) => break,
        };
        // no Nagle delay on client connections: streamed events leave as they arrive
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::proxy::handle(app, peer, req).await) }
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        let (stop, open) = (stopped(stop.clone()), open_tx.clone());
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
