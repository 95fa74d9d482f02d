//! Per-key policy: limits, budget, allowed models and networks, and the
//! environment defaults that fill what a key leaves unset.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What a key may do. `None` means "use the environment default"; an
/// environment default of `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Per calendar month (UTC), in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Model globs (`claude-sonnet-*`); empty or absent = any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Client networks (`10.0.0.0/8`, `2001:db8::/32`); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_cidr: Option<Vec<String>>,
    /// Prompt-injection screening of untrusted request parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shield: Option<ShieldMode>,
    /// Score (0..1) at or above which a request is flagged or blocked;
    /// absent: the threshold shipped with the classifier's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shield_threshold: Option<f32>,
    /// When the classifier's deep stage runs (absent: off, the fast stage alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shield_deep: Option<DeepStage>,
    /// The system prompt the gateway sets for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_system: Option<String>,
    /// With a pinned system prompt: what happens to a client-supplied `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_system: Option<ClientSystem>,
    /// Append the standard instruction to ignore instructions found in user
    /// content, documents and tool results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_instruction: Option<bool>,
    /// Wrap untrusted parts in delimiters with a random per-request marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotlight: Option<bool>,
    /// Tools (name globs) the model may call in responses; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tools: Option<Vec<String>>,
    /// What a disallowed tool call does to the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_policy: Option<ToolPolicy>,
    /// Argument rules, `TOOL:ARG:KIND=V1,V2` (see [`ToolRule`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_rules: Option<Vec<String>>,
}

/// What the injection shield does with a request whose score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShieldMode {
    Off,
    /// Forward it, mark the response (`x-keyward-shield`), the metrics and the usage record.
    Flag,
    /// Refuse it (400 `invalid_request_error`).
    Block,
}

impl std::str::FromStr for ShieldMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ShieldMode::Off),
            "flag" => Ok(ShieldMode::Flag),
            "block" => Ok(ShieldMode::Block),
            _ => Err(format!("shield mode {s:?}: use off, flag or block")),
        }
    }
}

/// When the shield's deep stage scores a screened part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeepStage {
    /// The fast stage alone.
    Off,
    /// Both stages on every screened part.
    On,
    /// The deep stage only where the fast stage is uncertain.
    Uncertain,
}

impl std::str::FromStr for DeepStage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(DeepStage::Off),
            "on" => Ok(DeepStage::On),
            "uncertain" => Ok(DeepStage::Uncertain),
            _ => Err(format!("deep stage {s:?}: use off, on or uncertain")),
        }
    }
}

/// A client-supplied `system` for a key with a pinned system prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSystem {
    /// 400 `invalid_request_error`.
    Refuse,
    /// Appended below the pinned prompt, marked as untrusted.
    Append,
}

/// What a tool call outside the allowlist (or failing a rule) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolPolicy {
    /// The response becomes an error (403 `permission_error`; an SSE `error` event on streams).
    Block,
    /// The response passes, marked in the metrics, the usage record and (non-streaming) a header.
    Flag,
}

/// What an argument rule accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// The argument is a URL (or a bare host name); its host must match one of the patterns.
    Hosts,
    /// The argument is an e-mail address (or several: an array, or separated by `,`/`;`);
    /// the domain of each must match one of the patterns.
    Domains,
    /// The argument (a string, number or boolean) must match one of the patterns.
    Values,
}

/// One argument rule: `TOOL:ARG:KIND=PATTERN,PATTERN,...`.
///
/// `ARG` is a field of the tool's `input` (a dotted path for nested objects;
/// an array there means every element must pass). Patterns are
/// case-insensitive; for hosts and domains `*.example.com` matches the
/// subdomains of `example.com`, and `*` alone matches anything; for values,
/// `*` matches any run of characters. An argument that is absent passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    pub tool: String,
    pub arg: String,
    pub kind: RuleKind,
    pub patterns: Vec<String>,
}

