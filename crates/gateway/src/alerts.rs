//! Alert delivery: the `[alerts]` config, the notification formats (generic
//! webhook signed with HMAC-SHA256, Slack incoming webhook, PagerDuty Events
//! API v2), and the delivery worker.
//!
//! Every alert event (trigger, resolve) is queued in the store for every sink
//! in the same transaction that records it, so nothing is lost on a restart;
//! the worker sends what is due, retries failures with exponential back-off,
//! and logs and counts every outcome. It never runs on the request path.
//!
//! Sink URLs (a Slack webhook URL is a credential), webhook secrets and
//! PagerDuty routing keys are secrets: never logged, never in an error, never
//! in the API. Each may be a value or a secret reference (`env:VAR`, ...).

use crate::state::{now_ms, rfc3339, App};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use keyward_secrets::SecretRef;
use keyward_store::{AlertRow, DeliveryRow};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying `sha256=<hex HMAC-SHA256 of the raw body>` on webhook deliveries.
pub const SIGNATURE_HEADER: &str = "x-keyward-signature";

#[derive(Debug, thiserror::Error)]
#[error("alerts.{field}: {msg}")]
pub struct AlertsConfigError {
    field: String,
    msg: String,
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> AlertsConfigError {
    AlertsConfigError { field: field.into(), msg: msg.into() }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    sinks: Vec<RawSink>,
    /// Attempts per delivery before it is given up (default 12).
    max_attempts: Option<u32>,
    /// First retry delay, doubled on each further failure (default "5s").
    backoff: Option<String>,
    /// Longest retry delay (default "15m").
    max_backoff: Option<String>,
    /// Per-attempt timeout (default "10s").
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Option<String>,
    kind: String,
    url: String,
    secret: Option<String>,
    routing_key: Option<String>,
    /// Only alerts at least this severe (`info`, `warning`, `critical`).
    min_severity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Webhook,
    Slack,
    PagerDuty,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::PagerDuty => "pagerduty",
        }
    }
}

/// A secret-bearing setting: a value, or where to fetch it.
#[derive(Clone)]
pub enum Secretish {
    Value(SecretString),
    Ref(SecretRef),
}

impl fmt::Debug for Secretish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secretish::Value(_) => f.write_str("[redacted]"),
            Secretish::Ref(r) => write!(f, "ref({})", r.scheme()),
        }
    }
}

impl Secretish {
    /// A known secret-reference scheme makes it a reference; anything else is a value.
    fn parse(v: &str) -> Secretish {
        match v.parse::<SecretRef>() {
            Ok(r) if !v.starts_with("http://") && !v.starts_with("https://") => Secretish::Ref(r),
            _ => Secretish::Value(SecretString::from(v.to_string())),
        }
    }

    async fn resolve(&self, app: &App) -> Result<SecretString, String> {
        match self {
            Secretish::Value(v) => Ok(v.clone()),
            Secretish::Ref(r) => {
                let e = app.secrets.entry(r);
                let c = app.secrets.get(&e).await.map_err(|e| format!("secret source unavailable ({e})"))?;
                Ok(c.secret().clone())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    url: Secretish,
    secret: Option<Secretish>,
    routing_key: Option<Secretish>,
    min_severity: u8,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub sinks: Vec<Sink>,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            sinks: Vec::new(),
            max_attempts: 12,
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(10),
        }
    }
}

fn severity_rank(s: &str) -> Option<u8> {
    match s {
        "info" => Some(0),
        "warning" => Some(1),
        "critical" => Some(2),
        _ => None,
    }
}

fn dur(field: &str, v: &Option<String>, default: Duration) -> Result<Duration, AlertsConfigError> {
    match v {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t.trim()).map_err(|e| invalid(field, format!("{t:?}: {e}"))),
    }
}

