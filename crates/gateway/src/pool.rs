//! A data-plane thread's own pool of HTTP/1.1 connections to the upstream,
//! on hyper's connection API.
//!
//! Each data-plane thread runs a single-threaded runtime (`server::spawn_data_plane`),
//! so its pool needs no lock: a plain list of the thread's connections, busy and
//! idle. A request takes a connection that is ready (hyper's `SendRequest::is_ready`:
//! its previous response has been read to the end), the newest first, and sends on
//! it in place; the connection stays in the list and is ready again once
//! its response has been read. hyper-util's pooled client, which this replaces on
//! the data plane, spends about 11k instructions per request on a shared pool
//! behind a mutex, a checkout racing a connect, and a task spawned per request to
//! return the connection when its body is done (benches/README.md).
//!
//! What it keeps from that client:
//! - a request that the connection gave back unsent (it closed as the request was
//!   handed over, typically an idle connection the upstream had just shut) is sent
//!   again once, on a new connection;
//! - `Host` is set from the URI (with the port when it is not the scheme's
//!   default) and the request line uses the origin form;
//! - connections idle for longer than `upstream.pool_idle_timeout` are closed (at
//!   the next request, or by [`sweep`]); beyond `upstream.pool_max_idle_per_host`
//!   idle connections per thread, the least recently used are closed when a new
//!   connection is made and at each sweep. Busy connections are not capped: each
//!   of many concurrent streams keeps its connection for a later request.

use crate::upstream::{Connector, UpstreamBody};
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};
use tower_service::Service;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the upstream URI has no scheme or host")]
    Uri,
    #[error("this thread has no upstream pool")]
    NoPool,
    #[error("connecting to the upstream failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the upstream connection failed")]
    Http(#[from] hyper::Error),
}

struct Conn {
    https: bool,
    authority: Authority,
    host: HeaderValue,
    tx: SendRequest<UpstreamBody>,
    used: Instant,
}

/// One thread's connections; see the module documentation.
pub struct Pool {
    connector: Connector,
    h1: http1::Builder,
    idle_timeout: Duration,
    max: usize,
    conns: RefCell<Vec<Conn>>,
}

thread_local! {
    static POOL: std::cell::OnceCell<Pool> = const { std::cell::OnceCell::new() };
}

impl Pool {
    pub fn new(connector: Connector, cfg: &keyward_core::config::Config) -> Self {
        Self::with(connector, cfg.conn_buf_bytes, cfg.pool_idle_timeout, cfg.pool_max_idle_per_host)
    }

    fn with(connector: Connector, buf: usize, idle_timeout: Duration, max: usize) -> Self {
        let mut h1 = http1::Builder::new();
        h1.max_buf_size(buf);
        Pool { connector, h1, idle_timeout, max, conns: RefCell::new(Vec::new()) }
    }

    /// Make this the current thread's pool; a second call changes nothing.
    pub fn install(self) {
        POOL.with(|p| {
            let _ = p.set(self);
        });
    }

