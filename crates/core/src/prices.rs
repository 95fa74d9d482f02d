//! The dated price table and the cost of a response.

use crate::usage::TokenUsage;
use serde::{Deserialize, Serialize};

/// The table shipped with keyward (`prices.toml` beside this file).
pub const DEFAULT_PRICES_TOML: &str = include_str!("prices.toml");

/// One row: USD per million tokens for a model pattern from a date on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    /// Exact model id, or a prefix ending in `*`.
    pub model: String,
    /// `YYYY-MM-DD` (UTC) from which the row applies.
    pub effective: String,
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// Prompts (input + cache tokens) above this many tokens use the
    /// `long_context_*` rates for input and output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context_threshold: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context_input: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context_output: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("price row for {model:?}: effective date {date:?} is not YYYY-MM-DD")]
    Date { model: String, date: String },
    #[error("price row for {0:?}: prices must be finite and non-negative")]
    Value(String),
    #[error("price row with an empty model pattern")]
    EmptyModel,
    #[error("price table: {0}")]
    Parse(String),
}

#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    rows: Vec<PriceRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    prices: Vec<PriceRow>,
}

fn valid_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl PriceTable {
    pub fn builtin() -> Result<Self, PriceError> {
        let f: PriceFile = toml::from_str(DEFAULT_PRICES_TOML).map_err(|e| PriceError::Parse(e.to_string()))?;
        Self::new(f.prices)
    }

    pub fn new(rows: Vec<PriceRow>) -> Result<Self, PriceError> {
        for r in &rows {
            if r.model.is_empty() {
                return Err(PriceError::EmptyModel);
            }
            if !valid_date(&r.effective) {
                return Err(PriceError::Date { model: r.model.clone(), date: r.effective.clone() });
            }
            let vals = [r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read]
                .into_iter()
                .chain(r.long_context_input)
                .chain(r.long_context_output);
            if vals.into_iter().any(|v| !v.is_finite() || v < 0.0) {
                return Err(PriceError::Value(r.model.clone()));
            }
        }
        Ok(PriceTable { rows })
    }

    /// Builtin rows first, then `overrides`; a later row with the same model and
    /// date replaces the earlier one.
    pub fn with_overrides(mut self, overrides: Vec<PriceRow>) -> Result<Self, PriceError> {
        let extra = PriceTable::new(overrides)?;
        for row in extra.rows {
            self.rows.retain(|r| !(r.model == row.model && r.effective == row.effective));
            self.rows.push(row);
        }
        Ok(self)
    }

    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    /// The row that applies to `model` on `date` (`YYYY-MM-DD`).
    pub fn lookup(&self, model: &str, date: &str) -> Option<&PriceRow> {
        let mut best: Option<(&PriceRow, usize)> = None;
        for r in &self.rows {
            let specificity = match r.model.strip_suffix('*') {
                Some(prefix) if model.starts_with(prefix) => prefix.len(),
                None if r.model == model => usize::MAX,
                _ => continue,
            };
            if r.effective.as_str() > date {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, s)) => specificity > s || (specificity == s && r.effective > b.effective),
            };
            if better {
                best = Some((r, specificity));
            }
        }
        best.map(|(r, _)| r)
    }

    /// Cost in USD, or `None` when the model has no price (unknown, not zero).
    pub fn cost(&self, model: &str, date: &str, u: &TokenUsage) -> Option<f64> {
        let r = self.lookup(model, date)?;
        let prompt =
            u.input_tokens.saturating_add(u.cache_creation_input_tokens).saturating_add(u.cache_read_input_tokens);
        let long = r.long_context_threshold.is_some_and(|t| prompt > t);
        let input_rate = if long { r.long_context_input.unwrap_or(r.input) } else { r.input };
        let output_rate = if long { r.long_context_output.unwrap_or(r.output) } else { r.output };
        let write_1h = u.cache_creation_1h.unwrap_or(0).min(u.cache_creation_input_tokens);
        let write_5m = u.cache_creation_input_tokens - write_1h;
        let micro = u.input_tokens as f64 * input_rate
            + u.output_tokens as f64 * output_rate
            + write_5m as f64 * r.cache_write_5m
            + write_1h as f64 * r.cache_write_1h
            + u.cache_read_input_tokens as f64 * r.cache_read;
        Some(micro / 1_000_000.0)
    }
}

/// `YYYY-MM-DD` of a Unix time in milliseconds (UTC).
pub fn date_of_ms(ts_ms: i64) -> String {
    Day::of_ms(ts_ms).as_str().to_string()
}

/// A UTC calendar day as `YYYY-MM-DD`, held on the stack: the request path
/// prices a record and checks a budget without formatting or allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day([u8; 10]);

impl Day {
    /// The day of a Unix time in milliseconds (times before 1970 count as 1970-01-01;
    /// years past 9999 as 9999).
    pub fn of_ms(ts_ms: i64) -> Day {
        let (y, m, d) = match civil_from_days(ts_ms.max(0).div_euclid(86_400_000)) {
            (y, ..) if y > 9999 => (9999, 12, 31),
            (y, m, d) => (y as u16, m as u8, d as u8),
        };
        let digit = |v: u16| b'0' + (v % 10) as u8;
        Day([
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            b'-',
            b'0' + m / 10,
            b'0' + m % 10,
            b'-',
            b'0' + d / 10,
            b'0' + d % 10,
        ])
    }

    pub fn as_str(&self) -> &str {
        // ASCII digits and dashes only
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01")
    }

