//! Scanning bytes: archives are opened, UTF-16 text is transcoded, everything
//! else is searched as it is (binary files included: a key is ASCII, and any
//! non-printable byte is a boundary, so searching the raw bytes is the same as
//! searching their runs of printable bytes).

use crate::archive;
use crate::finding::{Finding, GitInfo, Source};
use keyward_detect::leak::{self, LeakMatch, MAX_CONTEXT, MAX_SECRET_LEN};
use memchr::{memchr, memmem, memrchr};
use secrecy::SecretString;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The inline marker that suppresses findings on its line.
pub const ALLOW_MARKER: &[u8] = b"keyward:allow";

/// How far around a secret to look for the end of its line (minified bundles
/// have lines of megabytes; the marker belongs near what it allows).
const LINE_WINDOW: usize = 4096;

/// Limits on what a scan opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_depth: u32,
    pub max_archive_bytes: u64,
}

/// Where the bytes came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin<'a> {
    pub path: String,
    pub source: Source,
    pub git: Option<&'a GitInfo>,
}

impl<'a> Origin<'a> {
    pub fn child(&self, inner: &str) -> Origin<'a> {
        Origin { path: format!("{}!{inner}", self.path), source: self.source, git: self.git }
    }
}

/// Collects findings and counters from many threads.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    findings: Mutex<Vec<Finding>>,
    warnings: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub allowed: AtomicU64,
}

impl Sink {
    pub fn warn(&self, msg: String) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(msg);
        }
    }

    pub fn error(&self, msg: String) {
        if let Ok(mut e) = self.errors.lock() {
            e.push(msg);
        }
    }

    fn push(&self, mut found: Vec<Finding>) {
        if found.is_empty() {
            return;
        }
        if let Ok(mut f) = self.findings.lock() {
            f.append(&mut found);
        }
    }

    /// Move everything `other` collected into `self`.
    pub fn absorb(&self, other: Sink) {
        let allowed = other.allowed.load(Ordering::Relaxed);
        self.allowed.fetch_add(allowed, Ordering::Relaxed);
        let (findings, warnings, errors) = other.into_parts();
        self.push(findings);
        for w in warnings {
            self.warn(w);
        }
        for e in errors {
            self.error(e);
        }
    }

    pub fn findings_ref(&self) -> Vec<Finding> {
        self.findings.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn for_each_finding(&self, mut f: impl FnMut(&mut Finding)) {
        if let Ok(mut all) = self.findings.lock() {
            all.iter_mut().for_each(&mut f);
        }
    }

    pub fn into_parts(self) -> (Vec<Finding>, Vec<String>, Vec<String>) {
        fn take<T>(m: Mutex<Vec<T>>) -> Vec<T> {
            m.into_inner().unwrap_or_else(|p| p.into_inner())
        }
        (take(self.findings), take(self.warnings), take(self.errors))
    }
}

/// Scan one in-memory object (file, archive member, blob). `budget` is what is
/// left to extract from the enclosing top-level archive.
pub(crate) fn scan_bytes(sink: &Sink, limits: Limits, origin: &Origin<'_>, data: &[u8], depth: u32, budget: &mut u64) {
    if depth < limits.max_depth {
        if let Some(kind) = archive::sniff(data) {
            match archive::expand(sink, limits, origin, data, kind, depth, budget) {
                Ok(()) => return,
                Err(e) => sink.warn(format!("{}: not opened as {kind:?} ({e}); scanned as bytes", origin.path)),
            }
        }
    }
    if let Some(text) = utf16_to_utf8(data) {
        scan_text(sink, origin, text.as_bytes(), Base::default());
        return;
    }
    scan_text(sink, origin, data, Base::default());
}

/// Position of `buf[0]` within the whole object, for chunked reading.
#[derive(Debug, Clone, Copy)]
struct Base {
    offset: u64,
    line: u64,
}

impl Default for Base {
    fn default() -> Self {
        Base { offset: 0, line: 1 }
    }
}

