//! The detection engine: fed events in time order, it keeps per-key windows and
//! hour-of-week baselines, evaluates the rules, and raises and resolves alerts.
//!
//! Time is whatever the events say (simulated in replay, wall clock live): the
//! engine never reads a clock. An event older than the engine's `now` is treated
//! as happening at `now`, so time never runs backwards inside the engine.

use crate::alert::{Alert, AlertEvent, DedupKey, Open, Resolve, Rule, Severity, Subject};
use crate::config::{parse_tz, Action, ConfigError, Hours, MonitorConfig, Settings, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::event::{Event, KeyMeta, PresentedRevoked, Request, UpstreamUsage};
use keyward_core::prices::{date_of_ms, PriceTable};
use keyward_core::usage::TokenUsage;
use keyward_core::FastMap;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

/// 9999-12-31T23:59:59.999Z: later times are clamped to it.
const MAX_TS_MS: i64 = 253_402_300_799_999;
/// How long gateway-metered tokens wait for an upstream report to explain.
const GATEWAY_TOKENS_KEEP_MS: i64 = 2 * HOUR_MS;
/// How often open alerts are checked for resolution.
const SWEEP_EVERY_MS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("key {key}: unknown time zone {tz:?}")]
    TimeZone { key: String, tz: String },
}

/// Local time of an instant in one key's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Local {
    /// Monday = 0.
    pub weekday: u8,
    pub minute_of_day: u16,
    pub hour_of_week: u16,
    /// Local days since 1970-01-01.
    pub day: i64,
}

pub(crate) fn local_time(tz: &jiff::tz::TimeZone, ts_ms: i64) -> Local {
    let offset_s = jiff::Timestamp::from_millisecond(ts_ms).map(|t| i64::from(tz.to_offset(t).seconds())).unwrap_or(0);
    let local_s = ts_ms.div_euclid(1000) + offset_s;
    let days = local_s.div_euclid(86_400);
    let sod = local_s.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (Monday = 0 -> 3).
    let weekday = (days + 3).rem_euclid(7) as u8;
    let minute_of_day = (sod / 60) as u16;
    Local { weekday, minute_of_day, hour_of_week: u16::from(weekday) * 24 + minute_of_day / 60, day: days }
}

/// `[start, end)` of the UTC calendar month containing `ts_ms`.
fn month_bounds(ts_ms: i64) -> (i64, i64) {
    let utc = jiff::tz::TimeZone::UTC;
    let fallback = (ts_ms.div_euclid(30 * DAY_MS) * 30 * DAY_MS, (ts_ms.div_euclid(30 * DAY_MS) + 1) * 30 * DAY_MS);
    let Ok(t) = jiff::Timestamp::from_millisecond(ts_ms) else {
        return fallback;
    };
    let first = t.to_zoned(utc.clone()).date().first_of_month();
    let next = first.last_of_month().tomorrow();
    let start = first.to_zoned(utc.clone()).map(|z| z.timestamp().as_millisecond());
    let end = next.and_then(|d| d.to_zoned(utc).map(|z| z.timestamp().as_millisecond()));
    match (start, end) {
        (Ok(s), Ok(e)) => (s, e),
        _ => fallback,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Net {
    V4(u32),
    V6(u128),
}

fn network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Net {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if v4_prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(v4_prefix.min(32))) };
            Net::V4(bits & mask)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if v6_prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(v6_prefix.min(128))) };
            Net::V6(bits & mask)
        }
    }
}

fn net_display(n: Net, v4_prefix: u8, v6_prefix: u8) -> String {
    match n {
        Net::V4(b) => format!("{}/{v4_prefix}", std::net::Ipv4Addr::from(b)),
        Net::V6(b) => format!("{}/{v6_prefix}", std::net::Ipv6Addr::from(b)),
    }
}

/// One hour of one key's traffic, as the baseline remembers it.
#[derive(Debug, Clone, Copy)]
struct HourStat {
    idx: i64,
    how: u16,
    /// Busiest trailing minute (requests) in the hour.
    peak_rpm: u64,
    /// Busiest trailing minute (output tokens) in the hour.
    peak_out: u64,
    output_tokens: u64,
    requests: u64,
    errors: u64,
}

/// The learned baseline for one hour of the week.
#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    /// Requests per minute, averaged over the hour.
    rpm_mean: f64,
    /// The busiest trailing minute of the hour.
    rpm_peak: f64,
    out_mean: f64,
    out_peak: f64,
    err_rate: f64,
}

/// The `num/den` quantile (nearest rank) of hourly peaks; 0 without samples.
fn quantile(v: &mut [u64], num: usize, den: usize) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = (v.len() * num).div_ceil(den).max(1);
    v[rank.min(v.len()) - 1] as f64
}

