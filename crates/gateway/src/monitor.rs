//! The usage monitor, live: the `keyward-monitor` engine as a background task.
//!
//! Fed through one bounded queue ([`MonitorFeed`]) that never blocks the
//! request path (full: the event is dropped and counted):
//! - usage records, by the metering writer once a batch is stored;
//! - presentations of revoked, suspended, expired and rotated-out secrets, by
//!   authentication;
//! - the Anthropic Admin API's usage report per upstream key and minute, by
//!   the out-of-band poller ([`run_usage_report_poller`]).
//!
//! At start the engine learns the store's last `baseline_days` of usage; it
//! keeps learning from live traffic (its hour-of-week history rolls forward),
//! and key metadata (service, environment, upstream, budget) is refreshed
//! every minute. Raised alerts are stored (deduplicated per key and rule)
//! with their deliveries queued, resolved ones likewise; a rule with
//! `action = "suspend"` suspends the key as `keyward key suspend` does.

use crate::state::{now_ms, App};
use keyward_core::usage::UsageRecord;
use keyward_monitor::{Action, AlertEvent, Engine, Event, KeyMeta, MonitorConfig, PresentedRevoked, UpstreamUsage};
use keyward_store::{AlertRow, KeyStatus};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Monitor events waiting beyond this many are dropped and counted.
const QUEUE_CAPACITY: usize = 65_536;
/// Usage records read per page when warming up.
const WARM_UP_PAGE: usize = 10_000;
/// How often time advances in the engine without events.
const TICK: Duration = Duration::from_secs(5);
/// How often key metadata is re-read from the index.
const REFRESH_KEYS_MS: i64 = 60_000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

#[expect(
    clippy::large_enum_variant,
    reason = "usage records are nearly every event; boxing them would allocate once per request"
)]
pub enum MonitorInput {
    Usage(UsageRecord),
    Presented { key_id: String, ip: Option<IpAddr>, ts_ms: i64 },
    Upstream(UpstreamUsage),
}

/// The sending side of the monitor's queue. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct MonitorFeed {
    tx: mpsc::Sender<MonitorInput>,
    dropped: Arc<AtomicU64>,
}

impl MonitorFeed {
    pub fn new() -> (MonitorFeed, mpsc::Receiver<MonitorInput>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (MonitorFeed { tx, dropped: Arc::new(AtomicU64::new(0)) }, rx)
    }

