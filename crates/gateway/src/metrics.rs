//! Prometheus text exposition of the gateway's counters.
//!
//! Labels are bounded: key id (never a key), service name, model (at most
//! [`MAX_MODELS`] distinct names, the rest count as `other`), status class,
//! refusal reason, rule, severity, sink kind.
//!
//! Cost on the request path: refusal counters and the two latency histograms
//! are plain atomics (no lock, no allocation). Requests, tokens and cost by
//! key, model and status class are added up by the metering writer from the
//! usage records it already batches, off the request path.

use crate::index::KeyIndex;
use keyward_core::usage::UsageRecord;
use keyward_core::FastMap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Distinct model label values before new ones count as `other`.
pub const MAX_MODELS: usize = 64;

/// Why a request was refused before it was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No, a malformed, or a stale (revoked, suspended, expired, rotated-out) credential.
    Auth,
    /// Requests, tokens or concurrency over the key's limit.
    Rate,
    /// The monthly budget is spent.
    Budget,
    /// Model, network or other policy of the key.
    Policy,
    /// The prompt-injection shield blocked it.
    Shield,
}

impl Refusal {
    const ALL: [Refusal; 5] = [Refusal::Auth, Refusal::Rate, Refusal::Budget, Refusal::Policy, Refusal::Shield];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Auth => "auth",
            Refusal::Rate => "rate",
            Refusal::Budget => "budget",
            Refusal::Policy => "policy",
            Refusal::Shield => "shield",
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS_S: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A fixed-bucket histogram of atomics: observing is a few relaxed adds.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        // non-cumulative here; `render` accumulates
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0u64;
        for (i, b) in BUCKETS_S.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct UsageLabels {
    key_id: String,
    service_id: String,
    model: String,
    class: &'static str,
}

#[derive(Debug, Clone, Copy, Default)]
struct UsageAgg {
    requests: u64,
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
    cost_usd: f64,
}

#[derive(Default)]
struct UsageTable {
    /// Key id -> that key's rows (a handful: models by status class), so a
    /// record adds to its row without building (allocating) a label set.
    by_key: FastMap<String, Vec<(UsageLabels, UsageAgg)>>,
    models: HashSet<String, foldhash::fast::RandomState>,
}

const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// The sink kinds, for delivery counters.
pub const SINK_KINDS: [&str; 3] = ["webhook", "slack", "pagerduty"];

#[derive(Default)]
pub struct Metrics {
    refused: [AtomicU64; 5],
    pub upstream_latency: Histogram,
    pub overhead: Histogram,
    usage: Mutex<UsageTable>,
    alerts_raised: Mutex<BTreeMap<&'static str, u64>>,
    alerts_by_severity: [AtomicU64; 3],
    alerts_resolved: AtomicU64,
    deliveries: [AtomicU64; 3],
    delivery_failures: [AtomicU64; 3],
    deliveries_given_up: [AtomicU64; 3],
    pub monitor_events_dropped: AtomicU64,
    pub keys_suspended_by_monitor: AtomicU64,
    pub usage_report_polls: AtomicU64,
    pub usage_report_failures: AtomicU64,
}

fn class_of(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn sink_index(kind: &str) -> usize {
    SINK_KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// What the prompt-injection shield did (the index into `KeyEntry::shield`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShieldEvent {
    RequestFlagged = 0,
    RequestBlocked = 1,
    ToolFlagged = 2,
    ToolBlocked = 3,
}

impl Metrics {
    pub fn shield(&self, key: &crate::index::KeyEntry, e: ShieldEvent) {
        key.shield[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_auth(&self) {
        self.refused(Refusal::Auth);
    }

    /// For the prompt-injection shield: a request it blocked.
    pub fn refused_shield(&self) {
        self.refused(Refusal::Shield);
    }

    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Add a batch of usage records (the metering writer calls this).
    pub fn add_usage(&self, batch: &[UsageRecord]) {
        let mut guard = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let t = &mut *guard;
        for r in batch {
            let model = match r.model.as_deref() {
                None => "none",
                Some(m) if t.models.contains(m) => m,
                Some(m) if t.models.len() < MAX_MODELS && label_safe(m) => {
                    t.models.insert(m.to_string());
                    m
                }
                Some(_) => "other",
            };
            let class = class_of(r.status);
            if !t.by_key.contains_key(&r.key_id) {
                t.by_key.insert(r.key_id.clone(), Vec::new());
            }
            let Some(rows) = t.by_key.get_mut(&r.key_id) else { continue };
            let i = match rows
                .iter()
                .position(|(l, _)| l.model == model && l.class == class && l.service_id == r.service_id)
            {
                Some(i) => i,
                None => {
                    let labels = UsageLabels {
                        key_id: r.key_id.clone(),
                        service_id: r.service_id.clone(),
                        model: model.to_string(),
                        class,
                    };
                    rows.push((labels, UsageAgg::default()));
                    rows.len() - 1
                }
            };
            let a = &mut rows[i].1;
            a.requests += 1;
            a.input += r.usage.input_tokens;
            a.output += r.usage.output_tokens;
            a.cache_creation += r.usage.cache_creation_input_tokens;
            a.cache_read += r.usage.cache_read_input_tokens;
            a.cost_usd += r.cost_usd.unwrap_or(0.0);
        }
    }

    pub fn alert_raised(&self, rule: &'static str, severity: &'static str) {
        *self.alerts_raised.lock().unwrap_or_else(|p| p.into_inner()).entry(rule).or_default() += 1;
        if let Some(i) = SEVERITIES.iter().position(|s| *s == severity) {
            self.alerts_by_severity[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn alert_resolved(&self) {
        self.alerts_resolved.fetch_add(1, Ordering::Relaxed);
    }

    pub fn delivered(&self, kind: &str) {
        self.deliveries[sink_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn delivery_failed(&self, kind: &str, gave_up: bool) {
        self.delivery_failures[sink_index(kind)].fetch_add(1, Ordering::Relaxed);
        if gave_up {
            self.deliveries_given_up[sink_index(kind)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, keys: &KeyIndex, usage_dropped: u64, services: &HashMap<String, String>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut all = keys.all();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let svc = |id: &str| services.get(id).map(|s| escape(s)).unwrap_or_default();

        // requests, tokens, cost by key, service, model, status class
        let rows: Vec<(UsageLabels, UsageAgg)> = {
            let t = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<_> = t.by_key.values().flatten().map(|(k, v)| (k.clone(), *v)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let labels = |l: &UsageLabels| {
            format!(
                "key_id=\"{}\",service=\"{}\",model=\"{}\",status_class=\"{}\"",
                escape(&l.key_id),
                svc(&l.service_id),
                escape(&l.model),
                l.class
            )
        };
        header(
            &mut out,
            "keyward_requests_total",
            "counter",
            "Requests answered, by virtual key, service, model and status class.",
        );
        for (l, a) in &rows {
            let _ = writeln!(out, "keyward_requests_total{{{}}} {}", labels(l), a.requests);
        }
        // tokens: summed over status classes
        let mut tokens: BTreeMap<(String, String, String), [u64; 4]> = BTreeMap::new();
        let mut cost: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for (l, a) in &rows {
            let k = (l.key_id.clone(), l.service_id.clone(), l.model.clone());
            let t = tokens.entry(k.clone()).or_default();
            t[0] += a.input;
            t[1] += a.output;
            t[2] += a.cache_creation;
            t[3] += a.cache_read;
            *cost.entry(k).or_default() += a.cost_usd;
        }
        header(
            &mut out,
            "keyward_tokens_total",
            "counter",
            "Tokens by virtual key, service, model and direction (input, output, cache_creation, cache_read).",
        );
        for ((key, service, model), t) in &tokens {
            for (i, dir) in ["input", "output", "cache_creation", "cache_read"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "keyward_tokens_total{{key_id=\"{}\",service=\"{}\",model=\"{}\",direction=\"{dir}\"}} {}",
                    escape(key),
                    svc(service),
                    escape(model),
                    t[i]
                );
            }
        }
        out.push_str(
            "# HELP keyward_shield_total Prompt-injection shield actions, by virtual key: requests flagged or \
             blocked by their injection score, responses whose tool calls were flagged or blocked.\n",
        );
        out.push_str("# TYPE keyward_shield_total counter\n");
        for k in &all {
            for (i, (target, action)) in
                [("request", "flagged"), ("request", "blocked"), ("tool_call", "flagged"), ("tool_call", "blocked")]
                    .iter()
                    .enumerate()
            {
                let n = k.shield[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "keyward_shield_total{{key_id=\"{}\",service=\"{}\",env=\"{}\",target=\"{target}\",action=\"{action}\"}} {n}",
                        k.id,
                        escape(&k.service_name),
                        k.env,
                    );
                }
            }
        }
        header(
            &mut out,
            "keyward_cost_usd_total",
            "counter",
            "Cost in USD (list prices) by virtual key, service and model.",
        );
        for ((key, service, model), c) in &cost {
            let _ = writeln!(
                out,
                "keyward_cost_usd_total{{key_id=\"{}\",service=\"{}\",model=\"{}\"}} {c}",
                escape(key),
                svc(service),
                escape(model)
            );
        }

        self.upstream_latency.render(
            &mut out,
            "keyward_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers.",
        );
        self.overhead.render(
            &mut out,
            "keyward_gateway_overhead_seconds",
            "Time the gateway spends on a request before forwarding it (policy, body, credential).",
        );

        header(&mut out, "keyward_refused_total", "counter", "Requests refused before forwarding, by reason.");
        for r in Refusal::ALL {
            let _ = writeln!(out, "keyward_refused_total{{reason=\"{}\"}} {}", r.as_str(), self.refused_count(r));
        }

        header(
            &mut out,
            "keyward_key_expiry_timestamp_seconds",
            "gauge",
            "When a virtual key expires (keys with an expiry).",
        );
        for k in &all {
            if let Some(ms) = k.expires_at_ms() {
                let _ = writeln!(out, "keyward_key_expiry_timestamp_seconds{{key_id=\"{}\"}} {}", k.id, ms / 1000);
            }
        }
        header(
            &mut out,
            "keyward_key_last_rotation_timestamp_seconds",
            "gauge",
            "When a virtual key's secret was last issued (rotation, or creation).",
        );
        for k in &all {
            let ms = k.last_rotated_ms();
            if ms > 0 {
                let _ =
                    writeln!(out, "keyward_key_last_rotation_timestamp_seconds{{key_id=\"{}\"}} {}", k.id, ms / 1000);
            }
        }
        header(
            &mut out,
            "keyward_budget_remaining_usd",
            "gauge",
            "Monthly budget left, in USD, for keys with a budget (negative when overspent).",
        );
        let month = keyward_core::prices::month_of_ms(crate::state::now_ms());
        for k in &all {
            if let Some(b) = k.policy().policy.budget_usd {
                let _ =
                    writeln!(out, "keyward_budget_remaining_usd{{key_id=\"{}\"}} {}", k.id, b - k.spend.get(&month));
            }
        }
        header(&mut out, "keyward_key_status", "gauge", "1 for the key's current status (active, suspended, revoked).");
        for k in &all {
            let _ = writeln!(out, "keyward_key_status{{key_id=\"{}\",status=\"{}\"}} 1", k.id, k.status().as_str());
        }

        header(&mut out, "keyward_alerts_raised_total", "counter", "Alerts raised by the monitor, by rule.");
        {
            let raised = self.alerts_raised.lock().unwrap_or_else(|p| p.into_inner());
            for rule in keyward_monitor::Rule::ALL {
                let n = raised.get(rule.as_str()).copied().unwrap_or(0);
                let _ = writeln!(out, "keyward_alerts_raised_total{{rule=\"{}\"}} {n}", rule.as_str());
            }
        }
        header(
            &mut out,
            "keyward_alerts_raised_by_severity_total",
            "counter",
            "Alerts raised by the monitor, by severity.",
        );
        for (i, sev) in SEVERITIES.iter().enumerate() {
            let n = self.alerts_by_severity[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "keyward_alerts_raised_by_severity_total{{severity=\"{sev}\"}} {n}");
        }
        header(
            &mut out,
            "keyward_alerts_resolved_total",
            "counter",
            "Alerts resolved because their condition cleared.",
        );
        let _ = writeln!(out, "keyward_alerts_resolved_total {}", self.alerts_resolved.load(Ordering::Relaxed));
        header(&mut out, "keyward_alert_deliveries_total", "counter", "Alert notifications delivered, by sink kind.");
        for (i, k) in SINK_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "keyward_alert_deliveries_total{{sink=\"{k}\"}} {}",
                self.deliveries[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "keyward_alert_delivery_failures_total",
            "counter",
            "Failed alert delivery attempts (each is retried with back-off), by sink kind.",
        );
        for (i, k) in SINK_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "keyward_alert_delivery_failures_total{{sink=\"{k}\"}} {}",
                self.delivery_failures[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "keyward_alert_deliveries_given_up_total",
            "counter",
            "Alert notifications abandoned after the last retry, by sink kind.",
        );
        for (i, k) in SINK_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "keyward_alert_deliveries_given_up_total{{sink=\"{k}\"}} {}",
                self.deliveries_given_up[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "keyward_monitor_events_dropped_total",
            "counter",
            "Monitor events dropped because its queue was full.",
        );
        let _ = writeln!(
            out,
            "keyward_monitor_events_dropped_total {}",
            self.monitor_events_dropped.load(Ordering::Relaxed)
        );
        header(&mut out, "keyward_monitor_suspensions_total", "counter", "Keys suspended by a monitor rule's action.");
        let _ = writeln!(
            out,
            "keyward_monitor_suspensions_total {}",
            self.keys_suspended_by_monitor.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "keyward_usage_report_polls_total",
            "counter",
            "Polls of the Anthropic Admin API usage report, by outcome.",
        );
        let polls = self.usage_report_polls.load(Ordering::Relaxed);
        let failed = self.usage_report_failures.load(Ordering::Relaxed);
        let _ = writeln!(out, "keyward_usage_report_polls_total{{outcome=\"ok\"}} {}", polls.saturating_sub(failed));
        let _ = writeln!(out, "keyward_usage_report_polls_total{{outcome=\"failed\"}} {failed}");

        header(
            &mut out,
            "keyward_usage_records_dropped_total",
            "counter",
            "Usage records dropped because the queue was full.",
        );
        let _ = writeln!(out, "keyward_usage_records_dropped_total {usage_dropped}");
        header(&mut out, "keyward_keys", "gauge", "Virtual keys loaded in the index.");
        let _ = writeln!(out, "keyward_keys {}", all.len());
        out
    }
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Model names that are safe as label values as they are.
fn label_safe(m: &str) -> bool {
    !m.is_empty() && m.len() <= 64 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:@".contains(&b))
}

pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"60\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn model_labels_are_bounded() {
        let m = Metrics::default();
        let rec = |model: &str| UsageRecord {
            ts_ms: 0,
            request_id: String::new(),
            key_id: "key_1".into(),
            service_id: "svc_1".into(),
            upstream_id: None,
            env: "dev".into(),
            endpoint: "/v1/messages".into(),
            model: Some(model.into()),
            status: 200,
            usage: Default::default(),
            cost_usd: None,
            latency_ms: 0,
            streamed: false,
            client_disconnected: false,
            source_ip: None,
            shield_flags: 0,
            shield_score: None,
        };
        let batch: Vec<_> = (0..MAX_MODELS + 10).map(|i| rec(&format!("model-{i}"))).collect();
        m.add_usage(&batch);
        m.add_usage(&[rec("bad\"label"), rec("model-0")]);
        let out = m.render(&KeyIndex::default(), 0, &HashMap::new());
        let models: HashSet<&str> = out
            .lines()
            .filter(|l| l.starts_with("keyward_requests_total{"))
            .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(models.len(), MAX_MODELS + 1, "64 names and `other`");
        assert!(models.contains("other"));
        assert!(out.contains("model=\"model-0\",status_class=\"2xx\"} 2"), "{out}");
    }
}