/// A trailing window of request counts and a per-request value, kept in at
/// most about 1,000 slots: requests within one slot width (a thousandth of the
/// window) of a slot's first request share that slot and leave the window with
/// it, up to 0.1 % of the window early. Memory and work per request stay bounded
/// at any rate (one entry per request held 1.2 million entries per key at 20,000
/// requests/s).
#[derive(Debug, Default)]
struct Trailing {
    /// (first ts, requests, sum of values)
    slots: VecDeque<(i64, u64, u64)>,
    count: u64,
    sum: u64,
}

impl Trailing {
    fn push(&mut self, ts: i64, window_ms: i64, value: u64) {
        let width = (window_ms / 1000).max(1);
        match self.slots.back_mut() {
            Some((first, n, sum)) if ts - *first < width => {
                *n += 1;
                *sum = sum.saturating_add(value);
            }
            _ => self.slots.push_back((ts, 1, value)),
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        while let Some(&(first, n, sum)) = self.slots.front() {
            if ts - first < window_ms {
                break;
            }
            self.count -= n;
            self.sum = self.sum.saturating_sub(sum);
            self.slots.pop_front();
        }
    }
}

#[derive(Debug)]
struct KeyState {
    meta: KeyMeta,
    hours: Hours,
    watch_network: bool,
    first_seen_ms: Option<i64>,
    /// Trailing minute: requests and their output tokens.
    w60: Trailing,
    /// Trailing error window: requests and how many were answered 4xx.
    werr: Trailing,
    hour: Option<HourStat>,
    history: VecDeque<HourStat>,
    baseline: Option<(i64, Baseline)>,
    local_cache: Option<(i64, Local)>,
    last_quiet_use_ms: Option<i64>,
    /// The first night (see [`Hours::night_of`]) the key was used in quiet hours.
    first_quiet_night: Option<i64>,
    nets: HashMap<Net, i64>,
    month_start_ms: i64,
    spend_usd: f64,
    levels_hit: u32,
}

impl KeyState {
    fn new(meta: KeyMeta, hours: Hours, watch_network: bool) -> Self {
        KeyState {
            meta,
            hours,
            watch_network,
            first_seen_ms: None,
            w60: Trailing::default(),
            werr: Trailing::default(),
            hour: None,
            history: VecDeque::new(),
            baseline: None,
            local_cache: None,
            last_quiet_use_ms: None,
            first_quiet_night: None,
            nets: HashMap::new(),
            month_start_ms: i64::MIN,
            spend_usd: 0.0,
            levels_hit: 0,
        }
    }

    fn local(&mut self, ts_ms: i64) -> Local {
        let minute = ts_ms.div_euclid(MINUTE_MS);
        if let Some((m, l)) = self.local_cache {
            if m == minute {
                return l;
            }
        }
        let l = local_time(&self.hours.tz, minute * MINUTE_MS);
        self.local_cache = Some((minute, l));
        l
    }

    /// Close the current hour when `ts_ms` is in a later one.
    fn roll_hour(&mut self, ts_ms: i64, baseline_ms: i64) {
        let idx = ts_ms.div_euclid(HOUR_MS);
        if self.hour.is_some_and(|h| h.idx == idx) {
            return;
        }
        if let Some(h) = self.hour.take() {
            if h.requests > 0 {
                self.history.push_back(h);
            }
        }
        let keep_from = idx - baseline_ms / HOUR_MS;
        while self.history.front().is_some_and(|h| h.idx < keep_from) {
            self.history.pop_front();
        }
        self.nets.retain(|_, seen| ts_ms - *seen <= baseline_ms);
        let how = local_time(&self.hours.tz, idx * HOUR_MS).hour_of_week;
        self.hour = Some(HourStat { idx, how, peak_rpm: 0, peak_out: 0, output_tokens: 0, requests: 0, errors: 0 });
        self.baseline = None;
    }