    /// `YYYY-MM`: the budget period.
    pub fn month(&self) -> &str {
        &self.as_str()[..7]
    }
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds of 00:00 UTC on the first day of the month of `ts_ms`.
pub fn month_start_ms(ts_ms: i64) -> i64 {
    let d = date_of_ms(ts_ms);
    let y: i64 = d[..4].parse().unwrap_or(1970);
    let m: i64 = d[5..7].parse().unwrap_or(1);
    days_from_civil(y, m, 1) * 86_400_000
}

/// `YYYY-MM` of a Unix time in milliseconds (UTC): the budget period.
pub fn month_of_ms(ts_ms: i64) -> String {
    Day::of_ms(ts_ms).month().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_formatted_without_allocating() {
        for (ms, day) in [
            (0, "1970-01-01"),
            (-5, "1970-01-01"),
            (951_782_400_000, "2000-02-29"),
            (1_764_201_599_999, "2025-11-26"),
            (1_764_201_600_000, "2025-11-27"),
            (253_402_300_799_000, "9999-12-31"),
            (i64::MAX, "9999-12-31"),
        ] {
            assert_eq!(Day::of_ms(ms).as_str(), day, "{ms}");
            assert_eq!(date_of_ms(ms), day);
            assert_eq!(Day::of_ms(ms).month(), &day[..7]);
            assert_eq!(month_of_ms(ms), &day[..7]);
        }
        // every day of four years, against the formatted civil date
        for n in 0..(4 * 366_i64) {
            let ms = 1_700_000_000_000 + n * 86_400_000;
            let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
            assert_eq!(Day::of_ms(ms).as_str(), format!("{y:04}-{m:02}-{d:02}"));
        }
    }

    fn usage(i: u64, o: u64) -> TokenUsage {
        TokenUsage { input_tokens: i, output_tokens: o, ..Default::default() }
    }

    #[test]
    fn builtin_table_loads_and_prices_known_models() {
        let t = PriceTable::builtin().unwrap();
        let c = t.cost("claude-sonnet-4-6", "2026-11-27", &usage(1_000_000, 1_000_000)).unwrap();
        assert!((c - 18.0).abs() < 1e-9);
        let c = t.cost("claude-haiku-4-5-20251001", "2026-11-27", &usage(1_000_000, 0)).unwrap();
        assert!((c - 1.0).abs() < 1e-9);
        assert!(t.cost("gpt-4o", "2026-11-27", &usage(10, 10)).is_none());
    }

    #[test]
    fn dated_rows_apply_from_their_date() {
        let t = PriceTable::builtin().unwrap();
        let u = TokenUsage { cache_read_input_tokens: 1_000_000, ..Default::default() };
        let before = t.cost("claude-sonnet-5-5", "2026-10-06", &u).unwrap();
        let after = t.cost("claude-sonnet-5-5", "2026-10-07", &u).unwrap();
        assert!((before - 0.20).abs() < 1e-9);
        assert!((after - 0.10).abs() < 1e-9);
        // before its own rows apply, the broader family row prices it
        assert_eq!(t.lookup("claude-sonnet-5-5", "2026-01-01").unwrap().model, "claude-sonnet-5*");
        // and before any row applies there is no price at all
        assert!(t.cost("claude-sonnet-5-5", "2025-06-01", &u).is_none());
    }

    #[test]
    fn most_specific_pattern_wins() {
        let t = PriceTable::builtin().unwrap();
        // "claude-sonnet-5-5*" is more specific than "claude-sonnet-5*"
        assert_eq!(t.lookup("claude-sonnet-5-5", "2026-08-01").unwrap().model, "claude-sonnet-5-5*");
        assert_eq!(t.lookup("claude-sonnet-5", "2026-08-01").unwrap().model, "claude-sonnet-5*");
    }

    #[test]
    fn cache_writes_split_by_ttl_and_long_context_tier() {
        let t = PriceTable::builtin().unwrap();
        let u = TokenUsage {
            cache_creation_input_tokens: 2_000_000,
            cache_creation_1h: Some(1_000_000),
            ..Default::default()
        };
        let c = t.cost("claude-sonnet-4-6", "2026-11-27", &u).unwrap();
        assert!((c - (3.75 + 6.0)).abs() < 1e-9);
        let long = t.cost("claude-haiku-5-5", "2026-11-27", &usage(200_000, 0)).unwrap();
        assert!((long - 0.1).abs() < 1e-9);
    }

    #[test]
    fn bad_rows_are_rejected() {
        let row = PriceRow {
            model: "m".into(),
            effective: "2026-13".into(),
            input: 1.0,
            output: 1.0,
            cache_write_5m: 1.0,
            cache_write_1h: 1.0,
            cache_read: 1.0,
            long_context_threshold: None,
            long_context_input: None,
            long_context_output: None,
        };
        assert!(PriceTable::new(vec![row.clone()]).is_err());
        let neg = PriceRow { effective: "2026-01-01".into(), input: -1.0, ..row };
        assert!(PriceTable::new(vec![neg]).is_err());
    }

    #[test]
    fn month_starts() {
        assert_eq!(month_start_ms(0), 0);
        let ts = 1_795_000_000_000; // 2026-11-18
        assert_eq!(date_of_ms(month_start_ms(ts)), "2026-11-01");
        assert_eq!(date_of_ms(month_start_ms(ts) - 1), "2026-10-31");
        assert_eq!(month_of_ms(ts), "2026-11");
        let march = days_from_civil(2024, 3, 1) * 86_400_000;
        assert_eq!(date_of_ms(march - 1), "2024-02-29");
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in (-1000..30_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        // agrees with humantime's RFC 3339 formatting
        for ms in [0i64, 951_782_400_000, 1_795_000_000_000, 4_102_444_799_000] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            assert_eq!(date_of_ms(ms), humantime::format_rfc3339_seconds(t).to_string()[..10]);
        }
    }

    #[test]
    fn dates_from_millis() {
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(date_of_ms(1_795_000_000_000), "2026-11-18");
    }
}
