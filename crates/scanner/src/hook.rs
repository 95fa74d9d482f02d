//! `keyward hook install`: a git pre-commit hook that runs
//! `keyward scan --staged` and blocks the commit on a finding.

use crate::args::HookArgs;
use std::path::{Path, PathBuf};

/// Marks a hook file as ours, so that re-installing replaces it silently.
pub const HOOK_MARKER: &str = "# keyward pre-commit hook";

/// The hook script for `program`.
pub fn hook_script(program: &Path) -> String {
    let program = program.display().to_string().replace('\'', r"'\''");
    format!(
        r#"#!/bin/sh
{HOOK_MARKER} (installed by `keyward hook install`)
# Blocks a commit whose staged changes contain an Anthropic or keyward key.
# Allow one line with an inline `keyward:allow` comment; accept known findings by
# listing their fingerprints in .keyward-baseline (see `keyward scan --write-baseline`).
# Bypass once, deliberately: git commit --no-verify
KEYWARD='{program}'
[ -x "$KEYWARD" ] || KEYWARD=keyward
if [ -f .keyward-baseline ]; then
    exec "$KEYWARD" scan --staged --no-progress --baseline .keyward-baseline
fi
exec "$KEYWARD" scan --staged --no-progress
"#
    )
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("not a git repository: {0}")]
    NotARepo(String),
    #[error("{0} exists and was not written by keyward; use --force to replace it (it is kept as pre-commit.keyward-backup)")]
    Exists(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HookError + '_ {
    move |source| HookError::Io { path: path.display().to_string(), source }
}

/// Where hooks live: `core.hooksPath` if set, else `<common git dir>/hooks`.
fn hooks_dir(repo_path: &Path) -> Result<PathBuf, HookError> {
    let repo = gix::discover(repo_path).map_err(|e| HookError::NotARepo(format!("{}: {e}", repo_path.display())))?;
    let configured = repo.config_snapshot().string("core.hooksPath").map(|s| PathBuf::from(s.to_string()));
    if let Some(p) = configured {
        if p.is_absolute() {
            return Ok(p);
        }
        let base = repo.workdir().map(Path::to_path_buf).unwrap_or_else(|| repo.git_dir().to_path_buf());
        return Ok(base.join(p));
    }
    Ok(repo.common_dir().join("hooks"))
}

/// Install the hook; returns its path.
pub fn install(args: &HookArgs) -> Result<PathBuf, HookError> {
    let dir = hooks_dir(&args.repo)?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let hook = dir.join("pre-commit");
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        if !existing.contains(HOOK_MARKER) {
            if !args.force {
                return Err(HookError::Exists(hook.display().to_string()));
            }
            let backup = dir.join("pre-commit.keyward-backup");
            std::fs::rename(&hook, &backup).map_err(io(&backup))?;
        }
    }
    let program = match &args.program {
        Some(p) => p.clone(),
        None => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("keyward")),
    };
    std::fs::write(&hook, hook_script(&program)).map_err(io(&hook))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).map_err(io(&hook))?;
    }
    Ok(hook)
}
