//! Seeded generator of a four-week usage trace for the anomaly benchmark
//! (`benches/anomaly/`): ~20 keys with daily and weekly rhythms in their own time
//! zones, noise and short legitimate bursts, public holidays, gradual growth, and
//! injected incidents of every rule's kind, with a ground-truth file.
//!
//! ```text
//! cargo run --release -p keyward-monitor --example anomaly-gen -- --seed 2 --out DIR
//! ```
//! writes `DIR/trace.jsonl` (the `keyward monitor replay` format) and `DIR/truth.json`.
//!
//! The generator knows nothing of the detector's thresholds; incident sizes are
//! stated relative to each key's own traffic and listed in `truth.json`.

#![expect(clippy::unwrap_used, reason = "a benchmark tool: any failure aborts the run")]

use keyward_core::prices::{date_of_ms, PriceTable};
use keyward_core::usage::TokenUsage;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Monday 2026-10-12 00:00 UTC: the window holds the EU (Oct 25) and US (Nov 1)
/// DST ends and a month boundary (Nov 1).
const START_MS: i64 = 1_791_763_200_000;

/// splitmix64: small, seedable, stable across platforms and versions.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    fn int(&mut self, lo: i64, hi_excl: i64) -> i64 {
        lo + (self.next_u64() % (hi_excl - lo) as u64) as i64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.f().max(1e-12);
        let u2 = self.f();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.f();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.int(0, v.len() as i64) as usize]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    /// Office-hours application; `night` is the share of its level left at night.
    Interactive { night: f64 },
    /// Nightly job 01:00–03:30 local, little else.
    Batch,
    /// Round the clock with a diurnal swing.
    AlwaysOn,
}

struct Key {
    id: String,
    service: String,
    upstream: String,
    env: &'static str,
    tz: &'static str,
    tzr: jiff::tz::TimeZone,
    profile: Profile,
    /// Requests per minute at the daily peak, at the start of the trace.
    peak: f64,
    /// Growth per week (multiplicative).
    growth: f64,
    model: &'static str,
    median_in: f64,
    median_out: f64,
    nets: Vec<[u8; 3]>,
    budget: Option<f64>,
    holidays: Vec<&'static str>,
}

struct Req {
    ts: i64,
    key: usize,
    ip: String,
    model: &'static str,
    input: u64,
    output: u64,
    status: u16,
    /// The upstream counts the request this much later (network, queueing).
    upstream_delay_ms: i64,
    /// Upstream used, `None` when the request does not pass through the gateway.
    via_gateway: bool,
}

struct Incident {
    id: String,
    kind: &'static str,
    key: Option<String>,
    upstream: Option<String>,
    start: i64,
    end: i64,
    /// Budget: when the key's spend crossed the first level (detection cannot precede it).
    detect_from: Option<i64>,
    expect: Vec<&'static str>,
    size: String,
}

fn local(tz: &jiff::tz::TimeZone, ts: i64) -> (u8, f64, String) {
    let z = jiff::Timestamp::from_millisecond(ts).unwrap().to_zoned(tz.clone());
    let wd = z.weekday().to_monday_zero_offset() as u8;
    let h = z.hour() as f64 + z.minute() as f64 / 60.0;
    (wd, h, z.date().to_string())
}