    fn baseline(&mut self) -> Baseline {
        let Some(h) = self.hour else {
            return Baseline::default();
        };
        if let Some((idx, b)) = self.baseline {
            if idx == h.idx {
                return b;
            }
        }
        let mut b = Baseline::default();
        let (mut req, mut err) = (0u64, 0u64);
        // A: the same hour of the week (the weekly rhythm).
        // B: the same hour of the day on days of the same kind
        //    (business day or not): many more samples, so one holiday in A does
        //    not make an ordinary day look like an incident.
        let mut a: [Vec<u64>; 4] = Default::default();
        let mut bb: [Vec<u64>; 4] = Default::default();
        let business = |how: u16| self.hours.business_days & (1 << (how / 24)) != 0;
        let (h_day, h_business) = (h.how % 24, business(h.how));
        for s in &self.history {
            let v = [s.requests, s.peak_rpm, s.output_tokens, s.peak_out];
            if s.how == h.how {
                for (q, x) in a.iter_mut().zip(v) {
                    q.push(x);
                }
                req += s.requests;
                err += s.errors;
            }
            if s.how % 24 == h_day && business(s.how) == h_business {
                for (q, x) in bb.iter_mut().zip(v) {
                    q.push(x);
                }
            }
        }
        let mut pick = |i: usize| quantile(&mut a[i], 3, 4).max(quantile(&mut bb[i], 1, 2));
        b.rpm_mean = pick(0) / 60.0;
        b.rpm_peak = pick(1);
        b.out_mean = pick(2) / 60.0;
        b.out_peak = pick(3);
        if req >= 100 {
            b.err_rate = err as f64 / req as f64;
        }
        self.baseline = Some((h.idx, b));
        b
    }
}

#[derive(Debug, Default)]
struct UpstreamState {
    /// Gateway-metered tokens per minute not yet matched to an upstream report.
    gateway: VecDeque<(i64, u64)>,
    /// Upstream-reported tokens per minute, waiting to be judged: (tokens, arrived at).
    reported: BTreeMap<i64, (u64, i64)>,
}

/// A rule firing, before it is turned into an alert (or refreshes an open one).
struct Firing {
    subject: Subject,
    rule: Rule,
    part: u8,
    severity: Severity,
    action: Option<Action>,
    value: f64,
    threshold: f64,
    summary: String,
    resolve: Resolve,
}

/// The detection engine. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Engine {
    s: Settings,
    prices: PriceTable,
    keys: FastMap<String, KeyState>,
    upstreams: BTreeMap<String, UpstreamState>,
    open: BTreeMap<DedupKey, Open>,
    now_ms: i64,
    next_id: u64,
    next_sweep_ms: i64,
    month: (i64, i64),
    date_cache: (i64, String),
    learning: bool,
    out: Vec<AlertEvent>,
}

fn clamp_ts(ts: i64) -> i64 {
    ts.clamp(0, MAX_TS_MS)
}

impl Engine {
    pub fn new(cfg: &MonitorConfig, prices: PriceTable) -> Result<Self, ConfigError> {
        Ok(Engine {
            s: cfg.settings()?,
            prices,
            keys: Default::default(),
            upstreams: BTreeMap::new(),
            open: BTreeMap::new(),
            now_ms: 0,
            next_id: 1,
            next_sweep_ms: 0,
            month: (0, 0),
            date_cache: (i64::MIN, String::new()),
            learning: false,
            out: Vec::new(),
        })
    }

