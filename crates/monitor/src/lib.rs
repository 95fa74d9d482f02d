//! keyward's usage monitor: per-key baselines, the eight anomaly rules, alert
//! deduplication and resolution, and trace replay. Pure and synchronous — no
//! network, no database, no clock: time is what the events say.
//!
//! Driving it (the gateway does this live, `replay` does it over a trace):
//!
//! ```no_run
//! # use keyward_monitor::*;
//! # fn history() -> Vec<Event> { vec![] }
//! # fn next_event() -> Option<Event> { None }
//! let prices = keyward_core::prices::PriceTable::builtin().unwrap();
//! let mut engine = Engine::new(&MonitorConfig::default(), prices).unwrap();
//! // 1. key metadata (and again whenever a key changes)
//! engine.upsert_key(KeyMeta { key: "key_1".into(), service: "billing".into(),
//!     upstream: Some("prod-main".into()), env: "prod".into(),
//!     tz: Some("Europe/Berlin".into()), budget_usd: Some(500.0) }).unwrap();
//! // 2. the stored usage of the last `baseline_days`, oldest first: learned, no alerts
//! for ev in history() { let _ = engine.learn(&ev); }
//! // 3. live events in time order, and `advance_to(now)` every few seconds
//! while let Some(ev) = next_event() {
//!     for a in engine.observe(&ev) {
//!         match a {
//!             AlertEvent::Raised(alert) => { /* deliver; alert.action may say Suspend */ }
//!             AlertEvent::Resolved { .. } => { /* resolve in the sinks */ }
//!         }
//!     }
//! }
//! ```
//!
//! Time zones: `jiff` with its bundled time-zone database (`tzdb-bundle-always`):
//! already in the dependency graph (through `gix`), one crate for RFC 3339 parsing,
//! zone rules and civil dates, and zone rules that do not depend on whether the
//! host (a distroless container, say) has `/usr/share/zoneinfo`.

pub mod alert;
pub mod config;
pub mod engine;
pub mod event;
pub mod replay;

pub use alert::{Alert, AlertEvent, DedupKey, Rule, Severity, Subject};
pub use config::{Action, ConfigError, MonitorConfig, Settings};
pub use engine::{Engine, MetaError};
pub use event::{Event, KeyMeta, PresentedRevoked, Request, UpstreamUsage};
pub use replay::{replay, replay_with, ReplayAlert, ReplayError, ReplayOutput};
