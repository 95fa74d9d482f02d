//! Reports: human text, JSON, SARIF 2.1.0. None of them ever contains a full
//! secret: only the fingerprint and the redacted preview.

use crate::finding::{Finding, Source};
use crate::Report;
use keyward_detect::leak::Kind;
use serde_json::{json, Value};
use std::io::{self, Write};

pub(crate) fn text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for f in &report.findings {
        write!(out, "{}", f.path)?;
        if !matches!(f.source, Source::CommitMessage | Source::TagMessage) || f.line > 1 {
            write!(out, ":{}:{}", f.line, f.column)?;
        }
        writeln!(out, ": {} {}", f.kind.title(), f.redacted)?;
        write!(out, "    fingerprint {}", f.fingerprint)?;
        if let Some(g) = &f.git {
            write!(out, "  commit {} ({})", short(&g.commit), g.author_date)?;
        }
        match f.in_current_tree {
            Some(true) => write!(out, "  still in the current tree")?,
            Some(false) => write!(out, "  history only")?,
            None => {}
        }
        if let Some(c) = &f.classification {
            write!(out, "  [{}", serde_json::to_value(c.status).unwrap_or(Value::Null).as_str().unwrap_or("?"))?;
            if let Some(id) = &c.id {
                write!(out, " {id}")?;
            }
            if let Some(a) = &c.action {
                write!(out, ", {a}")?;
            }
            write!(out, "]")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

pub(crate) fn json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let doc = json!({
        "tool": "keyward",
        "version": env!("CARGO_PKG_VERSION"),
        "findings": report.findings,
        "summary": {
            "findings": report.findings.len(),
            "suppressed_by_baseline": report.suppressed_by_baseline,
            "suppressed_inline": report.suppressed_inline,
            "files": report.files,
            "bytes": report.bytes,
            "commits": report.commits,
            "blobs": report.blobs,
            "elapsed_ms": report.elapsed.as_millis() as u64,
        },
        "warnings": report.warnings,
        "errors": report.errors,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// A relative URI reference for a display path: `/` separators, and
/// percent-encoding for everything outside the unreserved set and `/`.
pub(crate) fn uri_reference(path: &str) -> String {
    let path = path.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path);
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn sarif(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let rules: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "id": k.id(),
                "name": k.title().replace(' ', ""),
                "shortDescription": { "text": format!("{} found", k.title()) },
                "fullDescription": { "text": format!("A {} was found in a file, an archive or git history. {}", k.title(), k.remedy()) },
                "help": { "text": k.remedy() },
                "defaultConfiguration": { "level": "error" },
                "properties": { "tags": ["security", "secret"], "security-severity": "9.0" }
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let rule_index = Kind::ALL.iter().position(|k| *k == f.kind).unwrap_or(0);
            let mut properties = json!({
                "fingerprint": f.fingerprint,
                "redacted": f.redacted,
                "source": f.source,
            });
            if let Some(g) = &f.git {
                properties["commit"] = json!(g.commit);
                properties["authorDate"] = json!(g.author_date);
            }
            if let Some(t) = f.in_current_tree {
                properties["inCurrentTree"] = json!(t);
            }
            let mut result = json!({
                "ruleId": f.kind.id(),
                "ruleIndex": rule_index,
                "level": "error",
                "message": { "text": format!("{} {} ({})", f.kind.title(), f.redacted, f.kind.remedy()) },
                "partialFingerprints": { "secretSha256/v1": f.fingerprint },
                "properties": properties,
            });
            if matches!(f.source, Source::File | Source::GitBlob | Source::Staged) {
                result["locations"] = json!([{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri_reference(&f.path) },
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endColumn": f.column + f.redacted_len(),
                            "byteOffset": f.offset,
                            "byteLength": f.redacted_len(),
                        }
                    }
                }]);
            } else {
                result["locations"] = json!([{
                    "logicalLocations": [{ "name": f.path, "kind": "object" }]
                }]);
            }
            result
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "keyward",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

impl Finding {
    /// Length of the secret in characters (all detectors match ASCII).
    fn redacted_len(&self) -> u64 {
        match self.kind {
            Kind::AnthropicApiKey => 108,
            Kind::AnthropicAdminKey => 110,
            Kind::KeywardVirtualKey | Kind::KeywardAdminToken => {
                use secrecy::ExposeSecret;
                self.secret.expose_secret().len() as u64
            }
        }
    }
}