impl std::str::FromStr for ToolRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("tool rule {s:?}: {why} (expected TOOL:ARG:hosts|domains|values=A,B)");
        let (head, list) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let mut it = head.splitn(3, ':');
        let (Some(tool), Some(arg), Some(kind)) = (it.next(), it.next(), it.next()) else {
            return Err(bad("missing part"));
        };
        let (tool, arg) = (tool.trim(), arg.trim());
        if tool.is_empty() || arg.is_empty() || arg.split('.').any(str::is_empty) {
            return Err(bad("empty tool or argument name"));
        }
        let kind = match kind.trim() {
            "hosts" => RuleKind::Hosts,
            "domains" => RuleKind::Domains,
            "values" => RuleKind::Values,
            _ => return Err(bad("unknown kind")),
        };
        let patterns: Vec<String> =
            list.split(',').map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty()).collect();
        if patterns.is_empty() {
            return Err(bad("no patterns"));
        }
        Ok(ToolRule { tool: tool.to_string(), arg: arg.to_string(), kind, patterns })
    }
}

/// `*.example.com` matches subdomains of example.com, `*` anything, else exact (case-insensitive).
pub fn host_match(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(base) => host.strip_suffix(base).is_some_and(|pre| pre.len() > 1 && pre.ends_with('.')),
        None => host == pattern,
    }
}

impl KeyPolicy {
    /// Fill unset fields from `defaults`.
    pub fn or(&self, defaults: &KeyPolicy) -> KeyPolicy {
        KeyPolicy {
            rpm: self.rpm.or(defaults.rpm),
            tpm: self.tpm.or(defaults.tpm),
            max_concurrent: self.max_concurrent.or(defaults.max_concurrent),
            budget_usd: self.budget_usd.or(defaults.budget_usd),
            models: self.models.clone().or_else(|| defaults.models.clone()),
            allow_cidr: self.allow_cidr.clone().or_else(|| defaults.allow_cidr.clone()),
            shield: self.shield.or(defaults.shield),
            shield_threshold: self.shield_threshold.or(defaults.shield_threshold),
            shield_deep: self.shield_deep.or(defaults.shield_deep),
            pin_system: self.pin_system.clone().or_else(|| defaults.pin_system.clone()),
            client_system: self.client_system.or(defaults.client_system),
            guard_instruction: self.guard_instruction.or(defaults.guard_instruction),
            spotlight: self.spotlight.or(defaults.spotlight),
            allow_tools: self.allow_tools.clone().or_else(|| defaults.allow_tools.clone()),
            tool_policy: self.tool_policy.or(defaults.tool_policy),
            tool_rules: self.tool_rules.clone().or_else(|| defaults.tool_rules.clone()),
        }
    }

