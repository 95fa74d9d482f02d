//! The monitor's settings in two stages: [`MonitorConfig`] is what the
//! `[monitor]` table of `keyward.toml` says (unknown keys are an error, so a typo
//! never silently disables a rule); [`Settings`] is the validated result with
//! durations in milliseconds, parsed hours and resolved time zones.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an alert may ask the gateway to do besides notifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Suspend the key (for out-of-band alerts: the lead decides what is suspended).
    Suspend,
}

/// `[monitor]` in `keyward.toml`. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Days of history a baseline is learned from (14–28).
    pub baseline_days: u32,
    /// A key observed for less than this uses the static thresholds (1–28).
    pub min_history_days: u32,
    /// An alert resolves when its condition has been clear this long (e.g. `"15m"`).
    pub resolve_after: String,
    /// Default business and quiet hours and time zone.
    pub hours: HoursConfig,
    /// Per-service overrides of `hours`, by service name.
    pub services: BTreeMap<String, HoursOverride>,
    pub rules: RulesConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            baseline_days: 28,
            min_history_days: 7,
            resolve_after: "15m".into(),
            hours: HoursConfig::default(),
            services: BTreeMap::new(),
            rules: RulesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursConfig {
    /// IANA time zone used when neither the key nor its service names one.
    pub tz: String,
    /// `mon` … `sun`.
    pub business_days: Vec<String>,
    /// `"HH:MM-HH:MM"`, local time, end exclusive.
    pub business_hours: String,
    /// `"HH:MM-HH:MM"`, local time, end exclusive; may wrap midnight.
    pub quiet_hours: String,
}

impl Default for HoursConfig {
    fn default() -> Self {
        HoursConfig {
            tz: "UTC".into(),
            business_days: ["mon", "tue", "wed", "thu", "fri"].iter().map(|d| d.to_string()).collect(),
            business_hours: "08:00-19:00".into(),
            quiet_hours: "00:00-05:00".into(),
        }
    }
}

/// `[monitor.services.NAME]`: any field left out comes from `[monitor.hours]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursOverride {
    pub tz: Option<String>,
    pub business_days: Option<Vec<String>>,
    pub business_hours: Option<String>,
    pub quiet_hours: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub rpm: RpmRule,
    pub quiet_hours: QuietRule,
    pub output_tokens: OutputRule,
    pub error_rate: ErrorRule,
    pub budget: BudgetRule,
    pub new_network: NetworkRule,
    pub revoked: RevokedRule,
    pub out_of_band: OutOfBandRule,
}

/// Rule 1: requests in the trailing minute above `factor` x the baseline, in business hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpmRule {
    pub enabled: bool,
    /// Multiple of the baseline: the hour's mean requests per minute, in this hour
    /// of the week (upper quartile over the baseline period) or this hour on days
    /// of the same kind (median), whichever is higher.
    pub factor: f64,
    /// And at least this multiple of the busiest trailing minute seen in that hour
    /// (same statistics): a rate the key has reached before is not an anomaly.
    pub peak_margin: f64,
    /// Never alert below this many requests per minute.
    pub min_rpm: f64,
    /// Threshold while the key has too little history.
    pub static_rpm: f64,
    pub action: Option<Action>,
}

impl Default for RpmRule {
    fn default() -> Self {
        RpmRule { enabled: true, factor: 2.0, peak_margin: 1.75, min_rpm: 20.0, static_rpm: 120.0, action: None }
    }
}

/// Rule 2: use in quiet hours by a key with no quiet-hours use in its baseline period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuietRule {
    pub enabled: bool,
    /// While the key has too little history, alert only at this many requests per minute.
    pub static_rpm: f64,
    pub action: Option<Action>,
}

impl Default for QuietRule {
    fn default() -> Self {
        QuietRule { enabled: true, static_rpm: 30.0, action: None }
    }
}