    /// Send on a ready connection to `origin`, in place, dropping closed and
    /// expired connections on the way. Gives the request back when none is ready.
    fn send_pooled(
        &self,
        origin: (bool, &Authority),
        mut req: Request<UpstreamBody>,
        now: Instant,
    ) -> Checkout<impl Future<Output = Sent> + Send + 'static> {
        let Ok(mut conns) = self.conns.try_borrow_mut() else { return Checkout::NoneReady(req) };
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            if self.gone(&conns[i], now) {
                conns.swap_remove(i);
                continue;
            }
            let c = &mut conns[i];
            if c.tx.is_ready() && c.https == origin.0 && c.authority == *origin.1 {
                c.used = now;
                req.headers_mut().insert(HOST, c.host.clone());
                return Checkout::Sending(c.tx.try_send_request(req));
            }
        }
        Checkout::NoneReady(req)
    }

    /// Closed, or idle for longer than the timeout.
    fn gone(&self, c: &Conn, now: Instant) -> bool {
        c.tx.is_closed() || (c.tx.is_ready() && now.duration_since(c.used) > self.idle_timeout)
    }

    /// Keep a new connection (it is busy with its first request), then trim the
    /// idle ones down to the cap.
    fn keep(&self, c: Conn) {
        if let Ok(mut conns) = self.conns.try_borrow_mut() {
            conns.push(c);
            self.trim_idle(&mut conns);
        }
    }

    /// At most `max` ready connections: the least recently used beyond that are
    /// closed. Busy ones are not counted, so many long streams at once each keep
    /// their connection for the next request instead of a new TLS handshake.
    fn trim_idle(&self, conns: &mut Vec<Conn>) {
        let mut idle = conns.iter().filter(|c| c.tx.is_ready()).count();
        while idle > self.max {
            let oldest = conns.iter().enumerate().filter(|(_, c)| c.tx.is_ready()).min_by_key(|(_, c)| c.used);
            let Some((i, _)) = oldest else { break };
            conns.swap_remove(i);
            idle -= 1;
        }
    }

    /// Close connections that have been idle too long, and forget closed ones.
    fn sweep(&self, now: Instant) {
        if let Ok(mut conns) = self.conns.try_borrow_mut() {
            conns.retain(|c| !self.gone(c, now));
            self.trim_idle(&mut conns);
        }
    }
}

/// What sending on a pooled connection gives: the response, or the error with
/// the request when it was handed back unsent.
type Sent = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamBody>>>;

/// The send on a ready connection (its future, not boxed), or the request back.
// the request passes through once, by value; boxing it would allocate per request
#[allow(clippy::large_enum_variant)]
enum Checkout<F> {
    Sending(F),
    NoneReady(Request<UpstreamBody>),
}

/// Whether this thread has a pool (data-plane threads do).
pub fn installed() -> bool {
    POOL.with(|p| p.get().is_some())
}

/// Close this thread's idle connections that have outlived the idle timeout;
/// returns the timeout (how often to call again), or None without a pool.
pub fn sweep() -> Option<Duration> {
    POOL.with(|p| {
        p.get().map(|p| {
            p.sweep(Instant::now());
            p.idle_timeout
        })
    })
}

/// Send `req` (absolute URI) through this thread's pool. Call only where
/// [`installed`] is true.
pub async fn send(mut req: Request<UpstreamBody>) -> Result<Response<Incoming>, SendError> {
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(SendError::Uri);
    };
    let https = *scheme == Scheme::HTTPS;
    *req.uri_mut() = origin_form(&uri);
    let pooled = POOL.with(|p| match p.get() {
        Some(p) => p.send_pooled((https, authority), req, Instant::now()),
        None => Checkout::NoneReady(req),
    });
    let req = match pooled {
        Checkout::Sending(sending) => match sending.await {
            Ok(resp) => return Ok(resp),
            // handed back unsent: the connection closed under it, so a new one
            Err(mut e) => match e.take_message() {
                Some(req) => req,
                None => return Err(SendError::Http(e.into_error())),
            },
        },
        Checkout::NoneReady(req) => req,
    };
    send_on_new(&uri, https, authority, req).await
}