/// Search `buf`, reporting matches that start in `buf[lo..hi]`.
fn scan_window(sink: &Sink, origin: &Origin<'_>, buf: &[u8], base: Base, lo: usize, hi: usize) {
    let mut found = Vec::new();
    // line and column are tracked incrementally, so a megabyte-long line with
    // many secrets costs one pass, not one pass per secret
    let mut line = base.line;
    let mut counted_to = 0;
    let mut col_at = 0;
    let mut col = 0u64;
    leak::scan(buf, |m: LeakMatch| {
        if m.start < lo || m.start >= hi {
            return;
        }
        let seg = buf.get(counted_to..m.start).unwrap_or_default();
        let newlines = memchr::memchr_iter(b'\n', seg).count() as u64;
        if newlines > 0 {
            line += newlines;
            col_at = memrchr(b'\n', seg).map_or(counted_to, |i| counted_to + i + 1);
            col = 0;
        }
        col += count_chars(buf.get(col_at..m.start).unwrap_or_default());
        col_at = m.start;
        counted_to = m.start;
        let (line_start, line_end) = line_bounds(buf, m.start, m.end);
        let line_text = buf.get(line_start..line_end).unwrap_or_default();
        if memmem::find(line_text, ALLOW_MARKER).is_some() {
            sink.allowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let column = col + 1;
        let secret = String::from_utf8_lossy(m.secret(buf)).into_owned();
        found.push(Finding {
            kind: m.kind,
            fingerprint: leak::fingerprint(secret.as_bytes()),
            redacted: keyward_core::keys::redact(&secret),
            path: origin.path.clone(),
            line,
            column,
            offset: base.offset + m.start as u64,
            source: origin.source,
            git: origin.git.cloned(),
            in_current_tree: None,
            classification: None,
            secret: SecretString::from(secret),
        });
    });
    sink.push(found);
}

/// Unicode scalar values in UTF-8 bytes (continuation bytes do not count).
fn count_chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64
}

fn scan_text(sink: &Sink, origin: &Origin<'_>, buf: &[u8], base: Base) {
    scan_window(sink, origin, buf, base, 0, buf.len());
}

/// The line around `buf[start..end]`, looking at most [`LINE_WINDOW`] bytes
/// either way.
fn line_bounds(buf: &[u8], start: usize, end: usize) -> (usize, usize) {
    let from = start.saturating_sub(LINE_WINDOW);
    let line_start = buf.get(from..start).and_then(|s| memrchr(b'\n', s)).map_or(from, |i| from + i + 1);
    let to = end.saturating_add(LINE_WINDOW).min(buf.len());
    let line_end = buf.get(end..to).and_then(|s| memchr(b'\n', s)).map_or(to, |i| end + i);
    (line_start, line_end.max(start))
}

/// Read size for streaming large files.
const CHUNK: usize = 16 << 20;
/// Bytes carried from one chunk to the next: a whole secret plus context.
const KEEP: usize = 2 * (MAX_SECRET_LEN + MAX_CONTEXT) + 64;
/// Left context kept before the first reportable byte of a chunk.
const CONTEXT: usize = 32;

/// Stream `reader` in overlapping chunks (for files too large to hold in
/// memory). Archives are not opened on this path.
pub(crate) fn scan_stream(sink: &Sink, origin: &Origin<'_>, reader: &mut dyn Read) -> std::io::Result<u64> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + KEEP);
    let mut base = Base::default();
    let mut lo = 0;
    let mut total = 0u64;
    loop {
        let mut eof = false;
        while buf.len() < CHUNK {
            let have = buf.len();
            buf.resize(CHUNK, 0);
            let n = match reader.read(&mut buf[have..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    buf.truncate(have);
                    return Err(e);
                }
            };
            buf.truncate(have + n);
            total += n as u64;
            if n == 0 {
                eof = true;
                break;
            }
        }
        let hi = if eof { buf.len() } else { buf.len().saturating_sub(KEEP) };
        scan_window(sink, origin, &buf, base, lo, hi);
        if eof {
            return Ok(total);
        }
        let cut = hi.saturating_sub(CONTEXT);
        base.line += memchr::memchr_iter(b'\n', &buf[..cut]).count() as u64;
        base.offset += cut as u64;
        buf.drain(..cut);
        lo = hi - cut;
    }
}