    /// Engine time: the latest event time seen (Unix ms).
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// Currently open alerts, in dedup-key order.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.open.values().map(|o| &o.alert)
    }

    /// Add or update a key's metadata. An unknown time zone is an error; the key is
    /// then kept with its service's (or the default) time zone.
    pub fn upsert_key(&mut self, meta: KeyMeta) -> Result<(), MetaError> {
        let service_hours = self.s.services.get(&meta.service).unwrap_or(&self.s.hours).clone();
        let mut hours = service_hours;
        let mut err = None;
        if let Some(name) = &meta.tz {
            match parse_tz(name) {
                Some(tz) => hours.tz = tz,
                None => err = Some(MetaError::TimeZone { key: meta.key.clone(), tz: name.clone() }),
            }
        }
        let watch = self.s.rules.new_network.envs.iter().any(|e| e == &meta.env);
        match self.keys.get_mut(&meta.key) {
            Some(ks) => {
                let tz_changed = ks.hours.tz != hours.tz;
                ks.meta = meta;
                ks.hours = hours;
                ks.watch_network = watch;
                if tz_changed {
                    ks.local_cache = None;
                }
            }
            None => {
                self.keys.insert(meta.key.clone(), KeyState::new(meta, hours, watch));
            }
        }
        err.map_or(Ok(()), Err)
    }

    /// Accept a network for a key (an operator acknowledged a `new_network` alert).
    pub fn trust_network(&mut self, key: &str, ip: IpAddr) {
        let (p4, p6) = (self.s.rules.new_network.ipv4_prefix, self.s.rules.new_network.ipv6_prefix);
        let now = self.now_ms;
        if let Some(ks) = self.keys.get_mut(key) {
            ks.nets.insert(network(ip, p4, p6), now);
        }
    }

    /// Feed one event; returns the alerts it raised or resolved.
    pub fn observe(&mut self, ev: &Event) -> Vec<AlertEvent> {
        match ev {
            Event::Key(m) => {
                // A bad time zone falls back to the service's; `upsert_key` reports it.
                let _ = self.upsert_key(m.clone());
            }
            Event::Request(r) => self.on_request(r),
            Event::UpstreamUsage(u) => self.on_upstream_usage(u),
            Event::PresentedRevoked(p) => self.on_presented_revoked(p),
        }
        std::mem::take(&mut self.out)
    }

    /// Feed one event of history (warm-up from the store): baselines, networks,
    /// quiet-hours use and spend are learned; no alert is raised. Returns the
    /// alerts that time passing resolved (none when warming up a fresh engine).
    pub fn learn(&mut self, ev: &Event) -> Vec<AlertEvent> {
        self.learning = true;
        let out = self.observe(ev);
        self.learning = false;
        out
    }

    /// Let time pass with no event (live: call every few seconds). Resolves alerts
    /// whose condition has cleared and judges upstream minutes that are due.
    pub fn advance_to(&mut self, now_ms: i64) -> Vec<AlertEvent> {
        self.advance(clamp_ts(now_ms));
        std::mem::take(&mut self.out)
    }

    /// End of a trace: judge every upstream minute still waiting, as if time had
    /// moved on until each was due.
    pub fn finish(&mut self) -> Vec<AlertEvent> {
        let look = i64::from(self.s.rules.out_of_band.lookahead_minutes);
        let last_due = self
            .upstreams
            .values()
            .filter_map(|u| u.reported.keys().next_back())
            .map(|m| (m + 1 + look) * MINUTE_MS)
            .max();
        if let Some(due) = last_due {
            self.advance(clamp_ts(due.max(self.now_ms)));
        }
        std::mem::take(&mut self.out)
    }

    fn advance(&mut self, ts: i64) {
        if ts < self.now_ms {
            return;
        }
        self.now_ms = ts;
        if ts >= self.month.1 {
            let old_end = self.month.1;
            self.month = month_bounds(ts);
            if old_end != 0 {
                let at = self.month.0;
                let ended: Vec<DedupKey> = self
                    .open
                    .keys()
                    .filter(|k| matches!(k.rule, Rule::Budget | Rule::BudgetProjection))
                    .cloned()
                    .collect();
                for k in ended {
                    self.resolve(&k, at);
                }
            }
        }
        self.judge_upstream_minutes(ts);
        if ts >= self.next_sweep_ms {
            self.next_sweep_ms = ts.saturating_add(SWEEP_EVERY_MS);
            let after = self.s.resolve_after_ms;
            let clear: Vec<(DedupKey, i64)> = self
                .open
                .iter()
                .filter(|(_, o)| o.resolve == Resolve::WhenClear && ts - o.last_true_ms >= after)
                .map(|(k, o)| (k.clone(), o.last_true_ms + after))
                .collect();
            for (k, at) in clear {
                self.resolve(&k, at);
            }
        }
    }

    fn resolve(&mut self, k: &DedupKey, at_ms: i64) {
        let Some(o) = self.open.remove(k) else {
            return;
        };
        self.out.push(AlertEvent::Resolved {
            id: o.alert.id,
            rule: o.alert.rule,
            key: o.alert.key,
            upstream: o.alert.upstream,
            dedup_key: o.alert.dedup_key,
            at_ms,
        });
    }

    fn fire(&mut self, f: Firing, at_ms: i64) {
        if self.learning {
            return;
        }
        let dk = DedupKey { subject: f.subject, rule: f.rule, part: f.part };
        if let Some(o) = self.open.get_mut(&dk) {
            let stale = o.resolve == Resolve::WhenClear && at_ms - o.last_true_ms >= self.s.resolve_after_ms;
            if !stale {
                o.last_true_ms = at_ms;
                return;
            }
            let at = o.last_true_ms + self.s.resolve_after_ms;
            self.resolve(&dk, at);
        }
        let (key, upstream) = match &dk.subject {
            Subject::Key(k) => (Some(k.clone()), None),
            Subject::Upstream(u) => (None, Some(u.clone())),
        };
        let alert = Alert {
            id: self.next_id,
            rule: dk.rule,
            key,
            upstream,
            at_ms,
            severity: f.severity,
            action: f.action,
            value: f.value,
            threshold: f.threshold,
            summary: f.summary,
            dedup_key: dk.stable_id(),
        };
        self.next_id += 1;
        self.out.push(AlertEvent::Raised(alert.clone()));
        self.open.insert(dk, Open { alert, last_true_ms: at_ms, resolve: f.resolve });
    }

    fn is_open(&self, subject: &Subject, rule: Rule) -> bool {
        // `open` is ordered by subject first, so this is a short range scan.
        self.open
            .range(DedupKey { subject: subject.clone(), rule, part: 0 }..)
            .next()
            .is_some_and(|(k, _)| &k.subject == subject && k.rule == rule)
    }

    fn cost(&mut self, r: &Request, ts: i64) -> f64 {
        if let Some(c) = r.cost_usd {
            return if c.is_finite() && c > 0.0 { c } else { 0.0 };
        }
        let Some(model) = r.model.as_deref() else {
            return 0.0;
        };
        let day = ts.div_euclid(DAY_MS);
        if self.date_cache.0 != day {
            self.date_cache = (day, date_of_ms(ts));
        }
        // Clamped: no response has 2^32 tokens, and the price math adds the counts.
        let c = |n: u64| n.min(u64::from(u32::MAX));
        let u = TokenUsage {
            input_tokens: c(r.input_tokens),
            output_tokens: c(r.output_tokens),
            cache_creation_input_tokens: c(r.cache_creation_input_tokens),
            cache_read_input_tokens: c(r.cache_read_input_tokens),
            cache_creation_1h: None,
        };
        self.prices.cost(model, &self.date_cache.1, &u).unwrap_or(0.0)
    }

    fn on_request(&mut self, r: &Request) {
        let ts = clamp_ts(r.ts_ms).max(self.now_ms);
        self.advance(ts);
        let cost = self.cost(r, ts);
        let subject = Subject::Key(r.key.clone());
        let quiet_open = self.is_open(&subject, Rule::QuietHours);
        let month = self.month;
        // the key's state and the settings are disjoint fields: borrowed together
        let s = &self.s;
        let rules = &s.rules;
        let (baseline_ms, min_history_ms, err_window_ms) = (s.baseline_ms, s.min_history_ms, s.error_window_ms);
        let proj_min = s.projection_min_elapsed_ms;
        let ks = key_state(&mut self.keys, s, &r.key, &r.service);
        let first_seen = *ks.first_seen_ms.get_or_insert(ts);
        let learned = ts - first_seen >= min_history_ms;
        ks.roll_hour(ts, baseline_ms);
        let local = ks.local(ts);

        // Trailing windows.
        let is_4xx = (400..500).contains(&r.status);
        ks.w60.push(ts, MINUTE_MS, r.output_tokens);
        ks.werr.push(ts, err_window_ms, u64::from(is_4xx));
        let (rpm, out) = (ks.w60.count, ks.w60.sum);
        let (requests_in_window, err_count) = (ks.werr.count, ks.werr.sum);
        let base = ks.baseline();
        let mut firings: Vec<Firing> = Vec::new();
        let fire = |rule: Rule, severity, action, value: f64, threshold: f64, summary: String| Firing {
            subject: subject.clone(),
            rule,
            part: 0,
            severity,
            action,
            value,
            threshold,
            summary,
            resolve: Resolve::WhenClear,
        };

        // 1. RPM in business hours.
        if rules.rpm.enabled && ks.hours.is_business(local.weekday, local.minute_of_day) {
            let thr = if learned {
                (rules.rpm.min_rpm).max(rules.rpm.factor * base.rpm_mean).max(rules.rpm.peak_margin * base.rpm_peak)
            } else {
                rules.rpm.static_rpm
            };
            if rpm as f64 > thr {
                firings.push(fire(
                    Rule::Rpm,
                    Severity::Warning,
                    rules.rpm.action,
                    rpm as f64,
                    thr,
                    format!("{rpm} requests in the last minute, threshold {thr:.0}"),
                ));
            }
        }
        // 2. Quiet hours.
        if rules.quiet_hours.enabled && ks.hours.is_quiet(local.minute_of_day) {
            let night = ks.hours.night_of(local.day, local.minute_of_day);
            let fired = if learned {
                ks.last_quiet_use_ms.is_none_or(|t| ts - t > baseline_ms)
            } else {
                // Without a baseline: a rate above the static threshold, unless the
                // key was already used in quiet hours on an earlier night. Once
                // raised, any further use that night continues the same episode
                // (one alert, not one per crossing of the threshold).
                ks.first_quiet_night.is_none_or(|n| n >= night)
                    && (quiet_open || rpm as f64 >= rules.quiet_hours.static_rpm)
            };
            if fired {
                firings.push(fire(
                    Rule::QuietHours,
                    Severity::Warning,
                    rules.quiet_hours.action,
                    rpm as f64,
                    if learned { 0.0 } else { rules.quiet_hours.static_rpm },
                    format!(
                        "used in quiet hours ({rpm} requests in the last minute); no quiet-hours use in its history"
                    ),
                ));
            } else if !quiet_open {
                ks.last_quiet_use_ms = Some(ts);
                ks.first_quiet_night.get_or_insert(night);
            }
        }
        // 3. Output tokens per minute.
        if rules.output_tokens.enabled {
            let r3 = &rules.output_tokens;
            let thr = if learned {
                (r3.min_tokens_per_minute).max(r3.factor * base.out_mean).max(r3.peak_margin * base.out_peak)
            } else {
                r3.static_tokens_per_minute
            };
            if out as f64 > thr {
                firings.push(fire(
                    Rule::OutputTokens,
                    Severity::Warning,
                    r3.action,
                    out as f64,
                    thr,
                    format!("{out} output tokens in the last minute, threshold {thr:.0}"),
                ));
            }
        }
        // 4. 4xx share.
        if rules.error_rate.enabled && err_count >= u64::from(rules.error_rate.min_count) {
            let r4 = &rules.error_rate;
            let share = err_count as f64 / requests_in_window.max(1) as f64;
            let thr = if learned { r4.rate.max(r4.baseline_factor * base.err_rate) } else { r4.rate };
            if share > thr {
                firings.push(fire(
                    Rule::ErrorRate,
                    Severity::Warning,
                    r4.action,
                    share,
                    thr,
                    format!(
                        "{} of {} requests answered 4xx in the window ({:.0} %), threshold {:.0} %",
                        err_count,
                        requests_in_window,
                        share * 100.0,
                        thr * 100.0
                    ),
                ));
            }
        }
        // 5. Budget (UTC calendar month).
        if let Some(budget) = ks.meta.budget_usd.filter(|b| b.is_finite() && *b > 0.0) {
            if ks.month_start_ms != month.0 {
                ks.month_start_ms = month.0;
                ks.spend_usd = 0.0;
                ks.levels_hit = 0;
            }
            ks.spend_usd += cost;
            if rules.budget.enabled {
                for (i, level) in rules.budget.levels.iter().enumerate() {
                    let bit = 1u32 << i;
                    if ks.spend_usd >= level * budget && ks.levels_hit & bit == 0 {
                        ks.levels_hit |= bit;
                        firings.push(Firing {
                            subject: subject.clone(),
                            rule: Rule::Budget,
                            part: (i + 1) as u8,
                            severity: if *level >= 1.0 {
                                Severity::Critical
                            } else if *level >= 0.8 {
                                Severity::Warning
                            } else {
                                Severity::Info
                            },
                            action: if *level >= 1.0 { rules.budget.action } else { None },
                            value: ks.spend_usd,
                            threshold: level * budget,
                            summary: format!(
                                "{:.0} % of the monthly budget spent (${:.2} of ${budget:.2})",
                                level * 100.0,
                                ks.spend_usd
                            ),
                            resolve: Resolve::Explicit,
                        });
                    }
                }
                let elapsed = ts - month.0;
                let len = (month.1 - month.0).max(1);
                if rules.budget.projection && elapsed >= proj_min && elapsed > 0 {
                    let projected = ks.spend_usd * len as f64 / elapsed as f64;
                    if projected > budget && ks.spend_usd < budget {
                        firings.push(Firing {
                            subject: subject.clone(),
                            rule: Rule::BudgetProjection,
                            part: 0,
                            severity: Severity::Warning,
                            action: None,
                            value: projected,
                            threshold: budget,
                            summary: format!("month projected at ${projected:.2} against a budget of ${budget:.2}"),
                            resolve: Resolve::Explicit,
                        });
                    }
                }
            }
        }
        // 6. New network.
        if let Some(ip) = r.source_ip.filter(|_| ks.watch_network) {
            let nr = &rules.new_network;
            let net = network(ip, nr.ipv4_prefix, nr.ipv6_prefix);
            let known = ks.nets.get(&net).is_some_and(|t| ts - t <= baseline_ms);
            if known || !learned || !nr.enabled {
                ks.nets.insert(net, ts);
            } else {
                // Not learned while unknown: it keeps alerting until trusted.
                firings.push(fire(
                    Rule::NewNetwork,
                    Severity::Warning,
                    nr.action,
                    0.0,
                    0.0,
                    format!(
                        "used from {}, a network not seen in the baseline period",
                        net_display(net, nr.ipv4_prefix, nr.ipv6_prefix)
                    ),
                ));
            }
        }

        // Learn this request into the hour (after judging it).
        if let Some(h) = ks.hour.as_mut() {
            h.peak_rpm = h.peak_rpm.max(rpm);
            h.peak_out = h.peak_out.max(out);
            h.requests += 1;
            h.output_tokens = h.output_tokens.saturating_add(r.output_tokens);
            h.errors += u64::from(is_4xx);
        }
        // Budget projection clears when the projection falls back under 90 %.
        let proj_clear = ks.meta.budget_usd.is_some_and(|b| {
            let elapsed = ts - month.0;
            elapsed > 0 && ks.spend_usd * (month.1 - month.0) as f64 / (elapsed as f64) < 0.9 * b
        });

        // 8. Gateway-metered tokens per upstream per minute (no alert reads them here).
        if let Some(up) = ks.meta.upstream.as_deref() {
            if !self.upstreams.contains_key(up) {
                self.upstreams.insert(up.to_string(), UpstreamState::default());
            }
            if let Some(st) = self.upstreams.get_mut(up) {
                let minute = ts.div_euclid(MINUTE_MS);
                let tokens = r.total_tokens();
                match st.gateway.back_mut() {
                    Some((m, t)) if *m == minute => *t = t.saturating_add(tokens),
                    _ => st.gateway.push_back((minute, tokens)),
                }
            }
        }

        for f in firings {
            self.fire(f, ts);
        }
        if proj_clear {
            let dk = DedupKey { subject: subject.clone(), rule: Rule::BudgetProjection, part: 0 };
            self.resolve(&dk, ts);
        }
    }

    fn on_upstream_usage(&mut self, u: &UpstreamUsage) {
        let arrived = clamp_ts(u.ts_ms).max(self.now_ms);
        self.advance(arrived);
        let minute = clamp_ts(u.ts_ms).div_euclid(MINUTE_MS);
        let st = self.upstreams.entry(u.upstream.clone()).or_default();
        let e = st.reported.entry(minute).or_insert((0, arrived));
        e.0 = e.0.saturating_add(u.total_tokens());
        // A report for a minute already due is judged now.
        self.judge_upstream_minutes(arrived);
    }

    fn judge_upstream_minutes(&mut self, now: i64) {
        let oob = self.s.rules.out_of_band.clone();
        let (skew, look) = (i64::from(oob.skew_minutes), i64::from(oob.lookahead_minutes));
        let mut firings = Vec::new();
        for (name, st) in self.upstreams.iter_mut() {
            while let Some((&m, &(reported, arrived))) = st.reported.iter().next() {
                let due = (m + 1 + look) * MINUTE_MS;
                if due > now {
                    break;
                }
                st.reported.remove(&m);
                while st.gateway.front().is_some_and(|(gm, _)| *gm < m - skew) {
                    st.gateway.pop_front();
                }
                let mut left = reported;
                for (gm, t) in st.gateway.iter_mut() {
                    if *gm > m + look || left == 0 {
                        break;
                    }
                    let take = (*t).min(left);
                    *t -= take;
                    left -= take;
                }
                while st.gateway.front().is_some_and(|(_, t)| *t == 0) {
                    st.gateway.pop_front();
                }
                let tolerance = (oob.tolerance_tokens as f64).max(oob.tolerance_fraction * reported as f64);
                if oob.enabled && left as f64 > tolerance {
                    firings.push((
                        Firing {
                            subject: Subject::Upstream(name.clone()),
                            rule: Rule::OutOfBand,
                            part: 0,
                            severity: Severity::Critical,
                            action: oob.action,
                            value: left as f64,
                            threshold: tolerance,
                            summary: format!(
                                "{left} of {reported} tokens reported by the upstream for the minute did not pass through the gateway"
                            ),
                            resolve: Resolve::WhenClear,
                        },
                        due.max(arrived),
                    ));
                }
            }
            let keep_from = now.div_euclid(MINUTE_MS) - GATEWAY_TOKENS_KEEP_MS / MINUTE_MS;
            while st.gateway.front().is_some_and(|(gm, _)| *gm < keep_from) {
                st.gateway.pop_front();
            }
        }
        for (f, at) in firings {
            self.fire(f, at);
        }
    }

    fn on_presented_revoked(&mut self, p: &PresentedRevoked) {
        let ts = clamp_ts(p.ts_ms).max(self.now_ms);
        self.advance(ts);
        let r7 = &self.s.rules.revoked;
        if !r7.enabled {
            return;
        }
        let ip = p.source_ip.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
        let f = Firing {
            subject: Subject::Key(p.key.clone()),
            rule: Rule::RevokedPresented,
            part: 0,
            severity: Severity::Critical,
            action: r7.action,
            value: 1.0,
            threshold: 0.0,
            summary: format!("a revoked, suspended or rotated-out secret of this key was presented from {ip}"),
            resolve: Resolve::WhenClear,
        };
        self.fire(f, ts);
    }
}

