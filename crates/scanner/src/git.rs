//! Git: full history (`--git`) and staged changes (`--staged`, the pre-commit
//! hook), read through gix's object database — no `git` process per object.
//!
//! History: every commit reachable from every ref (branches, tags, remotes,
//! notes, HEAD, and every stash in the stash reflog) is visited oldest first;
//! its tree is walked, skipping trees already walked, so each blob is met once
//! and attributed to the first commit (parents before children) that contains
//! it. The blobs are then read pack by pack in pack order — each object
//! inflated once, delta bases resolved as a tree, in parallel — and what no
//! pack holds (loose objects) one by one; each blob is scanned exactly once.
//! Commit and annotated tag messages are scanned too.

use crate::engine::{scan_bytes, Limits, Origin, Sink};
use crate::finding::{GitInfo, Source};
use gix::ObjectId;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a history scan visited.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HistoryStats {
    pub commits: u64,
    pub blobs: u64,
}

fn git_err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |e| format!("git: {what}: {e}")
}

macro_rules! tryg {
    ($e:expr, $what:expr) => {
        $e.map_err(|e| git_err($what)(&e))?
    };
}

/// Bytes of decoded objects kept for reuse by the history walk.
const OBJECT_CACHE: usize = 64 << 20;
/// Bytes of delta bases kept per worker while reading blobs.
const PACK_CACHE: usize = 96 << 20;

struct Commit {
    id: ObjectId,
    parents: Vec<ObjectId>,
    seconds: i64,
    tree: ObjectId,
    git: GitInfo,
}

