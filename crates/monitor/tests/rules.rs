//! One block per rule: fires, does not fire, deduplicates, resolves; time zones
//! and DST for the hour-based rules.

#![expect(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use keyward_core::prices::PriceTable;
use keyward_monitor::*;
use std::net::IpAddr;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn engine_with(cfg: MonitorConfig) -> Engine {
    Engine::new(&cfg, PriceTable::builtin().unwrap()).unwrap()
}

fn engine() -> Engine {
    engine_with(MonitorConfig::default())
}

/// History is "enough" after 2 days in these tests.
fn short_history() -> MonitorConfig {
    MonitorConfig { min_history_days: 2, ..MonitorConfig::default() }
}

fn meta(key: &str, env: &str, tz: Option<&str>) -> KeyMeta {
    KeyMeta {
        key: key.into(),
        service: "svc".into(),
        upstream: Some("up1".into()),
        env: env.into(),
        tz: tz.map(String::from),
        budget_usd: None,
    }
}

fn req(t: i64, key: &str) -> Request {
    Request {
        ts_ms: t,
        key: key.into(),
        service: "svc".into(),
        source_ip: Some("10.0.0.7".parse().unwrap()),
        model: Some("claude-sonnet-4-6".into()),
        input_tokens: 100,
        output_tokens: 300,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        status: 200,
        cost_usd: None,
    }
}