impl AlertsConfig {
    /// Validate the raw `[alerts]` table. A typo is an error.
    pub fn from_toml_value(v: Option<&toml::Value>) -> Result<AlertsConfig, AlertsConfigError> {
        let raw: RawAlerts = match v {
            None => RawAlerts::default(),
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| invalid("", e.message().to_string()))?,
        };
        let d = AlertsConfig::default();
        let mut sinks = Vec::new();
        for (i, s) in raw.sinks.into_iter().enumerate() {
            let field = format!("sinks[{i}]");
            let kind = match s.kind.as_str() {
                "webhook" => SinkKind::Webhook,
                "slack" => SinkKind::Slack,
                "pagerduty" => SinkKind::PagerDuty,
                other => {
                    return Err(invalid(&field, format!("kind {other:?}: use \"webhook\", \"slack\" or \"pagerduty\"")))
                }
            };
            let url = Secretish::parse(s.url.trim());
            if let Secretish::Value(v) = &url {
                let u = v.expose_secret();
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
                    return Err(invalid(format!("{field}.url"), "must be an http(s) URL or a secret reference"));
                }
            }
            if kind == SinkKind::Webhook && s.secret.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(invalid(format!("{field}.secret"), "a webhook needs a secret to sign its bodies with"));
            }
            if kind != SinkKind::Webhook && s.secret.is_some() {
                return Err(invalid(format!("{field}.secret"), "only webhooks are signed"));
            }
            if kind == SinkKind::PagerDuty && s.routing_key.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(invalid(format!("{field}.routing_key"), "PagerDuty needs the integration's routing key"));
            }
            if kind != SinkKind::PagerDuty && s.routing_key.is_some() {
                return Err(invalid(format!("{field}.routing_key"), "only PagerDuty takes a routing key"));
            }
            let min_severity = match s.min_severity.as_deref() {
                None => 0,
                Some(v) => severity_rank(v)
                    .ok_or_else(|| invalid(format!("{field}.min_severity"), "use info, warning or critical"))?,
            };
            let name = s.name.unwrap_or_else(|| format!("{}-{}", kind.as_str(), i + 1));
            if sinks.iter().any(|o: &Sink| o.name == name) {
                return Err(invalid(&field, format!("duplicate sink name {name:?}")));
            }
            sinks.push(Sink {
                name,
                kind,
                url,
                secret: s.secret.map(|v| Secretish::parse(v.trim())),
                routing_key: s.routing_key.map(|v| Secretish::parse(v.trim())),
                min_severity,
            });
        }
        let max_attempts = raw.max_attempts.unwrap_or(d.max_attempts);
        if max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        Ok(AlertsConfig {
            sinks,
            max_attempts,
            backoff: dur("backoff", &raw.backoff, d.backoff)?,
            max_backoff: dur("max_backoff", &raw.max_backoff, d.max_backoff)?,
            timeout: dur("timeout", &raw.timeout, d.timeout)?,
        })
    }

    pub fn sink(&self, name: &str) -> Option<&Sink> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// One queued delivery per sink that takes this alert's severity.
    pub fn deliveries_for(&self, a: &AlertRow, event: &str, now: i64) -> Vec<DeliveryRow> {
        let rank = severity_rank(&a.severity).unwrap_or(2);
        let payload = json!({"type": "keyward.alert", "event": event, "alert": alert_view(a)}).to_string();
        self.sinks
            .iter()
            .filter(|s| rank >= s.min_severity)
            .map(|s| DeliveryRow {
                id: 0,
                alert_id: a.id.clone(),
                sink: s.name.clone(),
                event: event.to_string(),
                payload: payload.clone(),
                attempts: 0,
                next_attempt_ms: now,
                status: "pending".into(),
                last_error: None,
                created_at_ms: now,
                done_at_ms: None,
            })
            .collect()
    }

    fn retry_delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// An alert as the API and the sinks show it: ids, numbers, a summary. Never a secret.