    pub fn send(&self, ev: MonitorInput) {
        if self.tx.try_send(ev).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "monitor queue full or closed; monitor events dropped");
            }
        }
    }

    /// A stale secret of `key_id` was presented (authentication's refusal path).
    pub fn presented_stale(&self, key_id: &str, ip: Option<IpAddr>, ts_ms: i64) {
        self.send(MonitorInput::Presented { key_id: key_id.to_string(), ip, ts_ms });
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// `[monitor]` of the config, or the defaults.
pub fn monitor_config(cfg: &keyward_core::config::Config) -> Result<MonitorConfig, String> {
    let m = match &cfg.monitor {
        None => MonitorConfig::default(),
        Some(v) => MonitorConfig::from_toml_value(v.clone()).map_err(|e| e.to_string())?,
    };
    m.settings().map_err(|e| e.to_string())?;
    Ok(m)
}

struct Live {
    app: Arc<App>,
    engine: Engine,
    /// Key id -> (upstream name, env) last given to the engine.
    known: keyward_core::FastMap<String, Option<String>>,
    /// Upstream id -> name.
    upstream_names: keyward_core::FastMap<String, String>,
    /// Alerts open in the store that this engine has not raised (from before a
    /// restart): dedup key -> since when; resolved when not re-raised in time.
    inherited: HashMap<String, i64>,
    resolve_after_ms: i64,
    last_refresh_ms: i64,
}

impl Live {
    async fn refresh_upstreams(&mut self) {
        match self.app.store.list_upstreams().await {
            Ok(ups) => {
                self.upstream_names = ups.into_iter().map(|u| (u.id, u.name)).collect();
            }
            Err(e) => tracing::warn!(error = %e, "monitor: reading upstreams failed"),
        }
    }

    fn meta_of(&self, e: &crate::index::KeyEntry, upstream: Option<String>) -> KeyMeta {
        KeyMeta {
            key: e.id.clone(),
            service: e.service_name.clone(),
            upstream,
            env: e.env.as_str().to_string(),
            tz: None,
            budget_usd: e.policy().policy.budget_usd,
        }
    }

    /// Fresh metadata (budget, serving upstream) for the keys the engine tracks.
    /// A key joins the engine on its first event ([`Live::ensure_key`]), so the
    /// engine's memory grows with the keys in use, not with the inventory: every
    /// rule acts on a key's requests or presented secrets, and a key with none
    /// has nothing to watch.
    async fn refresh_keys(&mut self) {
        self.refresh_upstreams().await;
        let serving: HashMap<_, _> =
            self.app.upstreams.all().into_iter().map(|(env, u)| (env, u.name.clone())).collect();
        let tracked: Vec<String> = self.known.keys().cloned().collect();
        for id in tracked {
            let Some(e) = self.app.keys.get(&id) else { continue };
            let upstream = self.known.get(&e.id).cloned().flatten().or_else(|| serving.get(&e.env).cloned());
            let meta = self.meta_of(&e, upstream.clone());
            if let Err(err) = self.engine.upsert_key(meta) {
                tracing::warn!(key_id = %e.id, error = %err, "monitor: key metadata");
            }
            self.known.insert(e.id.clone(), upstream);
        }
        self.last_refresh_ms = now_ms();
    }

    /// Make sure the engine knows the key and the upstream its requests use.
    async fn ensure_key(&mut self, key_id: &str, upstream_id: Option<&str>) {
        if upstream_id.is_some_and(|id| !self.upstream_names.contains_key(id)) {
            self.refresh_upstreams().await;
        }
        let upstream = upstream_id.and_then(|id| self.upstream_names.get(id));
        let current = self.known.get(key_id);
        let changed = match (current, upstream) {
            (None, _) => true,
            (Some(cur), Some(u)) => cur.as_deref() != Some(u.as_str()),
            (Some(_), None) => false,
        };
        if !changed {
            return;
        }
        let upstream = upstream.cloned().or_else(|| current.cloned().flatten());
        if let Some(e) = self.app.keys.get(key_id) {
            let meta = self.meta_of(&e, upstream.clone());
            let _ = self.engine.upsert_key(meta);
        }
        self.known.insert(key_id.to_string(), upstream);
    }

    fn request_event(&self, r: UsageRecord) -> Event {
        let service = self.app.keys.get(&r.key_id).map(|e| e.service_name.clone()).unwrap_or(r.service_id);
        Event::Request(keyward_monitor::Request {
            ts_ms: r.ts_ms,
            key: r.key_id,
            service,
            source_ip: r.source_ip,
            model: r.model,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            cache_creation_input_tokens: r.usage.cache_creation_input_tokens,
            cache_read_input_tokens: r.usage.cache_read_input_tokens,
            status: r.status,
            cost_usd: r.cost_usd,
        })
    }

    /// Learn the last `baseline_days` of stored usage (no alerts).
    async fn warm_up(&mut self, baseline_ms: i64) {
        let since = now_ms() - baseline_ms;
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let page = match self.app.store.usage_page(since, after, WARM_UP_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "monitor: reading usage history failed; baselines start from what was read");
                    break;
                }
            };
            let len = page.len();
            for (seq, r) in page {
                after = seq;
                n += 1;
                self.ensure_key(&r.key_id, r.upstream_id.as_deref()).await;
                let ev = self.request_event(r);
                let _ = self.engine.learn(&ev);
            }
            if len < WARM_UP_PAGE {
                break;
            }
        }
        tracing::info!(records = n, days = baseline_ms / DAY_MS, "monitor: baselines learned from stored usage");
    }

    async fn handle(&mut self, input: MonitorInput) {
        let ev = match input {
            MonitorInput::Usage(r) => {
                self.ensure_key(&r.key_id, r.upstream_id.as_deref()).await;
                self.request_event(r)
            }
            MonitorInput::Presented { key_id, ip, ts_ms } => {
                self.ensure_key(&key_id, None).await;
                Event::PresentedRevoked(PresentedRevoked { ts_ms, key: key_id, source_ip: ip })
            }
            MonitorInput::Upstream(u) => Event::UpstreamUsage(u),
        };
        let out = self.engine.observe(&ev);
        self.process(out).await;
    }

    async fn tick(&mut self) {
        let now = now_ms();
        if now - self.last_refresh_ms >= REFRESH_KEYS_MS {
            self.refresh_keys().await;
        }
        let out = self.engine.advance_to(now);
        self.process(out).await;
        // alerts left open by a previous run whose condition this run has not seen
        let open: std::collections::HashSet<String> = self.engine.open_alerts().map(|a| a.dedup_key.clone()).collect();
        let due: Vec<String> = self
            .inherited
            .iter()
            .filter(|(k, since)| !open.contains(*k) && now - **since >= self.resolve_after_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.inherited.remove(&k);
            self.resolve(&k, now).await;
        }
    }

    async fn process(&mut self, events: Vec<AlertEvent>) {
        for ev in events {
            match ev {
                AlertEvent::Raised(a) => self.raise(a).await,
                AlertEvent::Resolved { dedup_key, at_ms, .. } => self.resolve(&dedup_key, at_ms).await,
            }
        }
    }

    async fn raise(&mut self, a: keyward_monitor::Alert) {
        self.inherited.remove(&a.dedup_key);
        let now = now_ms();
        let row = AlertRow {
            id: keyward_core::ids::new_id("alr"),
            dedup_key: a.dedup_key.clone(),
            rule: a.rule.as_str().to_string(),
            severity: a.severity.as_str().to_string(),
            key_id: a.key.clone(),
            upstream: a.upstream.clone(),
            summary: a.summary.clone(),
            value: a.value,
            threshold: a.threshold,
            action: a.action.map(|Action::Suspend| "suspend".to_string()),
            status: "open".into(),
            raised_at_ms: a.at_ms,
            last_seen_ms: a.at_ms,
            resolved_at_ms: None,
            acked_at_ms: None,
            acked_by: None,
            occurrences: 1,
        };
        let deliveries = self.app.alerts.deliveries_for(&row, "trigger", now);
        let stored = retry(|| self.app.store.raise_alert(&row, &deliveries)).await;
        let (row, new) = match stored {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, rule = %a.rule, "monitor: storing an alert failed");
                return;
            }
        };
        if !new {
            return;
        }
        self.app.metrics.alert_raised(a.rule.as_str(), a.severity.as_str());
        tracing::warn!(
            alert_id = %row.id,
            rule = %row.rule,
            severity = %row.severity,
            key_id = row.key_id.as_deref().unwrap_or("-"),
            upstream = row.upstream.as_deref().unwrap_or("-"),
            summary = %row.summary,
            "alert raised"
        );
        self.app.alert_wake.notify_one();
        if a.action == Some(Action::Suspend) {
            match &a.key {
                Some(key) => self.suspend(key, &row).await,
                None => {
                    tracing::warn!(alert_id = %row.id, "action \"suspend\" on an upstream alert: not taken; suspend or rotate the upstream key by hand")
                }
            }
        }
    }

    async fn suspend(&self, key: &str, row: &AlertRow) {
        if self.app.keys.get(key).is_none_or(|e| e.status() != KeyStatus::Active) {
            return;
        }
        let reason = format!("suspended by the monitor: {} alert {}", row.rule, row.id);
        // the same path as `keyward key suspend`, audited as the monitor's action
        let monitor = crate::audit::Actor::system("monitor");
        match self.app.set_key_status(&monitor, key, KeyStatus::Suspended, Some(&reason)).await {
            Ok(_) => {
                self.app.metrics.keys_suspended_by_monitor.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key_id = %key, alert_id = %row.id, rule = %row.rule, actor = "system:monitor", "virtual key suspended by the monitor");
            }
            Err(e) => tracing::error!(key_id = %key, error = %e, "monitor: suspending the key failed"),
        }
    }

    async fn resolve(&mut self, dedup_key: &str, at_ms: i64) {
        let app = self.app.clone();
        let stored = retry(|| async {
            // the deliveries describe the resolved alert, so read it first
            let open = app.store.list_alerts(true, 10_000).await?;
            let Some(mut a) = open.into_iter().find(|a| a.dedup_key == dedup_key) else {
                return Ok(None);
            };
            a.status = "resolved".into();
            a.resolved_at_ms = Some(at_ms);
            let deliveries = app.alerts.deliveries_for(&a, "resolve", now_ms());
            app.store.resolve_alert(dedup_key, at_ms, &deliveries).await
        })
        .await;
        match stored {
            Ok(Some(a)) => {
                self.app.metrics.alert_resolved();
                tracing::info!(alert_id = %a.id, rule = %a.rule, key_id = a.key_id.as_deref().unwrap_or("-"), "alert resolved");
                self.app.alert_wake.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "monitor: resolving an alert failed"),
        }
    }
}

