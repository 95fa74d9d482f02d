//! `--baseline FILE`: accepted findings, by fingerprint.
//!
//! Read: a file written by `--write-baseline`, a `--format json` report, or a
//! plain list (one SHA-256 hex per line, `#` comments). Written: JSON with the
//! fingerprint, kind and first location of each accepted secret — never the
//! secret.

use crate::finding::Finding;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("baseline {path}: {what}")]
    Format { path: String, what: String },
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn load(path: &Path) -> Result<HashSet<String>, BaselineError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io { path: shown.clone(), source })?;
    let trimmed = text.trim_start();
    let mut set = HashSet::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| BaselineError::Format { path: shown.clone(), what: e.to_string() })?;
        let list = match &doc {
            Value::Array(a) => a.clone(),
            Value::Object(o) => {
                o.get("findings").or_else(|| o.get("accepted")).and_then(Value::as_array).cloned().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        for item in list {
            let fp = match &item {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("fingerprint").and_then(Value::as_str),
                _ => None,
            };
            match fp {
                Some(fp) if is_fingerprint(fp) => {
                    set.insert(fp.to_ascii_lowercase());
                }
                _ => {
                    return Err(BaselineError::Format {
                        path: shown,
                        what: format!("entry without a SHA-256 fingerprint: {item}"),
                    })
                }
            }
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if !is_fingerprint(line) {
                return Err(BaselineError::Format {
                    path: shown,
                    what: format!("line {}: not a SHA-256 hex fingerprint", n + 1),
                });
            }
            set.insert(line.to_ascii_lowercase());
        }
    }
    Ok(set)
}

pub fn write(path: &Path, findings: &[Finding]) -> Result<(), BaselineError> {
    let mut by_fp: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in findings {
        by_fp.entry(&f.fingerprint).or_insert(f);
    }
    let accepted: Vec<Value> = by_fp
        .values()
        .map(|f| {
            json!({
                "fingerprint": f.fingerprint,
                "kind": f.kind.id(),
                "redacted": f.redacted,
                "first_seen": format!("{}:{}", f.path, f.line),
            })
        })
        .collect();
    let doc = json!({ "keyward_baseline": 1, "accepted": accepted });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    std::fs::write(path, text).map_err(|source| BaselineError::Io { path: path.display().to_string(), source })
}
