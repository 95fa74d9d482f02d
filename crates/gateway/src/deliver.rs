//! Delivery of rotated virtual keys to where their service reads them, so
//! that a scheduled rotation needs no redeploy.
//!
//! `file:PATH` is written atomically (temp file in the same directory, fsync,
//! rename) with mode 0600.

use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Validate a delivery target when it is configured.
pub fn check_target(t: &str) -> Result<(), String> {
    match t.split_once(':') {
        Some(("file", p)) if !p.trim().is_empty() => {
            let path = PathBuf::from(p);
            if !path.is_absolute() {
                return Err(format!("delivery target {t:?}: use an absolute path"));
            }
            Ok(())
        }
        _ => Err(format!("delivery target {t:?} is not supported (use file:/ABSOLUTE/PATH)")),
    }
}

/// Write `secret` to `target`. Errors name the target and the reason, never the value.
pub async fn deliver(target: &str, secret: &SecretString) -> Result<(), String> {
    check_target(target)?;
    let path = PathBuf::from(target.trim_start_matches("file:"));
    let value = SecretString::from(secret.expose_secret().to_string());
    let t = target.to_string();
    tokio::task::spawn_blocking(move || write_atomic(&path, &value).map_err(|e| format!("{t}: {e}")))
        .await
        .map_err(|e| format!("{target}: {e}"))?
}

fn write_atomic(path: &std::path::Path, value: &SecretString) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = dir.join(format!(".{}.keyward-{}", name.to_string_lossy(), keyward_core::base62::random(8)));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(value.expose_secret().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn writes_atomically_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("svc.key");
        std::fs::write(&p, "old\n").unwrap();
        let target = format!("file:{}", p.display());
        deliver(&target, &SecretString::from("kw_dev_new".to_string())).await.unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kw_dev_new\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
        let missing = format!("file:{}/nope/x.key", dir.path().display());
        let err = deliver(&missing, &SecretString::from("kw_dev_secretvalue".to_string())).await.unwrap_err();
        assert!(!err.contains("secretvalue"));
        assert!(check_target("file:relative/path").is_err());
        assert!(check_target("s3://bucket").is_err());
    }
}