/// A key's state, made on its first request (a `String` key only then).
fn key_state<'k>(keys: &'k mut FastMap<String, KeyState>, s: &Settings, key: &str, service: &str) -> &'k mut KeyState {
    if !keys.contains_key(key) {
        let hours = s.services.get(service).unwrap_or(&s.hours).clone();
        let meta = KeyMeta {
            key: key.to_string(),
            service: service.to_string(),
            upstream: None,
            env: String::new(),
            tz: None,
            budget_usd: None,
        };
        keys.insert(key.to_string(), KeyState::new(meta, hours, false));
    }
    keys.get_mut(key).unwrap_or_else(|| unreachable!("inserted above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn trailing_window_counts_exactly_and_stays_small() {
        let mut w = Trailing::default();
        // 20 requests per millisecond for two minutes, 3 output tokens each
        for t in 0..120_000i64 {
            for _ in 0..20 {
                w.push(t, MINUTE_MS, 3);
            }
        }
        // slots are 60 ms wide: the window holds between 59.94 s and 60 s of requests
        assert!(w.count <= 20 * 60_000 && w.count >= 20 * 59_940, "{}", w.count);
        assert_eq!(w.sum, 3 * w.count);
        assert!(w.slots.len() <= 1001, "{} slots", w.slots.len());
        // after a quiet minute only the newest request is left
        w.push(200_000, MINUTE_MS, 1);
        assert_eq!((w.count, w.sum, w.slots.len()), (1, 1, 1));
        // sparse requests each keep their own slot and leave exactly a window later
        let mut w = Trailing::default();
        for t in [0, 1_000, 59_999, 60_000] {
            w.push(t, MINUTE_MS, 1);
        }
        assert_eq!(w.count, 3, "the request at 0 left at 60,000");
    }

    #[test]
    fn local_time_follows_dst() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        // Saturday 2026-03-28 23:30 UTC = Sunday 00:30 CET (+1)
        let l = local_time(&berlin, ms("2026-03-28T23:30:00Z"));
        assert_eq!((l.weekday, l.minute_of_day, l.hour_of_week), (6, 30, 6 * 24));
        // 2026-03-29 01:30 UTC = 03:30 CEST (+2): 02:00–03:00 local does not exist
        let l = local_time(&berlin, ms("2026-03-29T01:30:00Z"));
        assert_eq!(l.minute_of_day, 3 * 60 + 30);
        // autumn: 2026-10-25 00:30 and 01:30 UTC are both 02:30 local
        let a = local_time(&berlin, ms("2026-10-25T00:30:00Z"));
        let b = local_time(&berlin, ms("2026-10-25T01:30:00Z"));
        assert_eq!(a, b);
        // Tokyo has no DST; before the epoch still works
        let tokyo = parse_tz("Asia/Tokyo").unwrap();
        assert_eq!(local_time(&tokyo, ms("1969-12-31T15:00:00Z")).minute_of_day, 0);
        assert_eq!(local_time(&tokyo, ms("1969-12-31T15:00:00Z")).weekday, 3);
    }

    #[test]
    fn month_bounds_are_utc_calendar_months() {
        assert_eq!(month_bounds(ms("2026-02-14T12:00:00Z")), (ms("2026-02-01T00:00:00Z"), ms("2026-03-01T00:00:00Z")));
        assert_eq!(month_bounds(ms("2026-12-31T23:59:59Z")), (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z")));
        // the last representable month falls back without panicking
        let (s, e) = month_bounds(MAX_TS_MS);
        assert!(s <= MAX_TS_MS && e > s);
    }

    #[test]
    fn networks_mask_to_their_prefix() {
        let a = network("10.1.2.3".parse().unwrap(), 24, 64);
        let b = network("10.1.2.250".parse().unwrap(), 24, 64);
        let c = network("10.1.3.1".parse().unwrap(), 24, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(net_display(a, 24, 64), "10.1.2.0/24");
        let v6 = network("2001:db8:1:2:3::9".parse().unwrap(), 24, 64);
        assert_eq!(net_display(v6, 24, 64), "2001:db8:1:2::/64");
        assert_eq!(network("1.2.3.4".parse().unwrap(), 0, 0), Net::V4(0));
    }

    #[test]
    fn quantile_is_nearest_rank() {
        assert_eq!(quantile(&mut [], 3, 4), 0.0);
        assert_eq!(quantile(&mut [5], 3, 4), 5.0);
        assert_eq!(quantile(&mut [4, 1, 3, 2], 3, 4), 3.0);
        assert_eq!(quantile(&mut [4, 1, 3, 2, 5], 1, 2), 3.0);
    }
}