fn raised(evs: &[AlertEvent]) -> Vec<&Alert> {
    evs.iter()
        .filter_map(|e| match e {
            AlertEvent::Raised(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn feed(e: &mut Engine, reqs: impl IntoIterator<Item = Request>) -> Vec<AlertEvent> {
    reqs.into_iter().flat_map(|r| e.observe(&Event::Request(r))).collect()
}

fn rules_of(evs: &[AlertEvent]) -> Vec<Rule> {
    raised(evs).iter().map(|a| a.rule).collect()
}

/// `n` requests evenly spread over the minute starting at `t`.
fn burst(t: i64, key: &str, n: i64) -> Vec<Request> {
    (0..n).map(|i| req(t + i * (MIN / n.max(1)), key)).collect()
}

/// Steady traffic, `rpm` a minute, business hours (08–19 UTC) on every day in `[from, to)`.
fn office_traffic(from: i64, to: i64, key: &str, rpm: i64) -> Vec<Request> {
    let mut v = Vec::new();
    let mut t = from;
    while t < to {
        let h = (t.rem_euclid(DAY)) / HOUR;
        if (8..19).contains(&h) {
            v.extend(burst(t, key, rpm));
        }
        t += MIN;
    }
    v
}

// ---------------------------------------------------------------- 1. rpm

#[test]
fn rpm_static_threshold_before_history() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    // Monday 2026-11-02 10:00 UTC, business hours, no history: static 120 rpm.
    let t = ts("2026-11-02T10:00:00Z");
    assert!(!rules_of(&feed(&mut e, burst(t, "k", 110))).contains(&Rule::Rpm));
    let evs = feed(&mut e, burst(t + 2 * MIN, "k", 130));
    let a = raised(&evs);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, Rule::Rpm);
    assert_eq!(a[0].key.as_deref(), Some("k"));
    assert_eq!(a[0].severity, Severity::Warning);
}

#[test]
fn rpm_against_the_learned_baseline_dedups_and_resolves() {
    let mut e = engine_with(short_history());
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let d0 = ts("2026-11-02T00:00:00Z"); // Monday
    let evs = feed(&mut e, office_traffic(d0, d0 + 3 * DAY, "k", 5));
    assert!(raised(&evs).is_empty(), "{evs:?}");
    // Thursday 10:00: 15 rpm is under the 20 rpm floor.
    let t = d0 + 3 * DAY + 10 * HOUR;
    assert!(raised(&feed(&mut e, burst(t, "k", 15))).is_empty());
    // 40 rpm for five minutes: one alert.
    let mut evs = Vec::new();
    for m in 2..7 {
        evs.extend(feed(&mut e, burst(t + m * MIN, "k", 40)));
    }
    let a = raised(&evs);
    assert_eq!(a.len(), 1, "{evs:?}");
    assert_eq!(a[0].rule, Rule::Rpm);
    assert!(a[0].value > a[0].threshold);
    let first_id = a[0].id;
    assert_eq!(e.open_alerts().count(), 1);
    // Quiet for resolve_after (15m): resolved.
    let evs = e.advance_to(t + 30 * MIN);
    assert!(evs.iter().any(|x| matches!(x, AlertEvent::Resolved { id, rule: Rule::Rpm, .. } if *id == first_id)));
    assert_eq!(e.open_alerts().count(), 0);
    // A new burst: a new alert.
    let evs = feed(&mut e, burst(t + 40 * MIN, "k", 40));
    let a = raised(&evs);
    assert_eq!(a.len(), 1);
    assert_ne!(a[0].id, first_id);
}

#[test]
fn rpm_only_in_business_hours() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    // Saturday, and a weekday evening: never the rpm rule.
    for t in [ts("2026-11-07T10:00:00Z"), ts("2026-11-03T20:00:00Z")] {
        assert!(!rules_of(&feed(&mut e, burst(t, "k", 200))).contains(&Rule::Rpm));
    }
}

#[test]
fn rpm_business_hours_follow_the_keys_time_zone_across_dst() {
    // Europe/Berlin moves from CET (+1) to CEST (+2) on 2026-03-29.
    // 06:30 UTC is 07:30 CET on Friday 03-27 (before business hours) and
    // 08:30 CEST on Monday 03-30 (business hours).
    let mut e = engine();
    e.upsert_key(meta("k", "prod", Some("Europe/Berlin"))).unwrap();
    let before = feed(&mut e, burst(ts("2026-03-27T06:30:00Z"), "k", 200));
    assert!(!rules_of(&before).contains(&Rule::Rpm), "{before:?}");
    let after = feed(&mut e, burst(ts("2026-03-30T06:30:00Z"), "k", 200));
    assert!(rules_of(&after).contains(&Rule::Rpm), "{after:?}");
}

// ---------------------------------------------------------------- 2. quiet hours

#[test]
fn quiet_hours_use_by_a_key_without_night_history() {
    let mut e = engine_with(short_history());
    e.upsert_key(meta("day", "prod", None)).unwrap();
    e.upsert_key(meta("night", "prod", None)).unwrap();
    let d0 = ts("2026-11-02T00:00:00Z");
    let mut hist = office_traffic(d0, d0 + 3 * DAY, "day", 2);
    hist.extend(office_traffic(d0, d0 + 3 * DAY, "night", 2));
    // "night" also works at 03:00 every night.
    for d in 0..3 {
        hist.push(req(d0 + d * DAY + 3 * HOUR, "night"));
    }
    hist.sort_by_key(|r| r.ts_ms);
    assert!(raised(&feed(&mut e, hist)).is_empty());
    let t = d0 + 3 * DAY + 2 * HOUR; // 02:00 UTC
    let evs = feed(&mut e, [req(t, "day"), req(t + 1000, "night"), req(t + 2000, "day")]);
    let a = raised(&evs);
    assert_eq!(a.len(), 1, "{evs:?}");
    assert_eq!((a[0].rule, a[0].key.as_deref()), (Rule::QuietHours, Some("day")));
    // resolves after 15 minutes without quiet use
    let evs = e.advance_to(t + 20 * MIN);
    assert!(matches!(evs.as_slice(), [AlertEvent::Resolved { rule: Rule::QuietHours, .. }]));
}

#[test]
fn quiet_hours_need_history_or_the_static_rate() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    // First day: a trickle at 02:00 is not judged; 40 rpm is.
    let t = ts("2026-11-02T02:00:00Z");
    assert!(raised(&feed(&mut e, burst(t, "k", 5))).is_empty());
    e.upsert_key(meta("k2", "prod", None)).unwrap();
    let evs = feed(&mut e, burst(t + 5 * MIN, "k2", 40));
    assert_eq!(rules_of(&evs), vec![Rule::QuietHours]);
    // The job goes on below the static rate, then above it again 20 minutes
    // later: the same episode, one alert.
    let mut evs = Vec::new();
    for m in 6..30 {
        evs.extend(feed(&mut e, burst(t + m * MIN, "k2", 10)));
    }
    evs.extend(feed(&mut e, burst(t + 30 * MIN, "k2", 40)));
    assert!(raised(&evs).is_empty(), "{evs:?}");
    // The next night the same job is history, not news.
    let _ = e.advance_to(t + DAY - HOUR);
    let evs = feed(&mut e, burst(t + DAY, "k2", 40));
    assert!(raised(&evs).is_empty(), "{evs:?}");
}

