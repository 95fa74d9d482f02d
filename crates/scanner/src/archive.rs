//! Archives: zip (and so jar, apk, docx, whl), tar, gzip; nested up to a
//! depth, with one byte budget shared by everything extracted from one
//! top-level archive (zip bombs stop at the budget, not at memory).

use crate::engine::{scan_bytes, Limits, Origin, Sink};
use std::io::{Cursor, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Zip,
    Gzip,
    Tar,
}

/// Recognise an archive by its magic bytes (never by its name).
pub(crate) fn sniff(data: &[u8]) -> Option<ArchiveKind> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Some(ArchiveKind::Zip)
    } else if data.starts_with(&[0x1f, 0x8b, 0x08]) {
        Some(ArchiveKind::Gzip)
    } else if data.get(257..262) == Some(b"ustar") {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// Read at most `budget` bytes of `reader`; `Err` names the reason if the
/// budget ran out (what was read is still returned through `out`).
fn read_limited(reader: &mut dyn Read, budget: &mut u64, out: &mut Vec<u8>) -> Result<(), String> {
    let mut limited = reader.take(budget.saturating_add(1));
    limited.read_to_end(out).map_err(|e| format!("read error: {e}"))?;
    let n = out.len() as u64;
    if n > *budget {
        out.truncate(usize::try_from(*budget).unwrap_or(usize::MAX));
        *budget = 0;
        return Err("archive size limit reached".into());
    }
    *budget -= n;
    Ok(())
}

/// Open `data` as an archive of `kind` and scan every member. An `Err` means
/// nothing useful could be opened (the caller then scans the raw bytes);
/// problems after the first member are warnings.
pub(crate) fn expand(
    sink: &Sink,
    limits: Limits,
    origin: &Origin<'_>,
    data: &[u8],
    kind: ArchiveKind,
    depth: u32,
    budget: &mut u64,
) -> Result<(), String> {
    match kind {
        ArchiveKind::Gzip => {
            let mut out = Vec::new();
            let mut decoder = flate2::read::MultiGzDecoder::new(data);
            let res = read_limited(&mut decoder, budget, &mut out);
            if let Err(e) = &res {
                if out.is_empty() {
                    return Err(e.clone());
                }
                sink.warn(format!("{}: {e}; scanned what was extracted", origin.path));
            }
            // gzip wraps one stream: its content keeps the archive's name
            scan_bytes(sink, limits, origin, &out, depth + 1, budget);
            Ok(())
        }
        ArchiveKind::Zip => {
            let mut zip = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| e.to_string())?;
            for i in 0..zip.len() {
                let mut member = match zip.by_index(i) {
                    Ok(m) => m,
                    Err(e) => {
                        sink.warn(format!("{}: member {i}: {e}", origin.path));
                        continue;
                    }
                };
                if member.is_dir() {
                    continue;
                }
                let child = origin.child(member.name());
                let mut out = Vec::new();
                let res = read_limited(&mut member, budget, &mut out);
                drop(member);
                scan_bytes(sink, limits, &child, &out, depth + 1, budget);
                if let Err(e) = res {
                    sink.warn(format!("{}: {e}", child.path));
                    if *budget == 0 {
                        break;
                    }
                }
            }
            Ok(())
        }
        ArchiveKind::Tar => {
            let mut tar = tar::Archive::new(Cursor::new(data));
            let entries = tar.entries().map_err(|e| e.to_string())?;
            for entry in entries {
                let mut entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        sink.warn(format!("{}: {e}", origin.path));
                        break;
                    }
                };
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "?".into());
                let child = origin.child(&name);
                let mut out = Vec::new();
                let res = read_limited(&mut entry, budget, &mut out);
                scan_bytes(sink, limits, &child, &out, depth + 1, budget);
                if let Err(e) = res {
                    sink.warn(format!("{}: {e}", child.path));
                    if *budget == 0 {
                        break;
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A tar.gz holding a zip holding a file with `secret`.
    pub(crate) fn sample_archive(secret: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("a/b.txt", opts).unwrap();
        w.write_all(format!("k={secret}\n").as_bytes()).unwrap();
        let zip = w.finish().unwrap().into_inner();
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(zip.len() as u64);
        h.set_cksum();
        t.append_data(&mut h, "x.zip", zip.as_slice()).unwrap();
        let tar = t.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn sniffing() {
        let k = "x";
        let a = sample_archive(k);
        assert_eq!(sniff(&a), Some(ArchiveKind::Gzip));
        let key = keyward_detect::leak::synth::key(
            keyward_detect::leak::Kind::AnthropicApiKey,
            &mut keyward_detect::leak::synth::Rng::new(1),
        );
        let found = crate::scan_buffer("s.tgz", &sample_archive(&key), 5, 1 << 20);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "s.tgz!x.zip!a/b.txt");
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(ArchiveKind::Zip));
        assert_eq!(sniff(b"plain text"), None);
        let mut tar = vec![0u8; 600];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(ArchiveKind::Tar));
    }
}
