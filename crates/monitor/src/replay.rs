//! `keyward monitor replay`: the same engine over a recorded JSONL trace, in
//! simulated time. One line is one of
//!
//! ```text
//! {"type":"key","key":"KEY_ID","service":"S","upstream":"NAME","env":"prod","tz":"Europe/Berlin","budget_usd":N}
//! {"type":"request","ts":"RFC3339","key":"KEY_ID","service":"S","source_ip":"IP","model":"M","input_tokens":N,"output_tokens":N,"status":200}
//! {"type":"upstream_usage","ts":"RFC3339","upstream":"NAME","input_tokens":N,"output_tokens":N}
//! {"type":"presented_revoked","ts":"RFC3339","key":"KEY_ID","source_ip":"IP"}
//! ```
//!
//! An `upstream_usage` line's `ts` is the start of its minute and comes before that
//! minute's requests. Blank lines are skipped; anything else malformed is an error
//! naming the line.

use crate::alert::{AlertEvent, Rule, Severity};
use crate::config::{ConfigError, MonitorConfig};
use crate::engine::{Engine, MetaError};
use crate::event::{Event, KeyMeta, PresentedRevoked, Request, UpstreamUsage};
use keyward_core::prices::PriceTable;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("trace line {line}: {msg}")]
    Line { line: u64, msg: String },
    #[error("trace line {line}: {source}")]
    Meta { line: u64, source: MetaError },
}

/// One alert as replay prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayAlert {
    pub rule: Rule,
    pub key: Option<String>,
    pub upstream: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayOutput {
    /// Raised alerts in the order they were raised.
    pub alerts: Vec<ReplayAlert>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Key {
        key: String,
        service: String,
        upstream: Option<String>,
        env: String,
        tz: Option<String>,
        budget_usd: Option<f64>,
    },
    Request {
        ts: String,
        key: String,
        service: String,
        source_ip: Option<String>,
        model: Option<String>,
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        cache_creation_input_tokens: u64,
        #[serde(default)]
        cache_read_input_tokens: u64,
        status: u16,
    },
    UpstreamUsage {
        ts: String,
        upstream: String,
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        cache_creation_input_tokens: u64,
        #[serde(default)]
        cache_read_input_tokens: u64,
    },
    PresentedRevoked {
        ts: String,
        key: String,
        source_ip: Option<String>,
    },
}

/// RFC 3339 to Unix milliseconds.
pub fn parse_ts(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Unix milliseconds to RFC 3339 (UTC).
pub fn format_ts(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn ip(line: u64, s: Option<String>) -> Result<Option<IpAddr>, ReplayError> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ReplayError::Line { line, msg: format!("source_ip {v:?} is not an IP address") }),
    }
}

fn to_event(line: u64, l: Line) -> Result<Event, ReplayError> {
    let ts = |s: &str| parse_ts(s).ok_or_else(|| ReplayError::Line { line, msg: format!("ts {s:?} is not RFC 3339") });
    Ok(match l {
        Line::Key { key, service, upstream, env, tz, budget_usd } => {
            Event::Key(KeyMeta { key, service, upstream, env, tz, budget_usd })
        }
        Line::Request {
            ts: t,
            key,
            service,
            source_ip,
            model,
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            status,
        } => Event::Request(Request {
            ts_ms: ts(&t)?,
            key,
            service,
            source_ip: ip(line, source_ip)?,
            model,
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            status,
            cost_usd: None,
        }),
        Line::UpstreamUsage {
            ts: t,
            upstream,
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
        } => Event::UpstreamUsage(UpstreamUsage {
            ts_ms: ts(&t)?,
            upstream,
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
        }),
        Line::PresentedRevoked { ts: t, key, source_ip } => {
            Event::PresentedRevoked(PresentedRevoked { ts_ms: ts(&t)?, key, source_ip: ip(line, source_ip)? })
        }
    })
}

/// Replay a trace through a fresh engine with the built-in price table.
pub fn replay(trace: impl BufRead, cfg: &MonitorConfig) -> Result<ReplayOutput, ReplayError> {
    let prices = PriceTable::builtin().map_err(|e| ConfigError::Prices(e.to_string()))?;
    replay_with(trace, cfg, prices)
}

/// Replay with a given price table (e.g. the built-in one with `[[prices]]` overrides).
pub fn replay_with(
    mut trace: impl BufRead,
    cfg: &MonitorConfig,
    prices: PriceTable,
) -> Result<ReplayOutput, ReplayError> {
    let mut engine = Engine::new(cfg, prices)?;
    let mut out = ReplayOutput::default();
    let push = |events: Vec<AlertEvent>, out: &mut ReplayOutput| {
        for e in events {
            if let AlertEvent::Raised(a) = e {
                out.alerts.push(ReplayAlert {
                    rule: a.rule,
                    key: a.key,
                    upstream: a.upstream,
                    at: format_ts(a.at_ms),
                    severity: a.severity,
                });
            }
        }
    };
    let mut buf = String::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if trace.read_line(&mut buf)? == 0 {
            break;
        }
        n += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| ReplayError::Line { line: n, msg: e.to_string() })?;
        match to_event(n, line)? {
            Event::Key(meta) => engine.upsert_key(meta).map_err(|source| ReplayError::Meta { line: n, source })?,
            ev => push(engine.observe(&ev), &mut out),
        }
    }
    push(engine.finish(), &mut out);
    Ok(out)
}