#[test]
fn quiet_hours_in_the_keys_time_zone_across_dst() {
    // Quiet 00:00–05:00 local, Europe/Berlin. 03:30 UTC is 04:30 CET on
    // 2026-03-28 (quiet) and 05:30 CEST on 2026-03-29 (not quiet).
    let mut cfg = short_history();
    cfg.rules.quiet_hours.static_rpm = 1.0;
    let mut e = engine_with(cfg);
    e.upsert_key(meta("a", "prod", Some("Europe/Berlin"))).unwrap();
    e.upsert_key(meta("b", "prod", Some("Europe/Berlin"))).unwrap();
    let evs = feed(&mut e, [req(ts("2026-03-28T03:30:00Z"), "a")]);
    assert_eq!(rules_of(&evs), vec![Rule::QuietHours]);
    let evs = feed(&mut e, [req(ts("2026-03-29T03:30:00Z"), "b")]);
    assert!(raised(&evs).is_empty(), "{evs:?}");
    // And New York, where 06:00 UTC is 02:00 EDT (quiet) but 10:00 UTC is not.
    e.upsert_key(meta("ny", "prod", Some("America/New_York"))).unwrap();
    assert!(raised(&feed(&mut e, [req(ts("2026-03-30T10:00:00Z"), "ny")])).is_empty());
    let evs = feed(&mut e, [req(ts("2026-03-31T06:00:00Z"), "ny")]);
    assert_eq!(rules_of(&evs), vec![Rule::QuietHours]);
}

#[test]
fn service_hours_override_the_default() {
    let mut cfg = MonitorConfig::default();
    cfg.services.insert(
        "svc".into(),
        keyward_monitor::config::HoursOverride { quiet_hours: Some("22:00-06:00".into()), ..Default::default() },
    );
    cfg.rules.quiet_hours.static_rpm = 1.0;
    let mut e = engine_with(cfg);
    e.upsert_key(meta("k", "prod", None)).unwrap();
    assert_eq!(rules_of(&feed(&mut e, [req(ts("2026-11-02T23:00:00Z"), "k")])), vec![Rule::QuietHours]);
}

// ---------------------------------------------------------------- 3. output tokens

#[test]
fn output_tokens_static_and_learned() {
    let mut e = engine_with(short_history());
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let d0 = ts("2026-11-02T00:00:00Z");
    // Static: 250k output tokens in a minute on day one.
    let mut big = req(d0 + 10 * HOUR, "k");
    big.output_tokens = 250_000;
    assert_eq!(rules_of(&feed(&mut e, [big])), vec![Rule::OutputTokens]);
    let _ = e.advance_to(d0 + 11 * HOUR);
    // Learned: 5 rpm x 300 tokens; then 8000-token answers.
    let evs = feed(&mut e, office_traffic(d0 + DAY, d0 + 4 * DAY, "k", 5));
    assert!(raised(&evs).is_empty());
    let t = d0 + 4 * DAY + 10 * HOUR;
    let mut normal = burst(t, "k", 5);
    normal[0].output_tokens = 3000;
    assert!(raised(&feed(&mut e, normal)).is_empty());
    let long: Vec<Request> = (0..4)
        .map(|i| {
            let mut r = req(t + MIN + i * 1000, "k");
            r.output_tokens = 8000;
            r
        })
        .collect();
    let evs = feed(&mut e, long);
    assert_eq!(rules_of(&evs), vec![Rule::OutputTokens]);
}

