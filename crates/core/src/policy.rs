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
        self.allow_cidr.iter().flatten().map(|c| c.parse::<Cidr>()).collect()
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

    proptest! {
        #[test]
        fn star_matches_everything(s in "\\PC{0,40}") {
            prop_assert!(glob_match("*", &s));
            prop_assert!(glob_match(&s.replace('*', ""), &s.replace('*', "")));
        }
    }
}