/// UTF-16 text (with a byte-order mark) as UTF-8; `None` for anything else.
fn utf16_to_utf8(data: &[u8]) -> Option<String> {
    let (le, body) = match data {
        [0xFF, 0xFE, rest @ ..] => (true, rest),
        [0xFE, 0xFF, rest @ ..] => (false, rest),
        _ => return None,
    };
    let units = body.chunks_exact(2).map(|c| {
        let pair = [c[0], c[1]];
        if le {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    Some(char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_detect::leak::synth::{self, Rng};
    use keyward_detect::leak::Kind;

    fn origin() -> Origin<'static> {
        Origin { path: "t".into(), source: Source::File, git: None }
    }

    fn limits() -> Limits {
        Limits { max_depth: 3, max_archive_bytes: 1 << 20 }
    }

    fn run(data: &[u8]) -> Vec<Finding> {
        let sink = Sink::default();
        scan_bytes(&sink, limits(), &origin(), data, 0, &mut (1 << 20));
        sink.into_parts().0
    }

    #[test]
    fn lines_columns_and_offsets() {
        let k = synth::key(Kind::AnthropicApiKey, &mut Rng::new(1));
        let text = format!("one\ntwo ünï {k}\nthree\n\tx={k}");
        let f = run(text.as_bytes());
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].line, f[0].column), (2, 9));
        assert_eq!(f[0].offset as usize, text.find(&k).unwrap_or(0));
        assert_eq!((f[1].line, f[1].column), (4, 4));
        assert_eq!(f[0].redacted, keyward_core::keys::redact(&k));
        assert!(!f[0].redacted.contains(&k[12..104]));
    }

    #[test]
    fn allow_marker_suppresses_its_line_only() {
        let k = synth::key(Kind::AnthropicApiKey, &mut Rng::new(2));
        let text = format!("a = \"{k}\" # keyward:allow\nb = \"{k}\"\n");
        let f = run(text.as_bytes());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 2);
    }

    #[test]
    fn binary_and_utf16() {
        let k = synth::key(Kind::AnthropicAdminKey, &mut Rng::new(3));
        let mut bin = vec![0u8, 1, 2, 0xff, 0x7f];
        bin.extend_from_slice(k.as_bytes());
        bin.extend_from_slice(&[0, 0, 0x80]);
        assert_eq!(run(&bin).len(), 1);
        let mut utf16 = vec![0xFF, 0xFE];
        for u in format!("key: {k}\r\n").encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let f = run(&utf16);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::AnthropicAdminKey);
    }

    #[test]
    fn streaming_finds_keys_across_chunk_boundaries() {
        let mut rng = Rng::new(4);
        let k = synth::key(Kind::AnthropicApiKey, &mut rng);
        // place keys on both sides of every chunk boundary region
        let mut data = Vec::new();
        let mut expected = Vec::new();
        let mut lines = 1u64;
        for target in [CHUNK - KEEP - 60, CHUNK - KEEP + 5, CHUNK - 50, 2 * CHUNK - 2 * KEEP] {
            while data.len() + 1 < target {
                let filler = if data.len() % 100 == 99 { b'\n' } else { b'.' };
                if filler == b'\n' {
                    lines += 1;
                }
                data.push(filler);
            }
            data.push(b' ');
            expected.push((data.len() as u64, lines));
            data.extend_from_slice(k.as_bytes());
            data.push(b'&');
        }
        let sink = Sink::default();
        let mut cursor = std::io::Cursor::new(&data);
        let n = scan_stream(&sink, &origin(), &mut cursor).unwrap_or(0);
        assert_eq!(n as usize, data.len());
        let mut got: Vec<_> = sink.into_parts().0.iter().map(|f| (f.offset, f.line)).collect();
        got.sort();
        assert_eq!(got, expected);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            magic in proptest::prop_oneof![
                proptest::strategy::Just(Vec::new()),
                proptest::strategy::Just(b"PK\x03\x04".to_vec()),
                proptest::strategy::Just(b"PK\x05\x06".to_vec()),
                proptest::strategy::Just(vec![0x1f, 0x8b, 0x08]),
                proptest::strategy::Just(vec![0xFF, 0xFE]),
                proptest::strategy::Just(vec![0xFE, 0xFF]),
            ],
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let mut data = magic;
            data.extend_from_slice(&body);
            let _ = run(&data);
            let sink = Sink::default();
            let _ = scan_stream(&sink, &origin(), &mut std::io::Cursor::new(&data));
        }

        #[test]
        fn never_panics_on_mutated_archives(
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
            cut in 0usize..4096,
        ) {
            let k = synth::key(Kind::AnthropicApiKey, &mut Rng::new(7));
            let archive = crate::archive::tests::sample_archive(&k);
            let mut data = archive.clone();
            for (pos, b) in flips {
                if let Some(x) = data.get_mut(pos % archive.len()) {
                    *x = b;
                }
            }
            data.truncate(cut.max(1).min(data.len()));
            let _ = run(&data);
        }
    }
}
