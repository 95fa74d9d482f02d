//! Which parts of a Messages API request are screened.
//!
//! Untrusted content only: the text of `user` turns (a string `content`, or its
//! `text` blocks), `document` blocks (plain-text sources, inline `content`
//! blocks, base64 sources of a `text/*` media type; PDFs and URLs are not
//! read), `search_result` blocks, and the contents of `tool_result` blocks
//! (string or `text`/`document` blocks inside). Never the `system` prompt, which
//! is the operator's, and never `assistant` turns.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// Where a screened part came from; a policy may treat them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// Text a user typed (a `user` turn's string content or `text` block).
    UserText,
    /// A `document` or `search_result` block.
    Document,
    /// The content of a `tool_result` block.
    ToolResult,
}

impl PartKind {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::UserText => "user_text",
            PartKind::Document => "document",
            PartKind::ToolResult => "tool_result",
        }
    }
}

/// One screened piece of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<'a> {
    pub kind: PartKind,
    /// Index in `messages`.
    pub message: usize,
    /// Index of the content block in that message (`None` for string content).
    pub block: Option<usize>,
    pub text: Cow<'a, str>,
}

/// The untrusted parts of a Messages request body, in request order. A body
/// without `messages` (or not an object) yields nothing; unknown block types
/// are skipped.
pub fn screened_parts(request: &Value) -> Vec<Part<'_>> {
    RequestView::of_value(request).into_parts()
}

/// How a request's `system` field looks (the gateway refuses a malformed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemField {
    #[default]
    Absent,
    /// `null`, a blank string or an empty list.
    Empty,
    /// A string or a list (of text blocks, which the upstream checks).
    Given,
    /// Any other JSON value.
    Invalid,
}

/// A Messages request as the screen reads it: only the fields that hold
/// screened text, borrowed from the body where no escape had to be decoded,
/// without building a `serde_json::Value` tree. Every field is lenient, as
/// looking into a `Value` is: a field of another type than expected reads as
/// absent (the upstream rejects such a request; screening skips it), a repeated
/// key keeps its last value, and unknown fields and block types are skipped. So
/// the parts read from the bytes ([`RequestView::from_json`]) are the parts read
/// from the parsed `Value` ([`screened_parts`]).
#[derive(Debug, Default)]
pub struct RequestView<'a> {
    /// The body is a JSON object.
    pub object: bool,
    pub system: SystemField,
    messages: Vec<Message<'a>>,
}

impl<'a> RequestView<'a> {
    /// Read a request body; an error only for a body that is not JSON.
    pub fn from_json(body: &'a [u8]) -> serde_json::Result<RequestView<'a>> {
        serde_json::from_slice(body)
    }

    /// Read an already parsed body (every JSON value reads as some view).
    pub fn of_value(v: &'a Value) -> RequestView<'a> {
        RequestView::deserialize(v).unwrap_or_default()
    }

    /// The screened parts, in request order.
    pub fn into_parts(self) -> Vec<Part<'a>> {
        let mut out = Vec::new();
        for (mi, msg) in self.messages.into_iter().enumerate() {
            if msg.role.as_deref() != Some("user") {
                continue;
            }
            match msg.content {
                Content::Text(s) => push(&mut out, PartKind::UserText, mi, None, s),
                Content::Items(blocks) => {
                    for (bi, block) in blocks.into_iter().enumerate() {
                        block_parts(&mut out, block, mi, bi, None);
                    }
                }
                Content::Other => {}
            }
        }
        out
    }
}

fn push<'a>(out: &mut Vec<Part<'a>>, kind: PartKind, message: usize, block: Option<usize>, text: Cow<'a, str>) {
    if !text.trim().is_empty() {
        out.push(Part { kind, message, block, text });
    }
}