/// Rule 3: output tokens in the trailing minute above `factor` x the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputRule {
    pub enabled: bool,
    /// Multiple of the baseline mean output tokens per minute (as for `rpm`).
    pub factor: f64,
    /// And at least this multiple of the busiest trailing minute seen.
    pub peak_margin: f64,
    pub min_tokens_per_minute: f64,
    pub static_tokens_per_minute: f64,
    pub action: Option<Action>,
}

impl Default for OutputRule {
    fn default() -> Self {
        OutputRule {
            enabled: true,
            factor: 3.0,
            peak_margin: 2.5,
            min_tokens_per_minute: 20_000.0,
            static_tokens_per_minute: 200_000.0,
            action: None,
        }
    }
}

/// Rule 4: share of 4xx answers in a trailing window above a threshold, with a minimum count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRule {
    pub enabled: bool,
    /// Share of requests (0–1).
    pub rate: f64,
    /// At least this many 4xx answers in the window.
    pub min_count: u32,
    /// Trailing window, e.g. `"5m"`.
    pub window: String,
    /// With a baseline, the threshold is at least this multiple of the learned 4xx share.
    pub baseline_factor: f64,
    pub action: Option<Action>,
}

impl Default for ErrorRule {
    fn default() -> Self {
        ErrorRule { enabled: true, rate: 0.25, min_count: 20, window: "5m".into(), baseline_factor: 3.0, action: None }
    }
}

/// Rule 5: monthly budget (UTC calendar month) burn and projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetRule {
    pub enabled: bool,
    /// Fractions of the budget that raise an alert once each per month.
    pub levels: Vec<f64>,
    /// Alert when spend so far, extrapolated linearly to the month's end, exceeds the budget.
    pub projection: bool,
    /// The projection is not trusted before this much of the month has passed.
    pub projection_min_elapsed: String,
    /// Taken at levels of 1.0 and above only.
    pub action: Option<Action>,
}

impl Default for BudgetRule {
    fn default() -> Self {
        BudgetRule {
            enabled: true,
            levels: vec![0.5, 0.8, 1.0],
            projection: true,
            projection_min_elapsed: "3d".into(),
            action: None,
        }
    }
}

/// Rule 6: a key of these environments used from a network not seen in its baseline period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkRule {
    pub enabled: bool,
    pub envs: Vec<String>,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub action: Option<Action>,
}

impl Default for NetworkRule {
    fn default() -> Self {
        NetworkRule { enabled: true, envs: vec!["prod".into()], ipv4_prefix: 24, ipv6_prefix: 64, action: None }
    }
}

/// Rule 7: a revoked, suspended or rotated-out secret still being presented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevokedRule {
    pub enabled: bool,
    pub action: Option<Action>,
}

impl Default for RevokedRule {
    fn default() -> Self {
        RevokedRule { enabled: true, action: None }
    }
}

/// Rule 8: tokens the upstream reports that did not pass through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutOfBandRule {
    pub enabled: bool,
    /// Gateway tokens metered up to this many minutes before an upstream minute may
    /// explain it (the gateway stamps a request when it arrives; the upstream may
    /// count it when it finishes).
    pub skew_minutes: u32,
    /// Wait this many minutes after an upstream minute ends before judging it, so
    /// gateway tokens stamped that much later may explain it too (0 = judge at once).
    pub lookahead_minutes: u32,
    /// Unexplained tokens in one minute tolerated in absolute terms ...
    pub tolerance_tokens: u64,
    /// ... or as a share of what the upstream reported for that minute, whichever is larger.
    pub tolerance_fraction: f64,
    pub action: Option<Action>,
    /// Live gateway only: how often the Admin API usage report is polled.
    pub poll_interval: String,
    /// Live gateway only: a minute is asked for once it ended this long ago
    /// (the report fills in late; gateway usage records arrive after the response).
    pub report_delay: String,
}

