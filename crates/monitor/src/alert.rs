//! Alerts, their dedup identity, and their lifecycle (raised once, resolved once).

use crate::config::Action;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The rules. Their `snake_case` names are what alerts, configs and traces use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1. RPM above k x baseline in business hours.
    Rpm,
    /// 2. Use in quiet hours by a key that historically has none.
    QuietHours,
    /// 3. Output tokens per minute above k x baseline.
    OutputTokens,
    /// 4. 4xx share above a threshold with a minimum count.
    ErrorRate,
    /// 5a. A level (share) of the monthly budget reached.
    Budget,
    /// 5b. Spend so far projects past the monthly budget.
    BudgetProjection,
    /// 6. A production key used from a network not seen in its baseline period.
    NewNetwork,
    /// 7. A revoked, suspended or rotated-out secret presented.
    RevokedPresented,
    /// 8. Upstream tokens that did not pass through the gateway.
    OutOfBand,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::Rpm,
        Rule::QuietHours,
        Rule::OutputTokens,
        Rule::ErrorRate,
        Rule::Budget,
        Rule::BudgetProjection,
        Rule::NewNetwork,
        Rule::RevokedPresented,
        Rule::OutOfBand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Rpm => "rpm",
            Rule::QuietHours => "quiet_hours",
            Rule::OutputTokens => "output_tokens",
            Rule::ErrorRate => "error_rate",
            Rule::Budget => "budget",
            Rule::BudgetProjection => "budget_projection",
            Rule::NewNetwork => "new_network",
            Rule::RevokedPresented => "revoked_presented",
            Rule::OutOfBand => "out_of_band",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about: a virtual key, or an upstream key (out-of-band rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Key(String),
    Upstream(String),
}

/// Identity for deduplication: one open alert per subject, rule and (for budget
/// levels) level index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupKey {
    pub subject: Subject,
    pub rule: Rule,
    pub part: u8,
}

impl DedupKey {
    /// A stable string, e.g. for PagerDuty's `dedup_key`: `keyward:rpm:key:key_abc`.
    pub fn stable_id(&self) -> String {
        let (kind, name) = match &self.subject {
            Subject::Key(k) => ("key", k.as_str()),
            Subject::Upstream(u) => ("upstream", u.as_str()),
        };
        if self.part == 0 {
            format!("keyward:{}:{kind}:{name}", self.rule)
        } else {
            format!("keyward:{}:{kind}:{name}:{}", self.rule, self.part)
        }
    }
}

/// A raised alert. Carries ids, numbers and a summary — never a secret, never a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Sequence number within this engine.
    pub id: u64,
    pub rule: Rule,
    pub key: Option<String>,
    pub upstream: Option<String>,
    /// When the detector raised it (Unix ms).
    pub at_ms: i64,
    pub severity: Severity,
    /// `Some(Suspend)` when the rule is configured with `action = "suspend"`.
    pub action: Option<Action>,
    /// The measured value and the threshold it crossed (units depend on the rule).
    pub value: f64,
    pub threshold: f64,
    /// One line for humans.
    pub summary: String,
    /// Stable dedup identity (see [`DedupKey::stable_id`]).
    pub dedup_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AlertEvent {
    Raised(Alert),
    Resolved { id: u64, rule: Rule, key: Option<String>, upstream: Option<String>, dedup_key: String, at_ms: i64 },
}

/// How an open alert ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// When the condition has not been seen for `resolve_after`.
    WhenClear,
    /// Only when the rule says so (budget: at the month's end or when the projection falls).
    Explicit,
}

#[derive(Debug, Clone)]
pub(crate) struct Open {
    pub alert: Alert,
    pub last_true_ms: i64,
    pub resolve: Resolve,
}
