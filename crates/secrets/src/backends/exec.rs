//! `exec:COMMAND` — the stdout of a command (`op read ...`, `gcloud secrets
//! versions access ...`, `aws secretsmanager get-secret-value ...`).
//!
//! The command line is split into argv with shell-like quoting and run
//! directly: no shell is involved unless the command is itself a shell
//! (`exec:sh -c '...'`). It runs with a timeout and is killed when it
//! overruns. Its stderr is read and dropped: it may echo the secret.

use crate::sources::clean;
use crate::FetchError;
use secrecy::{ExposeSecret, SecretString};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

/// Split a command line into words: whitespace separates words; `'...'`
/// keeps everything literally; `"..."` keeps everything but `\"`, `\\`,
/// `\$` and `` \` `` escapes; a backslash outside quotes escapes the next
/// character. No expansion of any kind.
pub(crate) fn split_command(line: &str) -> Result<Vec<String>, FetchError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(unbalanced("'")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(unbalanced("\"")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(unbalanced("\"")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => return Err(FetchError::Malformed("exec: command ends with a lone backslash".into())),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err(FetchError::Malformed("exec: the command is empty".into()));
    }
    Ok(words)
}

fn unbalanced(q: &str) -> FetchError {
    FetchError::Malformed(format!("exec: unbalanced {q} in the command"))
}

/// Run `line`, feeding `stdin` if given; its stdout when it exits 0.
async fn run(line: &str, stdin: Option<&SecretString>, timeout: Duration) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let argv = split_command(line)?;
    let program = argv[0].clone();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FetchError::NotConfigured(format!("exec: command {program:?} not found")),
        std::io::ErrorKind::PermissionDenied => FetchError::Denied,
        k => FetchError::Unreachable(format!("exec: cannot start {program:?}: {k}")),
    })?;
    let feed = stdin.map(|v| Zeroizing::new(v.expose_secret().as_bytes().to_vec()));
    let mut pipe = child.stdin.take();
    let work = async move {
        if let (Some(mut p), Some(v)) = (pipe.take(), feed) {
            // a command that does not read its stdin is its own business
            let _ = p.write_all(&v).await;
            let _ = p.shutdown().await;
        }
        child.wait_with_output().await
    };
    // on timeout `work` is dropped with the child: kill_on_drop kills it
    let out = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| {
            FetchError::Unreachable(format!(
                "exec: {program:?} did not finish within {}s and was killed",
                timeout.as_secs_f32()
            ))
        })?
        .map_err(|e| FetchError::Unreachable(format!("exec: {program:?}: {}", e.kind())))?;
    let stdout = Zeroizing::new(out.stdout);
    drop(Zeroizing::new(out.stderr));
    if !out.status.success() {
        return Err(FetchError::Unreachable(match out.status.code() {
            Some(c) => format!("exec: {program:?} exited with status {c}"),
            None => format!("exec: {program:?} was killed by a signal"),
        }));
    }
    Ok(stdout)
}

pub(crate) async fn fetch(line: &str, timeout: Duration) -> Result<SecretString, FetchError> {
    let out = run(line, None, timeout).await?;
    let text = std::str::from_utf8(&out).map_err(|_| FetchError::Malformed("exec: output is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(FetchError::Malformed("exec: the command printed nothing".into()));
    }
    clean(text)
}

/// Deliver by running the command with the value on its stdin.
pub(crate) async fn deliver(line: &str, value: &SecretString, timeout: Duration) -> Result<(), FetchError> {
    run(line, Some(value), timeout).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell_without_expanding() {
        let w = |s: &str| split_command(s).unwrap();
        assert_eq!(w("op read op://v/claude/key"), ["op", "read", "op://v/claude/key"]);
        assert_eq!(w("  a   b  "), ["a", "b"]);
        assert_eq!(w("sh -c 'echo $HOME; ls'"), ["sh", "-c", "echo $HOME; ls"]);
        assert_eq!(w(r#"printf "%s" "a \"b\" \$c""#), ["printf", "%s", r#"a "b" $c"#]);
        assert_eq!(w(r"a\ b c"), ["a b", "c"]);
        assert_eq!(w(r#"x''y "" z"#), ["xy", "", "z"]);
        assert_eq!(w("echo $HOME | cat"), ["echo", "$HOME", "|", "cat"]);
        for bad in ["", "   ", "a 'b", "a \"b", "a\\"] {
            assert!(split_command(bad).is_err(), "{bad:?}");
        }
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn stdout_is_the_value() {
        let v = fetch("printf '  sk-ant-test-123\\n'", T).await.unwrap();
        assert_eq!(v.expose_secret(), "sk-ant-test-123");
    }

    #[tokio::test]
    async fn no_shell_unless_asked() {
        // without a shell, `$HOME` and `;` are plain arguments
        let v = fetch("echo $HOME;x", T).await.unwrap();
        assert_eq!(v.expose_secret(), "$HOME;x");
        let v = fetch("sh -c 'printf %s abc; printf %s def'", T).await.unwrap();
        assert_eq!(v.expose_secret(), "abcdef");
    }

    #[tokio::test]
    async fn a_command_that_prints_nothing_is_malformed() {
        let e = fetch("true", T).await.unwrap_err();
        assert!(matches!(e, FetchError::Malformed(ref m) if m.contains("printed nothing")), "{e}");
        let e = fetch("printf '\\n\\n'", T).await.unwrap_err();
        assert!(matches!(e, FetchError::Malformed(_)), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let line = format!("sh -c 'echo $$ > {}; exec sleep 60'", pidfile.display());
        let e = fetch(&line, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, FetchError::Unreachable(ref m) if m.contains("killed")), "{e}");
        // the process is gone (kill_on_drop), not left running
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let alive = || {
            std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
                && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(), "the timed-out command is still running");
    }

    #[tokio::test]
    async fn failures_are_classified_without_output() {
        let e = fetch("sh -c 'echo sk-ant-leaked >&2; exit 3'", T).await.unwrap_err();
        assert_eq!(e.class(), "unreachable");
        assert!(e.to_string().contains("status 3"));
        assert!(!e.to_string().contains("sk-ant"));
        let e = fetch("/no/such/command-kw", T).await.unwrap_err();
        assert_eq!(e.class(), "not_configured");
    }

    #[tokio::test]
    async fn deliver_puts_the_value_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let line = format!("sh -c 'cat > {}'", out.display());
        deliver(&line, &SecretString::from("kw_prod_abc".to_string()), T).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "kw_prod_abc");
        let e = deliver("false", &SecretString::from("x".to_string()), T).await.unwrap_err();
        assert_eq!(e.class(), "unreachable");
    }
}
