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

/// How connections to the upstream are made: TCP (no Nagle, keep-alive probes,
/// connect timeout), then TLS for `https` URLs.
pub type Connector = HttpsConnector<HttpConnector>;

/// The shared pooled client: the admin plane's and background tasks' requests
/// (the data plane's threads each have a [`crate::pool::Pool`]).
pub type UpstreamClient = Client<Connector, UpstreamBody>;

/// A whole request body.
pub fn full(body: impl Into<Bytes>) -> UpstreamBody {
    Either::Left(Full::new(body.into()))
}

/// Why a request to the upstream failed (no headers or body in it).
pub type RequestError = Box<dyn std::error::Error + Send + Sync>;

/// Send through this thread's own pool when it has one (data-plane threads,
/// see `server::spawn_data_plane`), else through `shared`.
pub async fn request(
    shared: &UpstreamClient,
    req: http::Request<UpstreamBody>,
) -> Result<http::Response<hyper::body::Incoming>, RequestError> {
    if crate::pool::installed() {
        Ok(crate::pool::send(req).await?)
    } else {
        Ok(shared.request(req).await?)
    }
}

pub fn connector(cfg: &Config) -> Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().wrap_connector(http)
}

pub fn client(cfg: &Config) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .http1_max_buf_size(cfg.conn_buf_bytes)
        .build(connector(cfg))
}