    /// Check values; returns the parsed networks.
    pub fn validate(&self) -> Result<Vec<Cidr>, String> {
        if self.rpm == Some(0) || self.tpm == Some(0) || self.max_concurrent == Some(0) {
            return Err("limits must be positive (use \"none\" to remove a limit)".into());
        }
        if let Some(b) = self.budget_usd {
            if !b.is_finite() || b < 0.0 {
                return Err("budget must be a non-negative amount".into());
            }
        }
        if let Some(models) = &self.models {
            if models.iter().any(|m| m.trim().is_empty()) {
                return Err("empty model pattern".into());
            }
        }
        if let Some(t) = self.shield_threshold {
            if !(t > 0.0 && t < 1.0) {
                return Err("shield threshold must be between 0 and 1 (exclusive)".into());
            }
        }
        if self.pin_system.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return Err("the pinned system prompt is empty".into());
        }
        if self.allow_tools.iter().flatten().any(|t| t.trim().is_empty()) {
            return Err("empty tool name".into());
        }
        self.parsed_tool_rules()?;
        self.allow_cidr.iter().flatten().map(|c| c.parse::<Cidr>()).collect()
    }

    /// The argument rules, parsed.
    pub fn parsed_tool_rules(&self) -> Result<Vec<ToolRule>, String> {
        self.tool_rules.iter().flatten().map(|r| r.parse()).collect()
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a network like 10.0.0.0/8 or 2001:db8::/32");
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        assert!(glob_match("claude-sonnet-*", "claude-sonnet-4-6"));
        assert!(glob_match("*haiku*", "claude-haiku-4-5-20251001"));
        assert!(glob_match("claude-opus-4-7", "claude-opus-4-7"));
        assert!(!glob_match("claude-opus-4-7", "claude-opus-4-70"));
        assert!(!glob_match("claude-sonnet-*", "claude-opus-4-7"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn networks() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped v6 addresses match v4 networks");
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c.contains("10.1.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_fill_gaps_only() {
        let key = KeyPolicy { rpm: Some(5), ..Default::default() };
        let env = KeyPolicy { rpm: Some(100), tpm: Some(1000), ..Default::default() };
        let eff = key.or(&env);
        assert_eq!((eff.rpm, eff.tpm), (Some(5), Some(1000)));
        assert!(KeyPolicy { rpm: Some(0), ..Default::default() }.validate().is_err());
        assert!(KeyPolicy { allow_cidr: Some(vec!["x".into()]), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn shield_settings_fill_and_validate() {
        let key = KeyPolicy { shield: Some(ShieldMode::Block), ..Default::default() };
        let env = KeyPolicy { shield: Some(ShieldMode::Flag), spotlight: Some(true), ..Default::default() };
        let eff = key.or(&env);
        assert_eq!((eff.shield, eff.spotlight), (Some(ShieldMode::Block), Some(true)));
        assert!(KeyPolicy { shield_threshold: Some(1.0), ..Default::default() }.validate().is_err());
        assert!(KeyPolicy { shield_threshold: Some(0.5), ..Default::default() }.validate().is_ok());
        assert!(KeyPolicy { pin_system: Some("  ".into()), ..Default::default() }.validate().is_err());
        let rules = KeyPolicy { tool_rules: Some(vec!["fetch_url:url:hostz=a".into()]), ..Default::default() };
        assert!(rules.validate().is_err());
        // stored policies from before these fields still read, and new fields round-trip
        let old: KeyPolicy = serde_json::from_str(r#"{"rpm":5}"#).unwrap();
        assert_eq!(old.shield, None);
        let p = KeyPolicy { shield: Some(ShieldMode::Flag), tool_policy: Some(ToolPolicy::Flag), ..Default::default() };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"{"shield":"flag","tool_policy":"flag"}"#);
        assert_eq!(serde_json::from_str::<KeyPolicy>(&text).unwrap(), p);
    }

    #[test]
    fn tool_rule_syntax() {
        let r: ToolRule = "fetch_url:url:hosts=example.com, *.Corp.Example".parse().unwrap();
        assert_eq!(r.tool, "fetch_url");
        assert_eq!(r.arg, "url");
        assert_eq!(r.kind, RuleKind::Hosts);
        assert_eq!(r.patterns, vec!["example.com", "*.corp.example"]);
        let r: ToolRule = "send_email:message.to:domains=corp.example".parse().unwrap();
        assert_eq!((r.arg.as_str(), r.kind), ("message.to", RuleKind::Domains));
        for bad in [
            "fetch_url:url",
            "fetch_url:url:hosts=",
            "fetch_url::hosts=a",
            ":u:hosts=a",
            "t:u:regex=a",
            "t:a..b:values=x",
        ] {
            assert!(bad.parse::<ToolRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        assert!(host_match("example.com", "EXAMPLE.com"));
        assert!(host_match("example.com", "example.com."));
        assert!(!host_match("example.com", "www.example.com"));
        assert!(host_match("*.corp.example", "a.b.corp.example"));
        assert!(!host_match("*.corp.example", "corp.example"));
        assert!(!host_match("*.corp.example", "evilcorp.example"));
        assert!(host_match("*", "anything"));
    }

    proptest! {
        #[test]
        fn star_matches_everything(s in "\\PC{0,40}") {
            prop_assert!(glob_match("*", &s));
            prop_assert!(glob_match(&s.replace('*', ""), &s.replace('*', "")));
        }
    }
}