fn shape(p: Profile, wd: u8, h: f64, holiday: bool) -> f64 {
    let weekend = wd >= 5;
    match p {
        Profile::Interactive { night } => {
            let day = if (7.0..20.0).contains(&h) {
                let x = ((h - 7.0) / 13.0 * std::f64::consts::PI).sin().powf(1.3);
                let lunch = if (12.0..13.5).contains(&h) { 0.75 } else { 1.0 };
                x * lunch
            } else {
                0.0
            };
            let base = day.max(if (0.0..5.0).contains(&h) { night } else { night * 1.5 });
            if weekend || holiday {
                base * 0.08
            } else {
                base
            }
        }
        Profile::Batch => {
            if (1.0..3.5).contains(&h) {
                1.0
            } else if (9.0..17.0).contains(&h) && !weekend && !holiday {
                0.05
            } else {
                0.0
            }
        }
        Profile::AlwaysOn => {
            let x = 0.55 + 0.45 * ((h - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).cos();
            if weekend || holiday {
                x * 0.7
            } else {
                x
            }
        }
    }
}

fn main() {
    let mut seed = 1u64;
    let mut out = std::path::PathBuf::from("anomaly-out");
    let mut days = 28i64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().unwrap().parse().unwrap(),
            "--out" => out = args.next().unwrap().into(),
            "--days" => days = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&out).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x006b_6579_7761_7264);
    let prices = PriceTable::builtin().unwrap();
    let end_ms = START_MS + days * DAY;

    // ---- keys ----
    let tzs: [(&str, &[&str]); 5] = [
        ("Europe/Berlin", &["2026-10-30"]),
        ("America/New_York", &["2026-10-12", "2026-11-03"]),
        ("Asia/Tokyo", &["2026-11-03"]),
        ("Europe/Dublin", &["2026-10-26"]),
        ("UTC", &[]),
    ];
    let models = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6"];
    let mut keys: Vec<Key> = Vec::new();
    let plan: [(Profile, &str); 20] = [
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.0 }, "prod"),
        (Profile::Interactive { night: 0.04 }, "prod"),
        (Profile::Interactive { night: 0.04 }, "prod"),
        (Profile::Interactive { night: 0.03 }, "prod"),
        (Profile::Interactive { night: 0.05 }, "prod"),
        (Profile::AlwaysOn, "prod"),
        (Profile::AlwaysOn, "prod"),
        (Profile::AlwaysOn, "prod"),
        (Profile::Batch, "prod"),
        (Profile::Batch, "prod"),
        (Profile::Interactive { night: 0.0 }, "stg"),
        (Profile::Interactive { night: 0.0 }, "stg"),
        (Profile::Interactive { night: 0.0 }, "dev"),
        (Profile::Interactive { night: 0.0 }, "dev"),
        (Profile::AlwaysOn, "stg"),
    ];
    for (i, (profile, env)) in plan.iter().enumerate() {
        let (tz, hol) = *rng.pick(&tzs);
        let region = if tz.starts_with("America") { "us" } else { "eu" };
        let upstream = match *env {
            "prod" => format!("prod-{region}"),
            e => format!("{e}-shared"),
        };
        let peak = match (profile, *env) {
            (_, "dev") => rng.range(0.5, 2.0),
            (_, "stg") => rng.range(1.0, 4.0),
            (Profile::Batch, _) => rng.range(10.0, 30.0),
            _ => rng.lognormal(6.0, 0.7).clamp(1.5, 40.0),
        };
        let nnets = rng.int(1, 4) as usize;
        let nets = (0..nnets).map(|_| [10, rng.int(0, 256) as u8, rng.int(0, 256) as u8]).collect();
        let model = *rng.pick(&models);
        keys.push(Key {
            id: format!("key_{:02}{}", i, ["a", "b", "c", "d"][i % 4]),
            service: format!("svc-{}", ["billing", "search", "support", "docs", "ingest"][i % 5]),
            upstream,
            env,
            tz,
            tzr: jiff::tz::TimeZone::get(tz).unwrap(),
            profile: *profile,
            peak,
            growth: rng.range(1.0, 1.04),
            model,
            median_in: rng.lognormal(1500.0, 0.5),
            median_out: rng.lognormal(300.0, 0.4),
            nets,
            budget: None,
            holidays: hol.to_vec(),
        });
    }

    // ---- legitimate traffic ----
    let mut reqs: Vec<Req> = Vec::new();
    for (ki, k) in keys.iter().enumerate() {
        let mut day_factor = 1.0;
        let mut burst_until = 0i64;
        let mut burst_mult = 1.0;
        let mut t = START_MS;
        while t < end_ms {
            if (t - START_MS) % DAY == 0 {
                day_factor = rng.lognormal(1.0, 0.12);
            }
            let (wd, h, date) = local(&k.tzr, t);
            let holiday = k.holidays.iter().any(|d| *d == date);
            let weeks = (t - START_MS) as f64 / (7 * DAY) as f64;
            if t >= burst_until && rng.f() < 0.02 / 60.0 {
                burst_until = t + rng.int(5, 16) * MIN;
                burst_mult = rng.range(1.3, 1.8);
            }
            let mult = if t < burst_until { burst_mult } else { 1.0 };
            let lambda = k.peak
                * k.growth.powf(weeks)
                * day_factor
                * shape(k.profile, wd, h, holiday)
                * rng.lognormal(1.0, 0.1)
                * mult;
            for _ in 0..rng.poisson(lambda) {
                let net = rng.pick(&k.nets);
                let status = {
                    let u = rng.f();
                    if u < 0.006 {
                        400
                    } else if u < 0.010 {
                        429
                    } else if u < 0.012 {
                        529
                    } else {
                        200
                    }
                };
                let ok = status == 200;
                reqs.push(Req {
                    ts: t + rng.int(0, MIN),
                    key: ki,
                    ip: format!("{}.{}.{}.{}", net[0], net[1], net[2], rng.int(2, 250)),
                    model: k.model,
                    input: if ok { rng.lognormal(k.median_in, 0.8).clamp(10.0, 150_000.0) as u64 } else { 0 },
                    output: if ok { rng.lognormal(k.median_out, 0.9).clamp(1.0, 8192.0) as u64 } else { 0 },
                    status,
                    upstream_delay_ms: rng.int(50, 2000),
                    via_gateway: true,
                });
            }
            t += MIN;
        }
    }

    // Budgets: about 3x the key's expected monthly spend, on six prod keys.
    let spend_per_key =
        |reqs: &[Req], ki: usize| -> f64 { reqs.iter().filter(|r| r.key == ki).map(|r| cost(&prices, r)).sum::<f64>() };
    let budgeted = [0usize, 2, 6, 10, 11, 13];
    for &ki in &budgeted {
        let monthly = spend_per_key(&reqs, ki) / days as f64 * 30.0;
        keys[ki].budget = Some((monthly * rng.range(2.8, 3.5)).max(5.0).round());
    }

    // ---- incidents ----
    let mut incidents: Vec<Incident> = Vec::new();
    let mut extra_usage: Vec<(i64, String, u64)> = Vec::new();
    let mut revoked: Vec<(i64, String, String)> = Vec::new();
    let peak_now = |k: &Key, t: i64| k.peak * k.growth.powf((t - START_MS) as f64 / (7 * DAY) as f64);
    // A business-hours local time on a weekday of day >= `from_day`.
    let business_time = |rng: &mut Rng, k: &Key, from_day: i64| -> i64 {
        loop {
            let d = rng.int(from_day, days - 1);
            let t = START_MS + d * DAY + rng.int(0, 24 * 60) * MIN;
            let (wd, h, date) = local(&k.tzr, t);
            if wd < 5 && (9.5..17.0).contains(&h) && !k.holidays.iter().any(|x| *x == date) {
                return t;
            }
        }
    };
    let add = |rng: &mut Rng,
               reqs: &mut Vec<Req>,
               ki: usize,
               t0: i64,
               t1: i64,
               rpm: f64,
               ip: &dyn Fn(&mut Rng) -> String,
               out: (f64, f64),
               status: &dyn Fn(&mut Rng) -> u16,
               model: &'static str| {
        let mut t = t0;
        while t < t1 {
            for _ in 0..rng.poisson(rpm) {
                let st = status(rng);
                let ok = st == 200;
                reqs.push(Req {
                    ts: t + rng.int(0, MIN),
                    key: ki,
                    ip: ip(rng),
                    model,
                    input: if ok { rng.lognormal(1500.0, 0.6) as u64 } else { 0 },
                    output: if ok { rng.range(out.0, out.1) as u64 } else { 0 },
                    status: st,
                    upstream_delay_ms: rng.int(50, 2000),
                    via_gateway: true,
                });
            }
            t += MIN;
        }
    };
    let known_ip = |k: &Key| {
        let n = k.nets.clone();
        move |rng: &mut Rng| {
            let net = rng.pick(&n);
            format!("{}.{}.{}.{}", net[0], net[1], net[2], rng.int(2, 250))
        }
    };
    let ok200 = |_: &mut Rng| 200u16;
    let interactive_prod: Vec<usize> = (0..keys.len())
        .filter(|&i| matches!(keys[i].profile, Profile::Interactive { .. }) && keys[i].env == "prod")
        .collect();
    let strict: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].profile == Profile::Interactive { night: 0.0 } && keys[i].env == "prod")
        .collect();
    let prod: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].env == "prod").collect();
    let all: Vec<usize> = (0..keys.len()).collect();
    let mut n = 0;
    let mut next_id = |kind: &str| {
        n += 1;
        format!("inc{n:02}-{kind}")
    };

    for rep in 0..2 {
        // 1. runaway client / stolen key: 3x the key's usual peak rate on top, for 20–60 min.
        let ki = *rng.pick(&interactive_prod);
        let k = &keys[ki];
        let t0 = business_time(&mut rng, k, 8);
        let t1 = t0 + rng.int(20, 61) * MIN;
        let extra = (3.0 * peak_now(k, t0)).max(20.0);
        add(
            &mut rng,
            &mut reqs,
            ki,
            t0,
            t1,
            extra,
            &known_ip(k),
            (k.median_out * 0.5, k.median_out * 1.5),
            &ok200,
            k.model,
        );
        incidents.push(Incident {
            id: next_id("rpm"),
            kind: "rpm",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["rpm"],
            size: format!("+{extra:.1} rpm (3x the key's peak, at least 20) from its own networks"),
        });

        // 2. quiet hours: 2–5 rpm for 30 min at 01:00–04:00 local, key with no night use.
        let ki = *rng.pick(&strict);
        let k = &keys[ki];
        let t0 = loop {
            let d = rng.int(8, days - 1);
            let t = START_MS + d * DAY + rng.int(0, 24 * 60) * MIN;
            let (_, h, _) = local(&k.tzr, t);
            if (1.0..4.0).contains(&h) {
                break t;
            }
        };
        let t1 = t0 + 30 * MIN;
        let rpm = rng.range(2.0, 5.0);
        add(
            &mut rng,
            &mut reqs,
            ki,
            t0,
            t1,
            rpm,
            &known_ip(k),
            (k.median_out * 0.5, k.median_out * 1.5),
            &ok200,
            k.model,
        );
        incidents.push(Incident {
            id: next_id("quiet"),
            kind: "quiet_hours",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["quiet_hours"],
            size: format!("{rpm:.1} rpm in quiet hours, key with no night use"),
        });

        // 3. output tokens: 4 rpm of near-max-length generations for 30 min.
        let ki = *rng.pick(&prod);
        let k = &keys[ki];
        let t0 = START_MS + rng.int(8 * 24 * 60, (days - 1) * 24 * 60) * MIN;
        let t1 = t0 + 30 * MIN;
        let peak_out_pm = peak_now(k, t0) * k.median_out;
        let rpm = (5.0 * peak_out_pm / 7000.0).max(4.0);
        add(&mut rng, &mut reqs, ki, t0, t1, rpm, &known_ip(k), (6000.0, 8192.0), &ok200, k.model);
        incidents.push(Incident {
            id: next_id("output"),
            kind: "output_tokens",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["output_tokens"],
            size: format!("+{rpm:.1} rpm of 6000–8192-token outputs (~5x the key's peak output rate)"),
        });

        // 4. error burst: a client probing with bad requests, 30 rpm, 90 % 4xx, 15 min.
        let ki = *rng.pick(&all);
        let k = &keys[ki];
        let from = if rep == 0 { 1 } else { 8 };
        let t0 = START_MS + rng.int(from * 24 * 60, (days - 1) * 24 * 60) * MIN;
        let t1 = t0 + 15 * MIN;
        add(
            &mut rng,
            &mut reqs,
            ki,
            t0,
            t1,
            30.0,
            &known_ip(k),
            (10.0, 200.0),
            &|r: &mut Rng| if r.f() < 0.9 { *r.pick(&[400u16, 401, 403, 404]) } else { 200 },
            k.model,
        );
        incidents.push(Incident {
            id: next_id("errors"),
            kind: "error_rate",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["error_rate"],
            size: "+30 rpm, 90 % of them 4xx".into(),
        });

        // 6. new network: 2–4 rpm from a never-seen /24, business hours, 20 min.
        let ki = *rng.pick(&interactive_prod);
        let k = &keys[ki];
        let t0 = business_time(&mut rng, k, 8);
        let t1 = t0 + 20 * MIN;
        let rpm = rng.range(2.0, 4.0);
        let net = format!("203.0.{}", 113 + rep);
        let netc = net.clone();
        add(
            &mut rng,
            &mut reqs,
            ki,
            t0,
            t1,
            rpm,
            &move |r: &mut Rng| format!("{netc}.{}", r.int(2, 250)),
            (k.median_out * 0.5, k.median_out * 1.5),
            &ok200,
            k.model,
        );
        incidents.push(Incident {
            id: next_id("network"),
            kind: "new_network",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["new_network"],
            size: format!("{rpm:.1} rpm from {net}.0/24"),
        });

        // 7. revoked secret presented: 1–3 times a minute for 10 min.
        let ki = *rng.pick(&all);
        let k = &keys[ki];
        let from = if rep == 0 { 1 } else { 8 };
        let t0 = START_MS + rng.int(from * 24 * 60, (days - 1) * 24 * 60) * MIN;
        let t1 = t0 + 10 * MIN;
        let mut t = t0;
        while t < t1 {
            for _ in 0..rng.int(1, 4) {
                revoked.push((t + rng.int(0, MIN), k.id.clone(), format!("198.51.100.{}", rng.int(2, 250))));
            }
            t += MIN;
        }
        incidents.push(Incident {
            id: next_id("revoked"),
            kind: "revoked_presented",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["revoked_presented"],
            size: "1–3 presentations a minute".into(),
        });

        // 8. out-of-band: the upstream key used directly, 3k–20k tokens a minute for 20 min.
        let ups = ["prod-eu", "prod-us", "stg-shared"];
        let up = ups[rng.int(0, ups.len() as i64) as usize].to_string();
        let t0 = START_MS + rng.int(from * 24 * 60, (days - 1) * 24 * 60) * MIN + rng.int(1, 59) * 1000;
        let t1 = t0 + 20 * MIN;
        let mut t = t0;
        while t < t1 {
            extra_usage.push((t, up.clone(), rng.int(3_000, 20_000) as u64));
            t += MIN;
        }
        incidents.push(Incident {
            id: next_id("oob"),
            kind: "out_of_band",
            key: None,
            upstream: Some(up),
            start: t0,
            end: t1,
            detect_from: None,
            expect: vec!["out_of_band"],
            size: "3k–20k tokens a minute outside the gateway".into(),
        });
    }

    // 5. budget burn: opus-class long generations at 20 rpm until the month's budget is exceeded.
    for &ki in &[budgeted[1], budgeted[4]] {
        let k = &keys[ki];
        let t0 = START_MS + rng.int(9 * 24 * 60, (days - 2) * 24 * 60) * MIN;
        let budget = k.budget.unwrap();
        let (m0, _) = month_of(t0);
        let mut spent: f64 =
            reqs.iter().filter(|r| r.key == ki && r.ts >= m0 && r.ts < t0).map(|r| cost(&prices, r)).sum();
        let first_level = 0.5 * budget;
        let mut crossed = if spent >= first_level { Some(t0) } else { None };
        let mut t = t0;
        let mut burn: Vec<Req> = Vec::new();
        // Legit requests during the burn count towards the crossing too.
        let legit: Vec<(i64, f64)> = {
            let mut v: Vec<(i64, f64)> =
                reqs.iter().filter(|r| r.key == ki && r.ts >= t0).map(|r| (r.ts, cost(&prices, r))).collect();
            v.sort_by_key(|x| x.0);
            v
        };
        let mut li = 0;
        while spent < budget * 1.05 && t < end_ms {
            let mut minute: Vec<Req> = Vec::new();
            for _ in 0..rng.poisson(20.0) {
                minute.push(Req {
                    ts: t + rng.int(0, MIN),
                    key: ki,
                    ip: known_ip(k)(&mut rng),
                    model: "claude-opus-4-6",
                    input: rng.lognormal(20_000.0, 0.3) as u64,
                    output: rng.range(6000.0, 8192.0) as u64,
                    status: 200,
                    upstream_delay_ms: rng.int(50, 2000),
                    via_gateway: true,
                });
            }
            minute.sort_by_key(|r| r.ts);
            for r in &minute {
                while li < legit.len() && legit[li].0 <= r.ts {
                    spent += legit[li].1;
                    li += 1;
                }
                spent += cost(&prices, r);
                if crossed.is_none() && spent >= first_level {
                    crossed = Some(r.ts);
                }
            }
            burn.extend(minute);
            t += MIN;
        }
        let t1 = t;
        reqs.extend(burn);
        incidents.push(Incident {
            id: next_id("budget"),
            kind: "budget",
            key: Some(k.id.clone()),
            upstream: None,
            start: t0,
            end: t1,
            detect_from: crossed,
            expect: vec!["budget", "budget_projection"],
            size: format!("~20 rpm of opus-class long generations until 105 % of ${budget:.0}"),
        });
    }

    // ---- write the trace ----
    reqs.sort_by_key(|r| r.ts);
    revoked.sort();
    // The upstream's per-minute view: gateway requests counted at ts + delay, plus
    // out-of-band tokens.
    let mut usage: BTreeMap<(i64, String), (u64, u64)> = BTreeMap::new();
    for r in &reqs {
        if !r.via_gateway {
            continue;
        }
        let m = (r.ts + r.upstream_delay_ms).div_euclid(MIN) * MIN;
        let e = usage.entry((m, keys[r.key].upstream.clone())).or_default();
        e.0 += r.input;
        e.1 += r.output;
    }
    for (t, up, tok) in &extra_usage {
        let m = t.div_euclid(MIN) * MIN;
        let e = usage.entry((m, up.clone())).or_default();
        e.0 += tok / 3;
        e.1 += tok - tok / 3;
    }
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out.join("trace.jsonl")).unwrap());
    for k in &keys {
        let budget = k.budget.map(|b| format!(",\"budget_usd\":{b}")).unwrap_or_default();
        writeln!(w, "{{\"type\":\"key\",\"key\":\"{}\",\"service\":\"{}\",\"upstream\":\"{}\",\"env\":\"{}\",\"tz\":\"{}\"{budget}}}", k.id, k.service, k.upstream, k.env, k.tz).unwrap();
    }
    let ts = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
    let mut ui = usage.iter().peekable();
    let mut vi = revoked.iter().peekable();
    let mut line = String::new();
    for r in &reqs {
        let minute = r.ts.div_euclid(MIN) * MIN;
        while let Some(((m, up), (i, o))) = ui.peek() {
            if *m > minute {
                break;
            }
            writeln!(w, "{{\"type\":\"upstream_usage\",\"ts\":\"{}\",\"upstream\":\"{up}\",\"input_tokens\":{i},\"output_tokens\":{o}}}", ts(*m)).unwrap();
            ui.next();
        }
        while let Some((t, key, ip)) = vi.peek() {
            if *t > r.ts {
                break;
            }
            writeln!(
                w,
                "{{\"type\":\"presented_revoked\",\"ts\":\"{}\",\"key\":\"{key}\",\"source_ip\":\"{ip}\"}}",
                ts(*t)
            )
            .unwrap();
            vi.next();
        }
        let k = &keys[r.key];
        line.clear();
        write!(line, "{{\"type\":\"request\",\"ts\":\"{}\",\"key\":\"{}\",\"service\":\"{}\",\"source_ip\":\"{}\",\"model\":\"{}\",\"input_tokens\":{},\"output_tokens\":{},\"status\":{}}}", ts(r.ts), k.id, k.service, r.ip, r.model, r.input, r.output, r.status).unwrap();
        writeln!(w, "{line}").unwrap();
    }
    for ((m, up), (i, o)) in ui {
        writeln!(w, "{{\"type\":\"upstream_usage\",\"ts\":\"{}\",\"upstream\":\"{up}\",\"input_tokens\":{i},\"output_tokens\":{o}}}", ts(*m)).unwrap();
    }
    for (t, key, ip) in vi {
        writeln!(
            w,
            "{{\"type\":\"presented_revoked\",\"ts\":\"{}\",\"key\":\"{key}\",\"source_ip\":\"{ip}\"}}",
            ts(*t)
        )
        .unwrap();
    }
    w.flush().unwrap();

    // ---- ground truth ----
    let mut truth = String::from("{\n  \"seed\": ");
    write!(
        truth,
        "{seed},\n  \"start\": \"{}\",\n  \"end\": \"{}\",\n  \"keys\": {},\n  \"requests\": {},\n  \"incidents\": [\n",
        ts(START_MS),
        ts(end_ms),
        keys.len(),
        reqs.len()
    )
    .unwrap();
    incidents.sort_by_key(|i| i.start);
    for (i, inc) in incidents.iter().enumerate() {
        let subj = match (&inc.key, &inc.upstream) {
            (Some(k), _) => format!("\"key\": \"{k}\", \"upstream\": null"),
            (None, Some(u)) => format!("\"key\": null, \"upstream\": \"{u}\""),
            _ => unreachable!(),
        };
        let df = inc.detect_from.map(|t| format!("\"{}\"", ts(t))).unwrap_or_else(|| "null".into());
        let expect = inc.expect.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
        writeln!(truth, "    {{\"id\": \"{}\", \"kind\": \"{}\", {subj}, \"start\": \"{}\", \"end\": \"{}\", \"detect_from\": {df}, \"expect\": [{expect}], \"size\": \"{}\"}}{}", inc.id, inc.kind, ts(inc.start), ts(inc.end), inc.size, if i + 1 < incidents.len() { "," } else { "" }).unwrap();
    }
    truth.push_str("  ]\n}\n");
    std::fs::write(out.join("truth.json"), truth).unwrap();
    eprintln!("{} keys, {} requests, {} incidents -> {}", keys.len(), reqs.len(), incidents.len(), out.display());
}

fn month_of(ts: i64) -> (i64, i64) {
    let z = jiff::Timestamp::from_millisecond(ts).unwrap().to_zoned(jiff::tz::TimeZone::UTC);
    let first = z.date().first_of_month();
    let s = first.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond();
    let e = first
        .last_of_month()
        .tomorrow()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond();
    (s, e)
}

fn cost(prices: &PriceTable, r: &Req) -> f64 {
    let u = TokenUsage { input_tokens: r.input, output_tokens: r.output, ..Default::default() };
    prices.cost(r.model, &date_of_ms(r.ts), &u).unwrap_or(0.0)
}