/// Order commits parents-first (Kahn's algorithm), oldest author date first
/// among those ready, so the order is deterministic.
fn topological(commits: Vec<Commit>) -> Vec<Commit> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let index: HashMap<ObjectId, usize> = commits.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let mut pending = vec![0usize; commits.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); commits.len()];
    for (i, c) in commits.iter().enumerate() {
        for p in &c.parents {
            if let Some(&pi) = index.get(p) {
                pending[i] += 1;
                children[pi].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(i64, usize)>> =
        pending.iter().enumerate().filter(|(_, n)| **n == 0).map(|(i, _)| Reverse((commits[i].seconds, i))).collect();
    let mut order = Vec::with_capacity(commits.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &child in &children[i] {
            pending[child] -= 1;
            if pending[child] == 0 {
                ready.push(Reverse((commits[child].seconds, child)));
            }
        }
    }
    let mut slots: Vec<Option<Commit>> = commits.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect()
}

struct BlobSite {
    path: String,
    commit: usize,
}

pub(crate) fn scan_history(
    sink: &Sink,
    limits: Limits,
    repo_path: &Path,
    since: Option<&str>,
    threads: usize,
) -> Result<HistoryStats, String> {
    let mut repo = tryg!(gix::discover(repo_path), "open repository");
    // trees and commits are read many times while walking; blobs once
    repo.object_cache_size_if_unset(OBJECT_CACHE);
    let mut stats = HistoryStats::default();

    // 1. tips: every ref, HEAD, every stash entry; annotated tags on the way
    let mut tips: Vec<ObjectId> = Vec::new();
    let mut tags: Vec<(String, ObjectId)> = Vec::new();
    let platform = tryg!(repo.references(), "list references");
    for reference in tryg!(platform.all(), "list references") {
        let mut reference = match reference {
            Ok(r) => r,
            Err(e) => {
                sink.warn(format!("git: unreadable reference: {e}"));
                continue;
            }
        };
        let name = reference.name().as_bstr().to_string();
        if let Some(direct) = reference.try_id() {
            let direct = direct.detach();
            if let Ok(obj) = repo.find_header(direct) {
                if obj.kind() == gix::object::Kind::Tag {
                    tags.push((name.clone(), direct));
                }
            }
        }
        match reference.peel_to_id() {
            Ok(id) => tips.push(id.detach()),
            Err(e) => sink.warn(format!("git: {name}: {e}")),
        }
    }
    if let Ok(id) = repo.head_id() {
        tips.push(id.detach());
    }
    if let Ok(Some(stash)) = repo.try_find_reference("refs/stash") {
        let mut log = stash.log_iter();
        if let Ok(Some(lines)) = log.all() {
            tips.extend(lines.flatten().map(|l| l.new_oid()));
        }
    }
    // only commits start a walk (a tag may point at a tree or a blob)
    let mut roots_other = Vec::new();
    tips.retain(|id| match repo.find_header(*id).map(|h| h.kind()) {
        Ok(gix::object::Kind::Commit) => true,
        Ok(gix::object::Kind::Tree | gix::object::Kind::Blob) => {
            roots_other.push(*id);
            false
        }
        _ => false,
    });
    tips.sort();
    tips.dedup();

    // 2. commits, scanning their messages as we go
    let mut seen_trees: HashSet<ObjectId> = HashSet::new();
    let mut known_blobs: HashSet<ObjectId> = HashSet::new();
    let mut hidden: HashSet<ObjectId> = HashSet::new();
    if let Some(rev) = since {
        let id = tryg!(repo.rev_parse_single(rev), "--since").detach();
        let commit = tryg!(repo.find_commit(id), "--since");
        let tree = tryg!(commit.tree_id(), "--since").detach();
        // everything in REV's tree counts as already scanned
        walk_tree(&repo, tree, &mut seen_trees, &mut |oid, _| {
            known_blobs.insert(oid);
        })?;
        // and so does REV's whole ancestry (computed here rather than with
        // gix's `with_hidden`, which assumes commit dates that grow along the
        // graph; rebased and stashed commits break that)
        for info in tryg!(repo.rev_walk([id]).all(), "--since") {
            hidden.insert(tryg!(info, "--since").id);
        }
    }
    let walk = tryg!(repo.rev_walk(tips.iter().copied()).selected(|id| !hidden.contains(id)), "walk history");
    let mut commits: Vec<Commit> = Vec::new();
    for info in walk {
        let info = tryg!(info, "walk history");
        let commit = tryg!(repo.find_commit(info.id), "read commit");
        let seconds = commit.author().ok().and_then(|a| a.time().ok()).map_or(0, |t| t.seconds);
        let git = GitInfo { commit: info.id.to_string(), author_date: rfc3339(seconds) };
        let message = commit.message_raw_sloppy();
        let origin = Origin { path: format!("commit {}", info.id), source: Source::CommitMessage, git: Some(&git) };
        scan_bytes(sink, no_archives(limits), &origin, message, 0, &mut 0);
        let tree = tryg!(commit.tree_id(), "read commit").detach();
        commits.push(Commit { id: info.id, parents: info.parent_ids.to_vec(), seconds, tree, git });
    }
    stats.commits = commits.len() as u64;
    // parents before children, so a blob is attributed to the commit that
    // introduced it
    let commits = topological(commits);

    for (name, id) in &tags {
        if let Ok(tag) = repo.find_tag(*id) {
            let seconds = tag.tagger().ok().flatten().and_then(|t| t.time().ok()).map_or(0, |t| t.seconds);
            if let Ok(decoded) = tag.decode() {
                let git = GitInfo { commit: id.to_string(), author_date: rfc3339(seconds) };
                let origin = Origin { path: format!("tag {name}"), source: Source::TagMessage, git: Some(&git) };
                scan_bytes(sink, no_archives(limits), &origin, decoded.message, 0, &mut 0);
            }
        }
    }

    // 3. blobs: each once, attributed to the first commit that has it
    let mut blobs: HashMap<ObjectId, BlobSite> = HashMap::new();
    for (index, commit) in commits.iter().enumerate() {
        walk_tree(&repo, commit.tree, &mut seen_trees, &mut |oid, path| {
            if !known_blobs.contains(&oid) {
                blobs.entry(oid).or_insert_with(|| BlobSite { path: path.to_string(), commit: index });
            }
        })?;
    }
    for id in roots_other {
        blobs.entry(id).or_insert_with(|| BlobSite { path: format!("object {id}"), commit: usize::MAX });
    }
    stats.blobs = blobs.len() as u64;

    // what the current tree holds, to tell "still there" from "history only"
    let mut head_blobs = HashSet::new();
    if let Ok(tree) = repo.head_tree_id() {
        let mut seen = HashSet::new();
        walk_tree(&repo, tree.detach(), &mut seen, &mut |oid, _| {
            head_blobs.insert(oid);
        })?;
    }

    // 4. read the blobs. First every pack in pack order, each object decoded
    //    once by resolving its delta tree (in parallel); then whatever was not
    //    in a pack (loose objects, alternates) one object at a time.
    let history = Sink::default();
    let in_head_fps: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let scan_one = |oid: &ObjectId, site: &BlobSite, data: &[u8]| {
        let git = commits.get(site.commit).map(|c| &c.git);
        let origin = Origin { path: site.path.clone(), source: Source::GitBlob, git };
        let local = Sink::default();
        let mut budget = limits.max_archive_bytes;
        scan_bytes(&local, limits, &origin, data, 0, &mut budget);
        sink.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        sink.files.fetch_add(1, Ordering::Relaxed);
        if head_blobs.contains(oid) {
            if let Ok(mut fps) = in_head_fps.lock() {
                for f in local.findings_ref() {
                    fps.insert(f.fingerprint.clone());
                }
            }
        }
        history.absorb(local);
    };
    let done: Mutex<HashSet<ObjectId>> = Mutex::new(HashSet::new());
    let pack_dir = repo.common_dir().join("objects").join("pack");
    let hash_kind = repo.object_hash();
    let mut idx_files: Vec<std::path::PathBuf> = std::fs::read_dir(&pack_dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "idx")).collect())
        .unwrap_or_default();
    idx_files.sort();
    for idx_path in idx_files {
        let result = (|| -> Result<(), String> {
            let index = gix::odb::pack::index::File::at(&idx_path, hash_kind).map_err(|e| e.to_string())?;
            let data = gix::odb::pack::data::File::at(idx_path.with_extension("pack"), hash_kind)
                .map_err(|e| e.to_string())?;
            let interrupt = std::sync::atomic::AtomicBool::new(false);
            let processor = |kind: gix::object::Kind,
                             bytes: &[u8],
                             entry: &gix::odb::pack::index::Entry,
                             _: &dyn gix::progress::Progress|
             -> gix::error::Result<()> {
                if kind != gix::object::Kind::Blob {
                    return Ok(());
                }
                if let Some(site) = blobs.get(&entry.oid) {
                    let first = done.lock().map(|mut d| d.insert(entry.oid)).unwrap_or(false);
                    if first {
                        scan_one(&entry.oid, site, bytes);
                    }
                }
                Ok(())
            };
            index
                .traverse(
                    &data,
                    &mut gix::progress::Discard,
                    &interrupt,
                    processor,
                    gix::odb::pack::index::traverse::Options {
                        traversal: gix::odb::pack::index::traverse::Algorithm::DeltaTreeLookup,
                        thread_limit: Some(threads.max(1)),
                        check: gix::odb::pack::index::traverse::SafetyCheck::SkipFileAndObjectChecksumVerification,
                        alloc_limit_bytes: None,
                        make_pack_lookup_cache: || gix::odb::pack::cache::Never,
                    },
                )
                .map_err(|e| e.to_string())?;
            Ok(())
        })();
        if let Err(e) = result {
            // not fatal: whatever this pack did not yield is read one by one below
            sink.warn(format!("git: {}: {e}", idx_path.display()));
        }
    }
    let done = done.into_inner().unwrap_or_else(|p| p.into_inner());

    // by path, newest first: git deltifies older versions of a file against
    // newer ones, so in this order neighbours share delta bases
    let mut work: Vec<(&ObjectId, &BlobSite)> = blobs.iter().filter(|(oid, _)| !done.contains(*oid)).collect();
    work.sort_by(|a, b| (&a.1.path, std::cmp::Reverse(a.1.commit)).cmp(&(&b.1.path, std::cmp::Reverse(b.1.commit))));
    let next = AtomicUsize::new(0);
    let sync = repo.into_sync();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(work.len().max(1)) {
            scope.spawn(|| {
                let mut repo = sync.to_thread_local();
                repo.objects
                    .set_pack_cache(|| Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(PACK_CACHE)));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((oid, site)) = work.get(i) else {
                        break;
                    };
                    match repo.find_blob(**oid) {
                        Ok(blob) => scan_one(oid, site, &blob.data),
                        Err(e) => sink.error(format!("git: blob {oid} ({}): {e}", site.path)),
                    }
                }
            });
        }
    });
    let in_head = in_head_fps.into_inner().unwrap_or_else(|p| p.into_inner());
    history.for_each_finding(|f| f.in_current_tree = Some(in_head.contains(&f.fingerprint)));
    sink.absorb(history);
    Ok(stats)
}

