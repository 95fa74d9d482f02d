//! Working trees: a parallel recursive walk that sees everything — hidden
//! files, `.env`, ignored files, build output — except `.git` internals
//! (history is `--git`'s job, read through the object database).

use crate::engine::{scan_bytes, scan_stream, Limits, Origin, Sink};
use crate::finding::Source;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Files up to this size are read whole (and opened if they are archives);
/// larger ones are streamed in chunks.
const READ_WHOLE: u64 = 64 << 20;

pub(crate) fn scan_paths(sink: &Sink, limits: Limits, paths: &[PathBuf], threads: usize) {
    let mut dirs = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => dirs.push(p.clone()),
            Ok(_) => scan_file(sink, limits, p),
            Err(e) => sink.error(format!("{}: {e}", p.display())),
        }
    }
    let Some((first, rest)) = dirs.split_first() else {
        return;
    };
    let mut builder = ignore::WalkBuilder::new(first);
    for d in rest {
        builder.add(d);
    }
    builder
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(false)
        .threads(threads)
        .filter_entry(|e| !(e.file_name() == ".git" && e.file_type().is_some_and(|t| t.is_dir())));
    builder.build_parallel().run(|| {
        Box::new(|entry| {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                    scan_file(sink, limits, e.path());
                }
                Ok(_) => {}
                Err(e) => sink.error(e.to_string()),
            }
            ignore::WalkState::Continue
        })
    });
}

fn scan_file(sink: &Sink, limits: Limits, path: &Path) {
    let origin = Origin { path: path.display().to_string(), source: Source::File, git: None };
    let result = (|| -> std::io::Result<u64> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; 512];
        let mut data = Vec::new();
        if len > READ_WHOLE {
            let n = file.read(&mut head)?;
            let head = head.get(..n).unwrap_or_default();
            let is_archive = crate::archive::sniff(head).is_some();
            if !is_archive || len > limits.max_archive_bytes {
                if is_archive {
                    sink.warn(format!("{}: archive larger than --max-archive-size, scanned as bytes", origin.path));
                }
                let mut chained = head.chain(file);
                return scan_stream(sink, &origin, &mut chained);
            }
            data.extend_from_slice(head);
        }
        file.read_to_end(&mut data)?;
        let mut budget = limits.max_archive_bytes;
        scan_bytes(sink, limits, &origin, &data, 0, &mut budget);
        Ok(data.len() as u64)
    })();
    match result {
        Ok(n) => {
            sink.files.fetch_add(1, Ordering::Relaxed);
            sink.bytes.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => sink.error(format!("{}: {e}", origin.path)),
    }
}
