//! Prometheus text exposition of the gateway's counters. Labels are bounded:
//! key id and service name (never a key), status class.

use crate::index::KeyIndex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    refused_auth: AtomicU64,
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

    pub fn refused_auth(&self) {
        self.refused_auth.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self, key: &crate::index::KeyEntry, _model: Option<&str>, status: u16) {
        let slot = match status {
            200..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        key.responses[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, keys: &KeyIndex, usage_dropped: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP keyward_requests_total Requests answered, by virtual key and status class.\n");
        out.push_str("# TYPE keyward_requests_total counter\n");
        let mut all = keys.all();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        for k in &all {
            for (i, class) in ["2xx", "4xx", "5xx"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "keyward_requests_total{{key_id=\"{}\",service=\"{}\",env=\"{}\",status_class=\"{}\"}} {}",
                    k.id,
                    escape(&k.service_name),
                    k.env,
                    class,
                    k.responses[i].load(Ordering::Relaxed)
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
        out.push_str("# HELP keyward_refused_total Requests refused before forwarding, by reason.\n");
        out.push_str("# TYPE keyward_refused_total counter\n");
        let _ = writeln!(out, "keyward_refused_total{{reason=\"auth\"}} {}", self.refused_auth.load(Ordering::Relaxed));
        out.push_str("# HELP keyward_usage_records_dropped_total Usage records dropped because the queue was full.\n");
        out.push_str("# TYPE keyward_usage_records_dropped_total counter\n");
        let _ = writeln!(out, "keyward_usage_records_dropped_total {usage_dropped}");
        out.push_str("# HELP keyward_keys Virtual keys loaded in the index.\n# TYPE keyward_keys gauge\n");
        let _ = writeln!(out, "keyward_keys {}", all.len());
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