impl Default for OutOfBandRule {
    fn default() -> Self {
        OutOfBandRule {
            enabled: true,
            skew_minutes: 1,
            lookahead_minutes: 0,
            tolerance_tokens: 200,
            tolerance_fraction: 0.02,
            action: None,
            poll_interval: "1m".into(),
            report_delay: "2m".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("monitor.{field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    #[error("monitor config: {0}")]
    Parse(String),
    #[error("price table: {0}")]
    Prices(String),
}

fn invalid(field: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, msg: msg.into() }
}

impl MonitorConfig {
    /// The `[monitor]` table of a whole `keyward.toml` (defaults when absent).
    /// Other tables are not looked at here; keyward-core validates them.
    pub fn from_keyward_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        match table.get("monitor") {
            None => Ok(MonitorConfig::default()),
            Some(v) => Self::from_toml_value(v.clone()),
        }
    }

    /// The `[monitor]` table as keyward-core's `RawConfig` carries it
    /// (`monitor: Option<toml::Value>`; core cannot name this type without a
    /// dependency cycle).
    pub fn from_toml_value(v: toml::Value) -> Result<Self, ConfigError> {
        v.try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))
    }

    /// Validate and compile.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        Settings::try_from(self)
    }
}

/// Local-time windows, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    pub tz: jiff::tz::TimeZone,
    /// Bit `n` set: weekday `n` (Monday = 0) is a business day.
    pub business_days: u8,
    /// Minutes of the day, `[start, end)`.
    pub business: (u16, u16),
    /// Minutes of the day, `[start, end)`, wrapping midnight when start > end.
    pub quiet: (u16, u16),
}

impl Hours {
    pub fn is_business(&self, weekday_mon0: u8, minute_of_day: u16) -> bool {
        self.business_days & (1 << weekday_mon0) != 0 && in_window(self.business, minute_of_day)
    }

    pub fn is_quiet(&self, minute_of_day: u16) -> bool {
        in_window(self.quiet, minute_of_day)
    }

    /// Which night a quiet-hours minute belongs to: the local day its quiet window
    /// started on (a window like 22:00–06:00 spans two dates).
    pub fn night_of(&self, local_day: i64, minute_of_day: u16) -> i64 {
        let (start, end) = self.quiet;
        if start > end && minute_of_day < end {
            local_day - 1
        } else {
            local_day
        }
    }
}

fn in_window((start, end): (u16, u16), m: u16) -> bool {
    if start <= end {
        m >= start && m < end
    } else {
        m >= start || m < end
    }
}

/// The validated monitor settings. Durations are in milliseconds.
#[derive(Debug, Clone)]
pub struct Settings {
    pub baseline_ms: i64,
    pub min_history_ms: i64,
    pub resolve_after_ms: i64,
    pub error_window_ms: i64,
    pub projection_min_elapsed_ms: i64,
    /// `rules.out_of_band.poll_interval` and `report_delay` (live gateway only).
    pub oob_poll_ms: i64,
    pub oob_report_delay_ms: i64,
    pub hours: Hours,
    pub services: BTreeMap<String, Hours>,
    /// Shared: the engine takes a reference for every request it judges.
    pub rules: std::sync::Arc<RulesConfig>,
}

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;

fn duration_ms(field: &'static str, s: &str) -> Result<i64, ConfigError> {
    let d = humantime::parse_duration(s).map_err(|e| invalid(field, format!("{s:?}: {e}")))?;
    i64::try_from(d.as_millis()).map_err(|_| invalid(field, "too large"))
}