// ---------------------------------------------------------------- 4. error rate

#[test]
fn error_rate_needs_share_and_count() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let t = ts("2026-11-02T10:00:00Z");
    let errs = |t: i64, n: i64, status: u16| {
        burst(t, "k", n)
            .into_iter()
            .map(|mut r| {
                r.status = status;
                r
            })
            .collect::<Vec<_>>()
    };
    // 19 errors: under the minimum count.
    assert!(raised(&feed(&mut e, errs(t, 19, 401))).is_empty());
    // 5xx are not 4xx.
    assert!(raised(&feed(&mut e, errs(t + MIN, 30, 529))).is_empty());
    let _ = e.advance_to(t + 20 * MIN);
    // 30 errors among 200 successes: 13 %, under 25 %.
    let mut mix = errs(t + 20 * MIN, 70, 200);
    mix.extend(errs(t + 21 * MIN, 70, 200));
    mix.extend(errs(t + 22 * MIN, 60, 200));
    mix.extend(errs(t + 23 * MIN, 30, 404));
    mix.sort_by_key(|r| r.ts_ms);
    assert!(raised(&feed(&mut e, mix)).is_empty());
    let _ = e.advance_to(t + 40 * MIN);
    // 25 of 25: fires once.
    let evs = feed(&mut e, errs(t + 40 * MIN, 25, 401));
    let a = raised(&evs);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, Rule::ErrorRate);
}

// ---------------------------------------------------------------- 5. budget

#[test]
fn budget_levels_once_each_and_resolved_at_month_end() {
    let mut cfg = MonitorConfig::default();
    cfg.rules.budget.action = Some(Action::Suspend);
    cfg.rules.budget.projection = false;
    let mut e = engine_with(cfg);
    let mut m = meta("k", "prod", None);
    m.budget_usd = Some(10.0);
    e.upsert_key(m).unwrap();
    // claude-sonnet-4-6: $15 per million output tokens -> $1.50 per request.
    let t = ts("2026-11-10T12:00:00Z");
    let costly = |i: i64| {
        let mut r = req(t + i * MIN, "k");
        r.input_tokens = 0;
        r.output_tokens = 100_000;
        r
    };
    let evs = feed(&mut e, (0..10).map(costly));
    let a = raised(&evs);
    assert_eq!(a.len(), 3, "{evs:?}");
    assert!(a.iter().all(|x| x.rule == Rule::Budget));
    assert_eq!(
        a.iter().map(|x| x.severity).collect::<Vec<_>>(),
        vec![Severity::Info, Severity::Warning, Severity::Critical]
    );
    assert_eq!(a[0].action, None);
    assert_eq!(a[2].action, Some(Action::Suspend));
    // $6.00 at the 4th request (50 %), $9.00 at the 6th (80 %), $10.50 at the 7th.
    assert_eq!(a[0].at_ms, t + 3 * MIN);
    assert_eq!(a[2].at_ms, t + 6 * MIN);
    // Not resolved by time passing within the month ...
    assert!(e.advance_to(t + 5 * DAY).is_empty());
    // ... but at the next month.
    let evs = e.advance_to(ts("2026-12-01T00:00:01Z"));
    assert_eq!(evs.len(), 3);
    assert!(evs.iter().all(
        |x| matches!(x, AlertEvent::Resolved { rule: Rule::Budget, at_ms, .. } if *at_ms == ts("2026-12-01T00:00:00Z"))
    ));
    // A new month: spend starts again.
    assert!(raised(&feed(&mut e, [req(ts("2026-12-02T12:00:00Z"), "k")])).is_empty());
}

