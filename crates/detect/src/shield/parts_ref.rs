//! The screened-parts walker as it was before the lenient reader (commit
//! 7c3cb50), over a parsed `serde_json::Value`, kept as a test oracle:
//! [`super::parts::RequestView`] must find the same parts in the same order
//! on every input (see `request_view_matches_reference` in `tests.rs`).

use super::parts::{Part, PartKind};
use serde_json::Value;
use std::borrow::Cow;

pub fn screened_parts_ref(request: &Value) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return out;
    };
    for (mi, msg) in messages.iter().enumerate() {
        if msg.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        match msg.get("content") {
            Some(Value::String(s)) => push(&mut out, PartKind::UserText, mi, None, Cow::Borrowed(s)),
            Some(Value::Array(blocks)) => {
                for (bi, block) in blocks.iter().enumerate() {
                    block_parts(&mut out, block, mi, bi, None);
                }
            }
            _ => {}
        }
    }
    out
}

fn push<'a>(out: &mut Vec<Part<'a>>, kind: PartKind, message: usize, block: Option<usize>, text: Cow<'a, str>) {
    if !text.trim().is_empty() {
        out.push(Part { kind, message, block, text });
    }
}

/// `inherit`: the kind of an enclosing block (a `text` inside a `tool_result`
/// is tool output, not user text).
fn block_parts<'a>(out: &mut Vec<Part<'a>>, block: &'a Value, mi: usize, bi: usize, inherit: Option<PartKind>) {
    let ty = block.get("type").and_then(Value::as_str).unwrap_or("");
    match ty {
        "text" => {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                push(out, inherit.unwrap_or(PartKind::UserText), mi, Some(bi), Cow::Borrowed(t));
            }
        }
        "document" => document(out, block, mi, bi, inherit.unwrap_or(PartKind::Document)),
        "search_result" => {
            if let Some(t) = block.get("title").and_then(Value::as_str) {
                push(out, PartKind::Document, mi, Some(bi), Cow::Borrowed(t));
            }
            if let Some(items) = block.get("content").and_then(Value::as_array) {
                for item in items {
                    block_parts(out, item, mi, bi, Some(PartKind::Document));
                }
            }
        }
        "tool_result" => match block.get("content") {
            Some(Value::String(s)) => push(out, PartKind::ToolResult, mi, Some(bi), Cow::Borrowed(s)),
            Some(Value::Array(items)) => {
                for item in items {
                    block_parts(out, item, mi, bi, Some(PartKind::ToolResult));
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn document<'a>(out: &mut Vec<Part<'a>>, block: &'a Value, mi: usize, bi: usize, kind: PartKind) {
    for key in ["title", "context"] {
        if let Some(t) = block.get(key).and_then(Value::as_str) {
            push(out, kind, mi, Some(bi), Cow::Borrowed(t));
        }
    }
    let Some(source) = block.get("source") else {
        return;
    };
    match source.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(d) = source.get("data").and_then(Value::as_str) {
                push(out, kind, mi, Some(bi), Cow::Borrowed(d));
            }
        }
        Some("content") => match source.get("content") {
            Some(Value::String(s)) => push(out, kind, mi, Some(bi), Cow::Borrowed(s)),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Some(t) = item.get("text").and_then(Value::as_str) {
                        push(out, kind, mi, Some(bi), Cow::Borrowed(t));
                    }
                }
            }
            _ => {}
        },
        Some("base64") => {
            let textual = source.get("media_type").and_then(Value::as_str).is_some_and(|m| m.starts_with("text/"));
            let decoded = source
                .get("data")
                .and_then(Value::as_str)
                .filter(|_| textual)
                .and_then(|d| super::normalize::decode_base64(d.trim().as_bytes()))
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            if let Some(d) = decoded {
                push(out, kind, mi, Some(bi), Cow::Owned(d));
            }
        }
        _ => {}
    }
}