pub fn alert_view(a: &AlertRow) -> Value {
    json!({
        "id": a.id,
        "rule": a.rule,
        "severity": a.severity,
        "status": a.status,
        "key_id": a.key_id,
        "upstream": a.upstream,
        "summary": a.summary,
        "value": a.value,
        "threshold": a.threshold,
        "action": a.action,
        "raised_at": rfc3339(a.raised_at_ms),
        "last_seen_at": rfc3339(a.last_seen_ms),
        "resolved_at": a.resolved_at_ms.map(rfc3339),
        "acked_at": a.acked_at_ms.map(rfc3339),
        "acked_by": a.acked_by,
        "occurrences": a.occurrences,
        "dedup_key": a.dedup_key,
    })
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn subject(alert: &Value) -> String {
    match (alert["key_id"].as_str(), alert["upstream"].as_str()) {
        (Some(k), _) => format!("key {k}"),
        (None, Some(u)) => format!("upstream key {u}"),
        _ => "keyward".into(),
    }
}

/// The Slack incoming-webhook body.
pub fn slack_body(payload: &Value) -> Value {
    let a = &payload["alert"];
    let resolved = payload["event"] == "resolve";
    let icon = if resolved {
        ":white_check_mark:"
    } else if a["severity"] == "critical" {
        ":rotating_light:"
    } else {
        ":warning:"
    };
    let head = if resolved { "resolved" } else { a["severity"].as_str().unwrap_or("alert") };
    let text = format!(
        "{icon} keyward [{head}] {} on {}: {} (alert {})",
        a["rule"].as_str().unwrap_or("-"),
        subject(a),
        a["summary"].as_str().unwrap_or(""),
        a["id"].as_str().unwrap_or("-"),
    );
    json!({ "text": text })
}

/// The PagerDuty Events API v2 body: `trigger` or `resolve` with a stable `dedup_key`.
pub fn pagerduty_body(payload: &Value, routing_key: &str) -> Value {
    let a = &payload["alert"];
    let dedup = a["dedup_key"].clone();
    if payload["event"] == "resolve" {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup});
    }
    let severity = match a["severity"].as_str() {
        Some("critical") => "critical",
        Some("warning") => "warning",
        _ => "info",
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": format!("keyward {} on {}: {}", a["rule"].as_str().unwrap_or("-"), subject(a), a["summary"].as_str().unwrap_or("")),
            "source": "keyward",
            "severity": severity,
            "component": a["key_id"].as_str().or(a["upstream"].as_str()).unwrap_or("keyward"),
            "group": a["rule"],
            "class": "usage-anomaly",
            "custom_details": a,
        }
    })
}

/// Send one delivery. Errors are short classes (never a URL, body or secret).
async fn attempt(app: &App, cfg: &AlertsConfig, sink: &Sink, d: &DeliveryRow) -> Result<(), String> {
    let url = sink.url.resolve(app).await?;
    let uri: http::Uri = url.expose_secret().parse().map_err(|_| "the sink URL is not a URL".to_string())?;
    let payload: Value = serde_json::from_str(&d.payload).map_err(|_| "unreadable queued payload".to_string())?;
    let mut req = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("user-agent", concat!("keyward/", env!("CARGO_PKG_VERSION")));
    let body: Vec<u8> = match sink.kind {
        SinkKind::Webhook => {
            let body = d.payload.clone().into_bytes();
            let secret = match &sink.secret {
                Some(s) => s.resolve(app).await?,
                None => return Err("no webhook secret".into()),
            };
            let sig = sign(secret.expose_secret().as_bytes(), &body);
            req = req
                .header(SIGNATURE_HEADER, sig)
                .header("x-keyward-event", d.event.as_str())
                .header("x-keyward-delivery", d.id.to_string());
            body
        }
        SinkKind::Slack => slack_body(&payload).to_string().into_bytes(),
        SinkKind::PagerDuty => {
            let rk = match &sink.routing_key {
                Some(s) => s.resolve(app).await?,
                None => return Err("no routing key".into()),
            };
            pagerduty_body(&payload, rk.expose_secret()).to_string().into_bytes()
        }
    };
    let req = req.body(crate::upstream::full(body)).map_err(|_| "could not build the request".to_string())?;
    let resp =
        tokio::time::timeout(cfg.timeout, app.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| if e.is_connect() { "connection failed".to_string() } else { "request failed".to_string() })?;
    let status = resp.status();
    let _ = tokio::time::timeout(cfg.timeout, resp.into_body().collect()).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

/// Send every due delivery once; returns how many were attempted.
pub async fn deliver_due(app: &App) -> usize {
    let cfg = &app.alerts;
    let now = now_ms();
    let due = match app.store.due_deliveries(now, 100).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading queued alert deliveries failed");
            return 0;
        }
    };
    let n = due.len();
    for mut d in due {
        let Some(sink) = cfg.sink(&d.sink) else {
            d.status = "failed".into();
            d.last_error = Some("sink no longer configured".into());
            d.done_at_ms = Some(now);
            tracing::warn!(sink = %d.sink, alert_id = %d.alert_id, "alert delivery dropped: its sink is no longer configured");
            let _ = app.store.update_delivery(&d).await;
            continue;
        };
        let result = attempt(app, cfg, sink, &d).await;
        d.attempts += 1;
        let done = now_ms();
        match result {
            Ok(()) => {
                d.status = "delivered".into();
                d.done_at_ms = Some(done);
                d.last_error = None;
                app.metrics.delivered(sink.kind.as_str());
                tracing::info!(sink = %sink.name, kind = sink.kind.as_str(), alert_id = %d.alert_id, event = %d.event, attempts = d.attempts, "alert delivered");
            }
            Err(e) => {
                let gave_up = d.attempts >= i64::from(cfg.max_attempts);
                app.metrics.delivery_failed(sink.kind.as_str(), gave_up);
                if gave_up {
                    d.status = "failed".into();
                    d.done_at_ms = Some(done);
                    tracing::error!(sink = %sink.name, kind = sink.kind.as_str(), alert_id = %d.alert_id, attempts = d.attempts, reason = %e, "alert delivery failed; giving up");
                } else {
                    let wait = cfg.retry_delay(d.attempts.max(1) as u32);
                    d.next_attempt_ms = done + wait.as_millis() as i64;
                    tracing::warn!(sink = %sink.name, kind = sink.kind.as_str(), alert_id = %d.alert_id, attempts = d.attempts, reason = %e, retry_in_ms = wait.as_millis() as u64, "alert delivery failed; will retry");
                }
                d.last_error = Some(e);
            }
        }
        if let Err(e) = app.store.update_delivery(&d).await {
            tracing::warn!(error = %e, "recording an alert delivery failed");
        }
    }
    n
}