/// Messages are text: never open them as archives.
fn no_archives(limits: Limits) -> Limits {
    Limits { max_depth: 0, ..limits }
}

/// Walk `tree` depth-first, calling `on_blob(oid, path)` for each blob in a
/// tree not in `seen` (submodules and symlinks are skipped).
fn walk_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    seen: &mut HashSet<ObjectId>,
    on_blob: &mut dyn FnMut(ObjectId, &str),
) -> Result<(), String> {
    if !seen.insert(tree) {
        return Ok(());
    }
    let mut stack = vec![(tree, String::new())];
    while let Some((id, prefix)) = stack.pop() {
        let tree = tryg!(repo.find_tree(id), "read tree");
        let decoded = tryg!(tree.decode(), "read tree");
        for entry in &decoded.entries {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(&entry.filename.to_string());
            let oid = entry.oid.to_owned();
            if entry.mode.is_tree() {
                if seen.insert(oid) {
                    stack.push((oid, path));
                }
            } else if entry.mode.is_blob() {
                on_blob(oid, &path);
            }
        }
    }
    Ok(())
}

/// Scan what is staged for the next commit: index entries whose blob differs
/// from HEAD's at the same path.
pub(crate) fn scan_staged(sink: &Sink, limits: Limits, repo_path: &Path) -> Result<(), String> {
    let repo = tryg!(gix::discover(repo_path), "open repository");
    let index = tryg!(repo.index_or_empty(), "read index");
    let mut head: HashMap<String, ObjectId> = HashMap::new();
    if let Ok(tree) = repo.head_tree_id() {
        let mut seen = HashSet::new();
        walk_tree(&repo, tree.detach(), &mut seen, &mut |oid, path| {
            head.insert(path.to_string(), oid);
        })?;
    }
    for entry in index.entries() {
        if entry.mode.is_submodule() || entry.mode.is_sparse() {
            continue;
        }
        let path = entry.path(&index).to_string();
        if head.get(&path) == Some(&entry.id) {
            continue;
        }
        let blob = match repo.find_blob(entry.id) {
            Ok(b) => b,
            Err(e) => {
                sink.error(format!("git: staged {path}: {e}"));
                continue;
            }
        };
        let origin = Origin { path, source: Source::Staged, git: None };
        let mut budget = limits.max_archive_bytes;
        scan_bytes(sink, limits, &origin, &blob.data, 0, &mut budget);
        sink.files.fetch_add(1, Ordering::Relaxed);
        sink.bytes.fetch_add(blob.data.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// `seconds` since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs % 3600) / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