#[test]
fn budget_projection() {
    let mut e = engine();
    let mut m = meta("k", "prod", None);
    m.budget_usd = Some(10.0);
    e.upsert_key(m).unwrap();
    let spend = |t: i64| {
        let mut r = req(t, "k");
        r.input_tokens = 0;
        r.output_tokens = 100_000; // $1.50
        r
    };
    // Two days in: $4.50 projects to $67, but the projection is not trusted before 3 days.
    let t = ts("2026-04-03T00:00:00Z");
    let evs = feed(&mut e, (0..3).map(|i| spend(t + i * MIN)));
    assert!(raised(&evs).is_empty(), "{evs:?}");
    // Ten days in: still $4.50 (+ a cheap request), projected ~$14 > $10.
    let evs = feed(&mut e, [req(ts("2026-04-10T00:00:00Z"), "k")]);
    assert_eq!(rules_of(&evs), vec![Rule::BudgetProjection]);
    // Late in the month the projection falls under 90 %: resolved.
    let evs = feed(&mut e, [req(ts("2026-04-29T00:00:00Z"), "k")]);
    assert!(matches!(evs.as_slice(), [AlertEvent::Resolved { rule: Rule::BudgetProjection, .. }]), "{evs:?}");
}

// ---------------------------------------------------------------- 6. new network

#[test]
fn new_network_for_production_keys_after_learning() {
    let mut e = engine_with(short_history());
    e.upsert_key(meta("p", "prod", None)).unwrap();
    e.upsert_key(meta("d", "dev", None)).unwrap();
    let d0 = ts("2026-11-02T00:00:00Z");
    let mut hist = office_traffic(d0, d0 + 3 * DAY, "p", 1);
    hist.extend(office_traffic(d0, d0 + 3 * DAY, "d", 1));
    hist.sort_by_key(|r| r.ts_ms);
    assert!(raised(&feed(&mut e, hist)).is_empty());
    let t = d0 + 3 * DAY + 10 * HOUR;
    let from = |t: i64, key: &str, ip: &str| {
        let mut r = req(t, key);
        r.source_ip = Some(ip.parse().unwrap());
        r
    };
    // Same /24: fine. Another /24: alert (once). A dev key: never.
    let evs = feed(
        &mut e,
        [
            from(t, "p", "10.0.0.200"),
            from(t + 1000, "p", "10.0.1.5"),
            from(t + 2000, "p", "10.0.1.6"),
            from(t + 3000, "d", "192.0.2.1"),
        ],
    );
    let a = raised(&evs);
    assert_eq!(a.len(), 1, "{evs:?}");
    assert_eq!((a[0].rule, a[0].key.as_deref()), (Rule::NewNetwork, Some("p")));
    assert!(a[0].summary.contains("10.0.1.0/24"));
    // IPv6: /64.
    let _ = e.advance_to(t + HOUR);
    e.trust_network("p", "2001:db8:1:2::1".parse::<IpAddr>().unwrap());
    assert!(raised(&feed(&mut e, [from(t + HOUR, "p", "2001:db8:1:2::ffff")])).is_empty());
    assert_eq!(rules_of(&feed(&mut e, [from(t + HOUR + 1000, "p", "2001:db8:1:3::1")])), vec![Rule::NewNetwork]);
}

// ---------------------------------------------------------------- 7. revoked presented

#[test]
fn revoked_secret_presented() {
    let mut cfg = MonitorConfig::default();
    cfg.rules.revoked.action = Some(Action::Suspend);
    let mut e = engine_with(cfg);
    let t = ts("2026-11-02T10:00:00Z");
    let p = |t: i64| {
        Event::PresentedRevoked(PresentedRevoked {
            ts_ms: t,
            key: "key_old".into(),
            source_ip: Some("198.51.100.7".parse().unwrap()),
        })
    };
    let evs = e.observe(&p(t));
    let a = raised(&evs);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, Rule::RevokedPresented);
    assert_eq!(a[0].severity, Severity::Critical);
    assert_eq!(a[0].action, Some(Action::Suspend));
    assert_eq!(a[0].dedup_key, "keyward:revoked_presented:key:key_old");
    assert!(e.observe(&p(t + 5 * MIN)).is_empty());
    assert!(e.advance_to(t + 19 * MIN).is_empty());
    assert_eq!(e.advance_to(t + 21 * MIN).len(), 1);
    assert_eq!(raised(&e.observe(&p(t + 30 * MIN))).len(), 1);
}