/// `inherit`: the kind of an enclosing block (a `text` inside a `tool_result`
/// is tool output, not user text).
fn block_parts<'a>(out: &mut Vec<Part<'a>>, block: Block<'a>, mi: usize, bi: usize, inherit: Option<PartKind>) {
    match block.ty.as_deref().unwrap_or("") {
        "text" => {
            if let Some(t) = block.text {
                push(out, inherit.unwrap_or(PartKind::UserText), mi, Some(bi), t);
            }
        }
        "document" => document(out, block, mi, bi, inherit.unwrap_or(PartKind::Document)),
        "search_result" => {
            if let Some(t) = block.title {
                push(out, PartKind::Document, mi, Some(bi), t);
            }
            if let Content::Items(items) = block.content {
                for item in items {
                    block_parts(out, item, mi, bi, Some(PartKind::Document));
                }
            }
        }
        "tool_result" => match block.content {
            Content::Text(s) => push(out, PartKind::ToolResult, mi, Some(bi), s),
            Content::Items(items) => {
                for item in items {
                    block_parts(out, item, mi, bi, Some(PartKind::ToolResult));
                }
            }
            Content::Other => {}
        },
        _ => {}
    }
}

fn document<'a>(out: &mut Vec<Part<'a>>, block: Block<'a>, mi: usize, bi: usize, kind: PartKind) {
    for t in [block.title, block.context].into_iter().flatten() {
        push(out, kind, mi, Some(bi), t);
    }
    let source = block.source.map(|s| *s).unwrap_or_default();
    match source.ty.as_deref() {
        Some("text") => {
            if let Some(d) = source.data {
                push(out, kind, mi, Some(bi), d);
            }
        }
        Some("content") => match source.content {
            Content::Text(s) => push(out, kind, mi, Some(bi), s),
            Content::Items(items) => {
                for t in items.into_iter().filter_map(|item| item.text) {
                    push(out, kind, mi, Some(bi), t);
                }
            }
            Content::Other => {}
        },
        Some("base64") => {
            let textual = source.media_type.as_deref().is_some_and(|m| m.starts_with("text/"));
            let decoded = source
                .data
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

// ---- the lenient reader ----------------------------------------------------

#[derive(Debug, Default)]
struct Message<'a> {
    role: Option<Cow<'a, str>>,
    content: Content<'a>,
}

/// A block, and also a `source` object (`type`, `data`, `media_type`, `content`).
#[derive(Debug, Default)]
struct Block<'a> {
    ty: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    title: Option<Cow<'a, str>>,
    context: Option<Cow<'a, str>>,
    data: Option<Cow<'a, str>>,
    media_type: Option<Cow<'a, str>>,
    content: Content<'a>,
    source: Option<Box<Block<'a>>>,
}

/// A `content` field: a string, a list of blocks, or anything else.
#[derive(Debug, Default)]
enum Content<'a> {
    Text(Cow<'a, str>),
    Items(Vec<Block<'a>>),
    #[default]
    Other,
}

/// A string field; any other value reads as `None`.
#[derive(Default)]
struct Str<'a>(Option<Cow<'a, str>>);

/// A list whose elements are read as `T`; any other value reads as empty.
struct List<T>(Vec<T>);

/// The object keys the reader looks at.
enum Field {
    Type,
    Text,
    Title,
    Context,
    Data,
    MediaType,
    Content,
    Source,
    Role,
    Messages,
    System,
    Other,
}

/// Visitor methods for the JSON values a reader does not want: they read as
/// the default (absent); lists and objects are skipped over.
macro_rules! read_as_default {
    (scalars) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// The `visit_str` family for a reader of strings: borrowed when the input
/// lends them, copied otherwise.
macro_rules! read_string {
    ($wrap:expr) => {
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok($wrap(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($wrap(Cow::Owned(v)))
        }
    };
}

/// `Deserialize` through `deserialize_any` with a unit visitor.
macro_rules! deserialize_any_with {
    ($ty:ty, $visitor:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($visitor)
            }
        }
    };
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "type" => Field::Type,
                    "text" => Field::Text,
                    "title" => Field::Title,
                    "context" => Field::Context,
                    "data" => Field::Data,
                    "media_type" => Field::MediaType,
                    "content" => Field::Content,
                    "source" => Field::Source,
                    "role" => Field::Role,
                    "messages" => Field::Messages,
                    "system" => Field::System,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

struct StrVisitor;
impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    read_string!(|s| Str(Some(s)));
    read_as_default!(scalars);
    read_as_default!(seq);
    read_as_default!(map);
}
deserialize_any_with!(Str<'de>, StrVisitor);

struct ListVisitor<T>(std::marker::PhantomData<T>);
impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(x) = seq.next_element()? {
            out.push(x);
        }
        Ok(List(out))
    }
    read_as_default!(scalars);
    read_as_default!(str);
    read_as_default!(map);
}
impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}
impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(std::marker::PhantomData))
    }
}