fn parse_hhmm(field: &'static str, s: &str) -> Result<u16, ConfigError> {
    let bad = || invalid(field, format!("{s:?} is not HH:MM"));
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_range(field: &'static str, s: &str) -> Result<(u16, u16), ConfigError> {
    let (a, b) = s.split_once('-').ok_or_else(|| invalid(field, format!("{s:?} is not HH:MM-HH:MM")))?;
    Ok((parse_hhmm(field, a)?, parse_hhmm(field, b)?))
}

fn parse_days(field: &'static str, days: &[String]) -> Result<u8, ConfigError> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut bits = 0u8;
    for d in days {
        let lower = d.to_ascii_lowercase();
        let i = NAMES
            .iter()
            .position(|n| lower.starts_with(n))
            .ok_or_else(|| invalid(field, format!("{d:?} is not a weekday (mon … sun)")))?;
        bits |= 1 << i;
    }
    Ok(bits)
}

/// An IANA time zone from the bundled database.
pub fn parse_tz(name: &str) -> Option<jiff::tz::TimeZone> {
    if name.eq_ignore_ascii_case("utc") {
        return Some(jiff::tz::TimeZone::UTC);
    }
    jiff::tz::TimeZone::get(name).ok()
}

fn compile_hours(base: &HoursConfig, o: &HoursOverride) -> Result<Hours, ConfigError> {
    let tz_name = o.tz.as_deref().unwrap_or(&base.tz);
    let tz = parse_tz(tz_name).ok_or_else(|| invalid("hours.tz", format!("unknown time zone {tz_name:?}")))?;
    Ok(Hours {
        tz,
        business_days: parse_days("hours.business_days", o.business_days.as_deref().unwrap_or(&base.business_days))?,
        business: parse_range("hours.business_hours", o.business_hours.as_deref().unwrap_or(&base.business_hours))?,
        quiet: parse_range("hours.quiet_hours", o.quiet_hours.as_deref().unwrap_or(&base.quiet_hours))?,
    })
}

fn positive(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, "must be a positive number"))
    }
}

impl TryFrom<&MonitorConfig> for Settings {
    type Error = ConfigError;