/// The delivery worker: sends what is due every second, or at once when woken.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        while deliver_due(&app).await > 0 {
            if *stop.borrow() {
                return;
            }
        }
        tokio::select! {
            _ = app.alert_wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(t: &str) -> Result<AlertsConfig, AlertsConfigError> {
        let v: toml::Value = toml::from_str(t).unwrap();
        AlertsConfig::from_toml_value(v.get("alerts"))
    }

    #[test]
    fn config_is_strict() {
        let ok = parse(
            r#"
            [[alerts.sinks]]
            kind = "webhook"
            url = "http://127.0.0.1:1/hook"
            secret = "env:HOOK_SECRET"
            [[alerts.sinks]]
            kind = "pagerduty"
            url = "https://events.pagerduty.com/v2/enqueue"
            routing_key = "R0UTING"
            min_severity = "critical"
            "#,
        )
        .unwrap();
        assert_eq!(ok.sinks.len(), 2);
        assert_eq!(ok.sinks[0].name, "webhook-1");
        assert!(matches!(ok.sinks[0].secret, Some(Secretish::Ref(_))));
        assert!(matches!(ok.sinks[1].routing_key, Some(Secretish::Value(_))));
        assert!(!format!("{ok:?}").contains("R0UTING"), "Debug redacts secrets");
        for bad in [
            "[[alerts.sinks]]\nkind = \"email\"\nurl = \"http://x\"",
            "[[alerts.sinks]]\nkind = \"webhook\"\nurl = \"http://x\"",
            "[[alerts.sinks]]\nkind = \"slack\"\nurl = \"ftp://x\"",
            "[[alerts.sinks]]\nkind = \"pagerduty\"\nurl = \"http://x\"",
            "[[alerts.sinks]]\nkind = \"slack\"\nurl = \"http://x\"\nsecrt = \"x\"",
            "[alerts]\nbackof = \"1s\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c =
            AlertsConfig { backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(5), ..Default::default() };
        let d: Vec<u64> = (1..=5).map(|a| c.retry_delay(a).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn pagerduty_and_slack_bodies() {
        let p = json!({"event": "trigger", "alert": {"id": "alr_1", "rule": "rpm", "severity": "critical",
            "key_id": "key_1", "upstream": null, "summary": "too many", "dedup_key": "keyward:rpm:key:key_1"}});
        let pd = pagerduty_body(&p, "rk");
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "keyward:rpm:key:key_1");
        assert_eq!(pd["payload"]["severity"], "critical");
        let r = json!({"event": "resolve", "alert": p["alert"].clone()});
        assert_eq!(
            pagerduty_body(&r, "rk"),
            json!({"routing_key": "rk", "event_action": "resolve", "dedup_key": "keyward:rpm:key:key_1"})
        );
        let s = slack_body(&p);
        assert!(s["text"].as_str().unwrap().contains("rpm on key key_1: too many"));
    }
}