struct ContentVisitor;
impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    read_string!(Content::Text);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Content<'de>, A::Error> {
        Ok(Content::Items(ListVisitor(std::marker::PhantomData).visit_seq(seq)?.0))
    }
    read_as_default!(scalars);
    read_as_default!(map);
}
deserialize_any_with!(Content<'de>, ContentVisitor);

struct BlockVisitor;
impl<'de> Visitor<'de> for BlockVisitor {
    type Value = Block<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Block<'de>, A::Error> {
        let mut b = Block::default();
        while let Some(key) = map.next_key()? {
            match key {
                Field::Type => b.ty = map.next_value::<Str>()?.0,
                Field::Text => b.text = map.next_value::<Str>()?.0,
                Field::Title => b.title = map.next_value::<Str>()?.0,
                Field::Context => b.context = map.next_value::<Str>()?.0,
                Field::Data => b.data = map.next_value::<Str>()?.0,
                Field::MediaType => b.media_type = map.next_value::<Str>()?.0,
                Field::Content => b.content = map.next_value()?,
                Field::Source => b.source = Some(Box::new(map.next_value()?)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(b)
    }
    read_as_default!(scalars);
    read_as_default!(str);
    read_as_default!(seq);
}
deserialize_any_with!(Block<'de>, BlockVisitor);

struct MessageVisitor;
impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut m = Message::default();
        while let Some(key) = map.next_key()? {
            match key {
                Field::Role => m.role = map.next_value::<Str>()?.0,
                Field::Content => m.content = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(m)
    }
    read_as_default!(scalars);
    read_as_default!(str);
    read_as_default!(seq);
}
deserialize_any_with!(Message<'de>, MessageVisitor);

struct SystemVisitor;
impl<'de> Visitor<'de> for SystemVisitor {
    type Value = SystemField;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SystemField, E> {
        Ok(if v.trim().is_empty() { SystemField::Empty } else { SystemField::Given })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SystemField, A::Error> {
        let mut any = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            any = true;
        }
        Ok(if any { SystemField::Given } else { SystemField::Empty })
    }
    fn visit_unit<E: de::Error>(self) -> Result<SystemField, E> {
        Ok(SystemField::Empty)
    }
    fn visit_none<E: de::Error>(self) -> Result<SystemField, E> {
        Ok(SystemField::Empty)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SystemField, E> {
        Ok(SystemField::Invalid)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SystemField, E> {
        Ok(SystemField::Invalid)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SystemField, E> {
        Ok(SystemField::Invalid)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SystemField, E> {
        Ok(SystemField::Invalid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SystemField, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(SystemField::Invalid)
    }
}
deserialize_any_with!(SystemField, SystemVisitor);

struct RequestVisitor;
impl<'de> Visitor<'de> for RequestVisitor {
    type Value = RequestView<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestView<'de>, A::Error> {
        let mut r = RequestView { object: true, ..RequestView::default() };
        while let Some(key) = map.next_key()? {
            match key {
                Field::Messages => r.messages = map.next_value::<List<Message>>()?.0,
                Field::System => r.system = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
    read_as_default!(scalars);
    read_as_default!(str);
    read_as_default!(seq);
}
deserialize_any_with!(RequestView<'de>, RequestVisitor);
