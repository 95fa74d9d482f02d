//! `replay` over a small hand-written trace, its errors, and the engine under
//! arbitrary input (never panics; alert bookkeeping stays consistent).

use keyward_core::prices::PriceTable;
use keyward_monitor::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const SMALL: &str = include_str!("data/small.jsonl");

#[test]
fn replays_a_small_trace() {
    let out = replay(SMALL.as_bytes(), &MonitorConfig::default()).unwrap();
    type Row<'a> = (String, Option<&'a str>, Option<&'a str>, &'a str, &'a str);
    let got: Vec<Row> = out
        .alerts
        .iter()
        .map(|a| (a.rule.to_string(), a.key.as_deref(), a.upstream.as_deref(), a.at.as_str(), a.severity.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            // $1.005 for 40k opus output tokens + 1k input: every level of the $1 budget.
            ("budget".into(), Some("key_a"), None, "2026-11-02T09:01:30Z", "info"),
            ("budget".into(), Some("key_a"), None, "2026-11-02T09:01:30Z", "warning"),
            ("budget".into(), Some("key_a"), None, "2026-11-02T09:01:30Z", "critical"),
            // 60 000 reported in minute 09:01, 41 000 metered: judged at 09:02.
            ("out_of_band".into(), None, Some("prod-main"), "2026-11-02T09:02:00Z", "critical"),
            // once, deduplicated
            ("revoked_presented".into(), Some("key_old"), None, "2026-11-02T09:02:30Z", "critical"),
        ]
    );
    // The JSON shape the CLI prints.
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(
        v["alerts"][3],
        serde_json::json!({"rule":"out_of_band","key":null,"upstream":"prod-main","at":"2026-11-02T09:02:00Z","severity":"critical"})
    );
}

#[test]
fn replay_errors_name_the_line() {
    let bad = "{\"type\":\"key\",\"key\":\"k\",\"service\":\"s\",\"env\":\"prod\"}\n{\"type\":\"request\",\"ts\":\"yesterday\",\"key\":\"k\",\"service\":\"s\",\"status\":200}\n";
    let e = replay(bad.as_bytes(), &MonitorConfig::default()).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = replay("{\"type\":\"nope\"}\n".as_bytes(), &MonitorConfig::default()).unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    let tz = "{\"type\":\"key\",\"key\":\"k\",\"service\":\"s\",\"env\":\"prod\",\"tz\":\"Nowhere/Land\"}\n";
    let e = replay(tz.as_bytes(), &MonitorConfig::default()).unwrap_err();
    assert!(e.to_string().contains("time zone"), "{e}");
    let cfg = MonitorConfig { baseline_days: 3, ..MonitorConfig::default() };
    assert!(replay("".as_bytes(), &cfg).is_err());
    assert_eq!(replay("\n\n".as_bytes(), &MonitorConfig::default()).unwrap().alerts, vec![]);
}

#[test]
fn the_engine_can_move_between_threads() {
    fn send<T: Send + Sync>() {}
    send::<Engine>();
    send::<MonitorConfig>();
}

// ---------------------------------------------------------------- property

fn arb_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        // a busy fortnight, so windows, hours and baselines get exercised
        1_790_000_000_000i64..1_791_300_000_000,
        any::<i64>(),
        Just(0i64),
        Just(i64::MAX),
        Just(i64::MIN),
    ]
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("k1".to_string()), Just("k2".to_string()), "[a-z]{0,3}"]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let ip = prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|b| Some(std::net::IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Some(std::net::IpAddr::from(b))),
    ];
    let tokens = prop_oneof![0u64..10_000, any::<u64>()];
    prop_oneof![
        1 => (
            arb_name(),
            prop_oneof![Just("prod"), Just("dev"), Just("")],
            prop_oneof![Just(None), Just(Some("Europe/Berlin")), Just(Some("bogus"))],
            prop_oneof![Just(None), Just(Some(1.0)), Just(Some(f64::NAN)), Just(Some(-5.0)), Just(Some(1e300))],
            prop_oneof![Just(None), Just(Some("u1")), Just(Some("u2"))],
        )
            .prop_map(|(key, env, tz, budget_usd, upstream)| Event::Key(KeyMeta {
                key,
                service: "s".into(),
                upstream: upstream.map(String::from),
                env: env.into(),
                tz: tz.map(String::from),
                budget_usd,
            })),
        6 => (arb_ts(), arb_name(), ip.clone(), tokens.clone(), tokens.clone(), any::<u16>(), prop_oneof![Just(None), Just(Some("claude-opus-4-6")), Just(Some("x"))], prop_oneof![Just(None), Just(Some(f64::NAN)), Just(Some(1e308)), Just(Some(0.5))])
            .prop_map(|(ts_ms, key, source_ip, i, o, status, model, cost_usd)| Event::Request(Request {
                ts_ms,
                key,
                service: "s".into(),
                source_ip,
                model: model.map(String::from),
                input_tokens: i,
                output_tokens: o,
                cache_creation_input_tokens: i / 3,
                cache_read_input_tokens: o / 5,
                status,
                cost_usd,
            })),
        2 => (arb_ts(), prop_oneof![Just("u1"), Just("u2"), Just("u3")], tokens.clone(), tokens)
            .prop_map(|(ts_ms, up, i, o)| Event::UpstreamUsage(UpstreamUsage {
                ts_ms,
                upstream: up.into(),
                input_tokens: i,
                output_tokens: o,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
            })),
        1 => (arb_ts(), arb_name(), ip).prop_map(|(ts_ms, key, source_ip)| Event::PresentedRevoked(PresentedRevoked { ts_ms, key, source_ip })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_and_keeps_its_books(
        events in proptest::collection::vec(arb_event(), 0..300),
        sorted in any::<bool>(),
        advances in proptest::collection::vec(arb_ts(), 0..5),
    ) {
        let mut events = events;
        if sorted {
            events.sort_by_key(|e| e.ts_ms().unwrap_or(i64::MIN));
        }
        let mut cfg = MonitorConfig { min_history_days: 1, ..MonitorConfig::default() };
        cfg.rules.budget.action = Some(Action::Suspend);
        let mut e = Engine::new(&cfg, PriceTable::builtin().unwrap()).unwrap();
        let mut all = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            if i % 3 == 0 { all.extend(e.learn(ev)); } else { all.extend(e.observe(ev)); }
            if i % 50 == 0 {
                if let Some(t) = advances.get(i / 50) { all.extend(e.advance_to(*t)); }
            }
        }
        all.extend(e.finish());
        // Every id raised once; every resolve refers to an alert that was open.
        let mut open: BTreeMap<u64, String> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for a in &all {
            match a {
                AlertEvent::Raised(x) => {
                    prop_assert!(seen.insert(x.id));
                    prop_assert!(!open.values().any(|d| d == &x.dedup_key), "two open alerts for {}", x.dedup_key);
                    prop_assert!(x.key.is_some() != x.upstream.is_some());
                    open.insert(x.id, x.dedup_key.clone());
                }
                AlertEvent::Resolved { id, .. } => {
                    prop_assert!(open.remove(id).is_some());
                }
            }
        }
        prop_assert_eq!(open.len(), e.open_alerts().count());
    }

    #[test]
    fn replay_never_panics_on_arbitrary_lines(lines in proptest::collection::vec("\\PC{0,120}", 0..20)) {
        let text = lines.join("\n");
        let _ = replay(text.as_bytes(), &MonitorConfig::default());
    }
}