async fn retry<T, F, Fut>(mut f: F) -> Result<T, keyward_store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, keyward_store::StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..4 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, "monitor: store write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    f().await
}

/// The monitor task: warm up, then feed events and time to the engine until `stop`.
pub async fn run(app: Arc<App>, rx: mpsc::Receiver<MonitorInput>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = rx;
    let engine = match Engine::new(&app.monitor_cfg, app.cfg.prices.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "monitor not started");
            return;
        }
    };
    let s = engine.settings().clone();
    let mut live = Live {
        app: app.clone(),
        engine,
        known: Default::default(),
        upstream_names: Default::default(),
        inherited: HashMap::new(),
        resolve_after_ms: s.resolve_after_ms,
        last_refresh_ms: 0,
    };
    live.refresh_keys().await;
    live.warm_up(s.baseline_ms).await;
    let start = now_ms();
    match app.store.list_alerts(true, 10_000).await {
        Ok(open) => live.inherited = open.into_iter().map(|a| (a.dedup_key, start)).collect(),
        Err(e) => tracing::warn!(error = %e, "monitor: reading open alerts failed"),
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => live.handle(ev).await,
                None => break,
            },
            _ = tick.tick() => live.tick().await,
            _ = stop.changed() => break,
        }
    }
    // what is already queued is judged before stopping
    while let Ok(ev) = rx.try_recv() {
        live.handle(ev).await;
    }
}