async fn send_on_new(
    uri: &Uri,
    https: bool,
    authority: &Authority,
    mut req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    let Some((mut connector, h1)) = POOL.with(|p| p.get().map(|p| (p.connector.clone(), p.h1.clone()))) else {
        return Err(SendError::NoPool);
    };
    std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(SendError::Connect)?;
    let io = connector.call(uri.clone()).await.map_err(SendError::Connect)?;
    let (mut tx, conn) = h1.handshake(io).await?;
    // boxed first: proving the connection future `Send` inside the spawned block
    // trips a compiler limitation on the body's error conversion
    let conn: std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>> = Box::pin(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    let host = host_header(uri).ok_or(SendError::Uri)?;
    req.headers_mut().insert(HOST, host.clone());
    let sending = tx.try_send_request(req);
    let c = Conn { https, authority: authority.clone(), host, tx, used: Instant::now() };
    POOL.with(|p| {
        if let Some(p) = p.get() {
            p.keep(c);
        }
    });
    sending.await.map_err(|e| SendError::Http(e.into_error()))
}

fn origin_form(uri: &Uri) -> Uri {
    let pq = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

/// `Host` as a client sends it: the host, and the port when it is not the
/// scheme's default.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = if uri.scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 };
    match uri.port_u16() {
        Some(p) if p != default => HeaderValue::from_str(&format!("{host}:{p}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 upstream: counts connections, records each request head,
    /// answers `ok` after `delay`, and closes a connection after `close_after`
    /// responses when set (as an upstream closing idle connections does).
    struct Upstream {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn upstream(delay: Duration, close_after: Option<usize>) -> Upstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (accepted, heads) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (a, h) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                tokio::spawn(async move {
                    let (mut buf, mut served) = (Vec::new(), 0);
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // requests here have no body: a head ends the request
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            h.lock().unwrap().push(String::from_utf8_lossy(&buf[..end]).into_owned());
                            buf.drain(..end + 4);
                            tokio::time::sleep(delay).await;
                            let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(resp).await.is_err() {
                                return;
                            }
                            served += 1;
                            if close_after == Some(served) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, accepted, heads }
    }

    fn install(idle: Duration, max: usize) {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Pool::with(connector, 64 << 10, idle, max).install();
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let req = Request::get(format!("http://{addr}{path}")).body(crate::upstream::full("")).unwrap();
        let resp = send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn pooled() -> usize {
        POOL.with(|p| p.get().map_or(0, |p| p.conns.borrow().len()))
    }

    // each test runs on its own thread (a current-thread runtime), as a data-plane thread does

    #[tokio::test(flavor = "current_thread")]
    async fn sequential_requests_share_one_connection_with_host_and_origin_form() {
        install(Duration::from_secs(90), 8);
        let up = upstream(Duration::ZERO, None).await;
        for i in 0..5 {
            assert_eq!(get(up.addr, &format!("/v1/messages?i={i}")).await, "ok");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
        let heads = up.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 5);
        assert!(heads[4].starts_with("GET /v1/messages?i=4 HTTP/1.1\r\n"), "{}", heads[4]);
        assert!(heads[4].to_ascii_lowercase().contains(&format!("host: {}", up.addr)), "{}", heads[4]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_upstream_closed_is_replaced() {
        install(Duration::from_secs(90), 8);
        let up = upstream(Duration::ZERO, Some(1)).await;
        for _ in 0..3 {
            assert_eq!(get(up.addr, "/").await, "ok");
            // the upstream closes after each response; give the connection task time to see it
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
        assert!(pooled() <= 1, "closed connections are forgotten");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_requests_keep_their_connections_and_idle_ones_are_capped() {
        install(Duration::from_secs(90), 2);
        let up = upstream(Duration::from_millis(100), None).await;
        let all = futures_util::future::join_all((0..4).map(|_| get(up.addr, "/"))).await;
        assert!(all.iter().all(|b| b == "ok"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 4, "one connection per concurrent request");
        // busy connections are not capped: four at once reuse the four (once their
        // connection tasks have seen the responses end)
        tokio::time::sleep(Duration::from_millis(20)).await;
        let four = futures_util::future::join_all((0..4).map(|_| get(up.addr, "/"))).await;
        assert!(four.iter().all(|b| b == "ok"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 4, "no new connection while four are kept");
        // idle ones beyond the cap are closed at the sweep
        assert_eq!(pooled(), 4);
        sweep();
        assert_eq!(pooled(), 2, "two idle connections are kept");
        let two = futures_util::future::join_all((0..2).map(|_| get(up.addr, "/"))).await;
        assert!(two.iter().all(|b| b == "ok"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_expire() {
        install(Duration::from_millis(100), 8);
        let up = upstream(Duration::ZERO, None).await;
        assert_eq!(get(up.addr, "/").await, "ok");
        assert_eq!(pooled(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(sweep(), Some(Duration::from_millis(100)));
        assert_eq!(pooled(), 0, "the sweep closed the idle connection");
        assert_eq!(get(up.addr, "/").await, "ok");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    }

    /// A certificate for `localhost` from a private CA, made with the openssl CLI.
    fn localhost_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let steps: [Vec<&str>; 3] = [
            [&["req", "-x509", "-days", "1", "-subj", "/CN=pool test CA"][..], &ec].concat(),
            [&["req", "-subj", "/CN=localhost"][..], &ec].concat(),
            vec!["x509", "-req", "-days", "1", "-CAcreateserial"],
        ];
        let files = [
            vec!["-keyout".to_string(), p("ca.key"), "-out".into(), p("ca.crt")],
            vec!["-keyout".to_string(), p("up.key"), "-out".into(), p("up.csr")],
            ["-in", &p("up.csr"), "-CA", &p("ca.crt"), "-CAkey", &p("ca.key"), "-extfile", &p("san.ext"), "-out"]
                .iter()
                .map(|s| s.to_string())
                .chain([p("up.crt")])
                .collect(),
        ];
        for (step, files) in steps.iter().zip(&files) {
            let out = std::process::Command::new("openssl").args(step).args(files).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        (dir.join("ca.crt"), dir.join("up.crt"), dir.join("up.key"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn https_upstreams_are_pooled_with_sni_and_host() {
        use rustls_pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = localhost_cert(dir.path());
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&cert, &key).unwrap());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (accepted, hosts) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (a, h) = (accepted.clone(), hosts.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let tls = acceptor.accept(tcp).await.unwrap();
                let h = h.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let host = req.headers().get(HOST).map(|v| v.to_str().unwrap().to_string());
                    h.lock().unwrap().push((host, req.uri().to_string()));
                    async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc),
                );
            }
        });

        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Pool::with(connector, 64 << 10, Duration::from_secs(90), 8).install();

        for _ in 0..3 {
            let req = Request::post(format!("https://localhost:{port}/v1/messages?beta=true"))
                .body(crate::upstream::full("{}"))
                .unwrap();
            let resp = send(req).await.unwrap();
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TLS connection, reused");
        let want = (Some(format!("localhost:{port}")), "/v1/messages?beta=true".to_string());
        assert_eq!(hosts.lock().unwrap().clone(), vec![want; 3]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_failures_are_errors_not_panics() {
        install(Duration::from_secs(90), 8);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let req = Request::get(format!("http://{addr}/")).body(crate::upstream::full("")).unwrap();
        assert!(matches!(send(req).await, Err(SendError::Connect(_))));
        let req = Request::get("/relative").body(crate::upstream::full("")).unwrap();
        assert!(matches!(send(req).await, Err(SendError::Uri)));
    }

    #[test]
    fn a_thread_without_a_pool_gets_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        std::thread::spawn(move || {
            assert!(!installed());
            let req = Request::get("http://127.0.0.1:9/").body(crate::upstream::full("")).unwrap();
            assert!(matches!(rt.block_on(send(req)), Err(SendError::NoPool)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn host_header_has_the_port_only_when_it_is_not_the_default() {
        let h = |u: &str| host_header(&u.parse().unwrap()).unwrap();
        assert_eq!(h("https://api.anthropic.com/v1/messages"), "api.anthropic.com");
        assert_eq!(h("https://api.anthropic.com:443/v1/messages"), "api.anthropic.com");
        assert_eq!(h("https://api.anthropic.com:8443/v1"), "api.anthropic.com:8443");
        assert_eq!(h("http://127.0.0.1:80/"), "127.0.0.1");
        assert_eq!(h("http://127.0.0.1:9000/v1/messages?beta=true"), "127.0.0.1:9000");
        assert_eq!(h("http://[::1]:9000/"), "[::1]:9000");
    }

    #[test]
    fn the_request_line_uses_the_origin_form() {
        let o = |u: &str| origin_form(&u.parse().unwrap()).to_string();
        assert_eq!(o("http://127.0.0.1:9000/v1/messages?beta=true"), "/v1/messages?beta=true");
        assert_eq!(o("https://api.anthropic.com"), "/");
    }
}
