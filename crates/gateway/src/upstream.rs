//! The pooled HTTP client to the upstream API (keep-alive, TLS via rustls).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{Either, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward_core::config::Config;

/// A request body to the upstream: whole, or streamed as the client sends it
/// (large request bodies, see `bodyscan`).
pub type UpstreamBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>>;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// A whole request body.
pub fn full(body: impl Into<Bytes>) -> UpstreamBody {
    Either::Left(Full::new(body.into()))
}

thread_local! {
    /// A data-plane thread's own pool (see `server::spawn_data_plane`): requests
    /// sent from that thread use it, so their connection tasks run on that thread.
    static THREAD_CLIENT: std::cell::OnceCell<UpstreamClient> = const { std::cell::OnceCell::new() };
}

/// Give this thread its own pool; later calls on the same thread change nothing.
pub fn set_thread_client(c: UpstreamClient) {
    THREAD_CLIENT.with(|t| {
        let _ = t.set(c);
    });
}

/// Send through this thread's pool when it has one, else through `shared`.
pub fn request(
    shared: &UpstreamClient,
    req: http::Request<UpstreamBody>,
) -> hyper_util::client::legacy::ResponseFuture {
    THREAD_CLIENT.with(|t| t.get().unwrap_or(shared).request(req))
}

pub fn client(cfg: &Config) -> Result<UpstreamClient, std::io::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .http1_max_buf_size(cfg.conn_buf_bytes)
        .build(https))
}