// ---------------------------------------------------------------------------
// Out-of-band use: the Admin API usage report
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    data: Vec<Bucket>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct Bucket {
    starting_at: String,
    #[serde(default)]
    results: Vec<ReportRow>,
}

#[derive(Deserialize, Default)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    ephemeral_1h_input_tokens: u64,
}

#[derive(Deserialize)]
struct ReportRow {
    api_key_id: Option<String>,
    #[serde(default)]
    uncached_input_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
    #[serde(default)]
    cache_creation_5m_input_tokens: u64,
    #[serde(default)]
    cache_creation_1h_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}

fn fmt_rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Per-upstream-key usage of the minutes in `[from_ms, to_ms)` (whole minutes).
async fn fetch_report(app: &App, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, String, UpstreamUsage)>, String> {
    use http_body_util::BodyExt;
    let Some(r) = &app.cfg.admin_key_ref else {
        return Err("no admin key configured".into());
    };
    let reference: keyward_secrets::SecretRef = r.parse().map_err(|e: keyward_secrets::RefError| e.to_string())?;
    let entry = app.secrets.entry(&reference);
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    for _ in 0..100 {
        let cred = app.secrets.get(&entry).await.map_err(|e| format!("admin key unavailable ({e})"))?;
        let mut uri = format!(
            "{}/v1/organizations/usage_report/messages?starting_at={}&ending_at={}&bucket_width=1m&group_by%5B%5D=api_key_id&limit=1440",
            app.cfg.admin_url,
            fmt_rfc3339(from_ms).replace(':', "%3A"),
            fmt_rfc3339(to_ms).replace(':', "%3A")
        );
        if let Some(p) = &page {
            if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b)) {
                return Err("malformed next_page token".into());
            }
            uri.push_str("&page=");
            uri.push_str(p);
        }
        let req = http::Request::get(uri)
            .header("x-api-key", cred.header().clone())
            .header("anthropic-version", "2023-06-01")
            .body(crate::upstream::full(bytes::Bytes::new()))
            .map_err(|_| "could not build the request".to_string())?;
        drop(cred);
        let resp = tokio::time::timeout(Duration::from_secs(30), app.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|_| "unreachable".to_string())?;
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|_| "body failed".to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the Admin API answered {status}"));
        }
        let rep: Report = serde_json::from_slice(&body).map_err(|_| "unreadable usage report".to_string())?;
        for b in rep.data {
            let Some(ts) = parse_rfc3339_ms(&b.starting_at) else { continue };
            for r in b.results {
                let Some(kid) = r.api_key_id else { continue };
                let cc = r.cache_creation.unwrap_or_default();
                let creation = cc.ephemeral_5m_input_tokens
                    + cc.ephemeral_1h_input_tokens
                    + r.cache_creation_5m_input_tokens
                    + r.cache_creation_1h_input_tokens;
                out.push((
                    ts,
                    kid,
                    UpstreamUsage {
                        ts_ms: ts,
                        upstream: String::new(),
                        input_tokens: r.uncached_input_tokens,
                        output_tokens: r.output_tokens,
                        cache_creation_input_tokens: creation,
                        cache_read_input_tokens: r.cache_read_input_tokens,
                    },
                ));
            }
        }
        if !rep.has_more {
            break;
        }
        page = rep.next_page;
        if page.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Poll the Admin API usage report (1-minute buckets, grouped by
/// `api_key_id`) and feed each upstream key's minutes to the monitor, which
/// compares them with the gateway's own metering. Runs only when an admin key
/// is configured and the out-of-band rule is enabled.
pub async fn run_usage_report_poller(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let s = match app.monitor_cfg.settings() {
        Ok(s) => s,
        Err(_) => return,
    };
    if app.cfg.admin_key_ref.is_none() || !s.rules.out_of_band.enabled {
        return;
    }
    let poll = Duration::from_millis(s.oob_poll_ms.max(1_000) as u64);
    let delay = s.oob_report_delay_ms;
    // judge the minutes from the one this process started in
    let mut cursor = now_ms().div_euclid(MINUTE_MS) * MINUTE_MS;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {},
            _ = stop.changed() => return,
        }
        let end = (now_ms() - delay).div_euclid(MINUTE_MS) * MINUTE_MS;
        if end <= cursor {
            continue;
        }
        // at most a day per poll
        let end = end.min(cursor + 1_440 * MINUTE_MS);
        app.metrics.usage_report_polls.fetch_add(1, Ordering::Relaxed);
        match fetch_report(&app, cursor, end).await {
            Ok(rows) => {
                let ups = match app.store.list_upstreams().await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(error = %e, "usage report: reading upstreams failed");
                        continue;
                    }
                };
                let names: HashMap<String, String> =
                    ups.into_iter().filter_map(|u| u.anthropic_key_id.map(|k| (k, u.name))).collect();
                let mut rows: Vec<_> = rows.into_iter().filter(|(ts, _, _)| *ts >= cursor && *ts < end).collect();
                rows.sort_by_key(|(ts, _, _)| *ts);
                for (_, kid, mut u) in rows {
                    // keys keyward does not manage are not its to judge
                    let Some(name) = names.get(&kid) else { continue };
                    u.upstream = name.clone();
                    app.monitor.send(MonitorInput::Upstream(u));
                }
                cursor = end;
                warned = false;
            }
            Err(e) => {
                app.metrics.usage_report_failures.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    tracing::warn!(reason = %e, "polling the Admin API usage report failed; out-of-band use is not being checked");
                    warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn report_times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:01:00Z"), Some(60_000));
        assert_eq!(fmt_rfc3339(60_000), "1970-01-01T00:01:00Z");
    }

    #[test]
    fn the_feed_drops_and_counts_when_full() {
        let (feed, rx) = MonitorFeed::new();
        for i in 0..QUEUE_CAPACITY + 3 {
            feed.presented_stale("key_1", None, i as i64);
        }
        assert_eq!(feed.dropped(), 3);
        drop(rx);
        feed.presented_stale("key_1", None, 0);
        assert_eq!(feed.dropped(), 4, "a closed queue counts too");
    }
}