// ---------------------------------------------------------------- 8. out of band

fn usage(t: i64, up: &str, tokens: u64) -> Event {
    Event::UpstreamUsage(UpstreamUsage {
        ts_ms: t,
        upstream: up.into(),
        input_tokens: tokens / 2,
        output_tokens: tokens - tokens / 2,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
    })
}

#[test]
fn out_of_band_tokens_are_critical_and_per_upstream() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let m = ts("2026-11-02T10:00:00Z");
    // Minute 0: 800 tokens reported, 800 metered (two requests of 400).
    let mut evs = e.observe(&usage(m, "up1", 800));
    evs.extend(feed(&mut e, [req(m + 10_000, "k"), req(m + 20_000, "k")]));
    // Minute 1: 5800 reported, 400 metered.
    evs.extend(e.observe(&usage(m + MIN, "up1", 5800)));
    assert!(raised(&evs).is_empty(), "minute 0 is explained: {evs:?}");
    evs = feed(&mut e, [req(m + MIN + 5000, "k")]);
    evs.extend(e.observe(&usage(m + 2 * MIN, "up1", 0)));
    let a = raised(&evs);
    assert_eq!(a.len(), 1, "{evs:?}");
    assert_eq!(a[0].rule, Rule::OutOfBand);
    assert_eq!(a[0].upstream.as_deref(), Some("up1"));
    assert_eq!(a[0].key, None);
    assert_eq!(a[0].severity, Severity::Critical);
    assert_eq!(a[0].at_ms, m + 2 * MIN, "judged when the minute is over");
    assert_eq!(a[0].value, 5400.0);
    // An upstream with no gateway traffic at all.
    let evs = e.observe(&usage(m + 3 * MIN, "other", 1000));
    assert!(raised(&evs).is_empty());
    let evs = e.finish();
    assert_eq!(raised(&evs)[0].upstream.as_deref(), Some("other"));
}

#[test]
fn out_of_band_allows_minute_boundary_skew_and_tolerance() {
    let mut e = engine();
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let m = ts("2026-11-02T10:00:00Z");
    // A request metered at 10:00:59.5 that the upstream counts in 10:01.
    let mut evs = e.observe(&usage(m, "up1", 0));
    let mut r = req(m + 59_500, "k");
    r.input_tokens = 5000;
    r.output_tokens = 5000;
    evs.extend(feed(&mut e, [r]));
    evs.extend(e.observe(&usage(m + MIN, "up1", 10_000 + 150)));
    evs.extend(e.observe(&usage(m + 2 * MIN, "up1", 0)));
    evs.extend(e.finish());
    // 150 unexplained tokens are within the 200-token tolerance.
    assert!(raised(&evs).is_empty(), "{evs:?}");
}

// ---------------------------------------------------------------- general

#[test]
fn learn_mode_raises_nothing_but_learns() {
    let mut e = engine_with(short_history());
    e.upsert_key(meta("k", "prod", None)).unwrap();
    let d0 = ts("2026-11-02T00:00:00Z");
    for r in office_traffic(d0, d0 + 3 * DAY, "k", 2) {
        assert!(e.learn(&Event::Request(r)).is_empty());
    }
    let _ = e.learn(&Event::Request(req(d0 + 3 * DAY + 2 * HOUR + 1, "x")));
    // learned: a new network alerts now
    let mut r = req(d0 + 3 * DAY + 10 * HOUR, "k");
    r.source_ip = Some("172.16.5.5".parse().unwrap());
    assert_eq!(rules_of(&e.observe(&Event::Request(r))), vec![Rule::NewNetwork]);
}

#[test]
fn unknown_time_zone_is_reported_and_falls_back() {
    let mut e = engine();
    assert!(e.upsert_key(meta("k", "prod", Some("Mars/Olympus_Mons"))).is_err());
    // still usable
    let evs = feed(&mut e, burst(ts("2026-11-02T10:00:00Z"), "k", 130));
    assert_eq!(rules_of(&evs), vec![Rule::Rpm]);
}
