//! keyward's gateway: the data plane (Anthropic-compatible proxy), the admin
//! plane, metering, and installation. See ARCHITECTURE.md for the phase chart.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod authguard;
pub mod bodyscan;
pub mod deliver;
pub mod error;
pub mod index;
pub mod install;
pub mod keys;
pub mod limits;
pub mod maintenance;
pub mod meter;
pub mod metrics;
pub mod monitor;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod shield;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod upstreams;

pub use state::App;