    fn try_from(c: &MonitorConfig) -> Result<Self, ConfigError> {
        if !(14..=28).contains(&c.baseline_days) {
            return Err(invalid("baseline_days", "must be 14–28"));
        }
        if !(1..=28).contains(&c.min_history_days) {
            return Err(invalid("min_history_days", "must be 1–28"));
        }
        let r = &c.rules;
        positive("rules.rpm.factor", r.rpm.factor)?;
        positive("rules.rpm.min_rpm", r.rpm.min_rpm)?;
        positive("rules.rpm.peak_margin", r.rpm.peak_margin)?;
        positive("rules.output_tokens.peak_margin", r.output_tokens.peak_margin)?;
        positive("rules.rpm.static_rpm", r.rpm.static_rpm)?;
        positive("rules.quiet_hours.static_rpm", r.quiet_hours.static_rpm)?;
        positive("rules.output_tokens.factor", r.output_tokens.factor)?;
        positive("rules.output_tokens.min_tokens_per_minute", r.output_tokens.min_tokens_per_minute)?;
        positive("rules.output_tokens.static_tokens_per_minute", r.output_tokens.static_tokens_per_minute)?;
        if !(r.error_rate.rate > 0.0 && r.error_rate.rate <= 1.0) {
            return Err(invalid("rules.error_rate.rate", "must be in (0, 1]"));
        }
        if r.error_rate.min_count == 0 {
            return Err(invalid("rules.error_rate.min_count", "must be at least 1"));
        }
        positive("rules.error_rate.baseline_factor", r.error_rate.baseline_factor)?;
        for l in &r.budget.levels {
            positive("rules.budget.levels", *l)?;
        }
        if r.budget.levels.len() > 16 {
            return Err(invalid("rules.budget.levels", "at most 16 levels"));
        }
        if r.new_network.ipv4_prefix > 32 || r.new_network.ipv6_prefix > 128 {
            return Err(invalid("rules.new_network", "prefix too long"));
        }
        if r.out_of_band.skew_minutes > 10 || r.out_of_band.lookahead_minutes > 10 {
            return Err(invalid("rules.out_of_band", "skew and lookahead are at most 10 minutes"));
        }
        if !(0.0..1.0).contains(&r.out_of_band.tolerance_fraction) {
            return Err(invalid("rules.out_of_band.tolerance_fraction", "must be in [0, 1)"));
        }
        let resolve_after_ms = duration_ms("resolve_after", &c.resolve_after)?;
        if resolve_after_ms < MINUTE_MS {
            return Err(invalid("resolve_after", "must be at least 1m"));
        }
        let error_window_ms = duration_ms("rules.error_rate.window", &r.error_rate.window)?;
        if !(MINUTE_MS..=HOUR_MS).contains(&error_window_ms) {
            return Err(invalid("rules.error_rate.window", "must be 1m–1h"));
        }
        let projection_min_elapsed_ms =
            duration_ms("rules.budget.projection_min_elapsed", &r.budget.projection_min_elapsed)?;
        let oob_poll_ms = duration_ms("rules.out_of_band.poll_interval", &r.out_of_band.poll_interval)?;
        if !(1_000..=HOUR_MS).contains(&oob_poll_ms) {
            return Err(invalid("rules.out_of_band.poll_interval", "must be 1s–1h"));
        }
        let oob_report_delay_ms = duration_ms("rules.out_of_band.report_delay", &r.out_of_band.report_delay)?;
        if !(0..=HOUR_MS).contains(&oob_report_delay_ms) {
            return Err(invalid("rules.out_of_band.report_delay", "must be at most 1h"));
        }
        let hours = compile_hours(&c.hours, &HoursOverride::default())?;
        let mut services = BTreeMap::new();
        for (name, o) in &c.services {
            services.insert(name.clone(), compile_hours(&c.hours, o)?);
        }
        Ok(Settings {
            baseline_ms: i64::from(c.baseline_days) * DAY_MS,
            min_history_ms: i64::from(c.min_history_days) * DAY_MS,
            resolve_after_ms,
            error_window_ms,
            projection_min_elapsed_ms,
            oob_poll_ms,
            oob_report_delay_ms,
            hours,
            services,
            rules: std::sync::Arc::new(c.rules.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = MonitorConfig::default().settings().unwrap();
        assert_eq!(s.baseline_ms, 28 * DAY_MS);
        assert!(s.hours.is_business(0, 8 * 60));
        assert!(!s.hours.is_business(0, 19 * 60));
        assert!(!s.hours.is_business(5, 10 * 60));
        assert!(s.hours.is_quiet(0));
        assert!(!s.hours.is_quiet(5 * 60));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(MonitorConfig::from_keyward_toml("[monitor]\nbaseline_dayz = 20\n").is_err());
        assert!(MonitorConfig::from_keyward_toml("[monitor.rules.rpm]\nfactr = 2.0\n").is_err());
        let c = MonitorConfig::from_keyward_toml("[monitor]\nbaseline_days = 10\n").unwrap();
        assert!(c.settings().is_err());
        let c = MonitorConfig::from_keyward_toml("[monitor.hours]\ntz = \"Mars/Olympus\"\n").unwrap();
        assert!(c.settings().is_err());
        let c = MonitorConfig::from_keyward_toml("[monitor.hours]\nquiet_hours = \"25:00-05:00\"\n").unwrap();
        assert!(c.settings().is_err());
    }

    #[test]
    fn reads_only_the_monitor_table() {
        let text = r#"
[server]
listen = "127.0.0.1:0"
[monitor]
baseline_days = 14
[monitor.rules.rpm]
factor = 3.0
action = "suspend"
[monitor.services.billing]
tz = "Europe/Berlin"
quiet_hours = "22:00-06:00"
"#;
        let c = MonitorConfig::from_keyward_toml(text).unwrap();
        assert_eq!(c.baseline_days, 14);
        assert_eq!(c.rules.rpm.action, Some(Action::Suspend));
        let s = c.settings().unwrap();
        let b = &s.services["billing"];
        assert!(b.is_quiet(23 * 60) && b.is_quiet(60) && !b.is_quiet(12 * 60));
        assert_eq!(MonitorConfig::from_keyward_toml("").unwrap(), MonitorConfig::default());
    }
}
