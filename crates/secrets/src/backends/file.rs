//! `file:PATH` — read a file; deliver by atomic replace with mode 0600.

use crate::sources::clean;
use crate::FetchError;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

fn io_class(e: &std::io::Error) -> FetchError {
    match e.kind() {
        std::io::ErrorKind::NotFound => FetchError::NotFound,
        std::io::ErrorKind::PermissionDenied => FetchError::Denied,
        k => FetchError::Unreachable(k.to_string()),
    }
}

pub(crate) async fn fetch(path: &Path) -> Result<SecretString, FetchError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let text = std::str::from_utf8(&bytes).map_err(|_| FetchError::Malformed("not UTF-8".into()))?;
            clean(text)
        }
        Err(e) => Err(io_class(&e)),
    }
}

/// Write `value` to `path` atomically: a new 0600 file beside it, synced,
/// renamed over the target, and the directory synced.
pub(crate) async fn deliver(path: &Path, value: &SecretString) -> Result<(), FetchError> {
    let path = path.to_path_buf();
    let value = Zeroizing::new(value.expose_secret().as_bytes().to_vec());
    tokio::task::spawn_blocking(move || write_atomic(&path, &value))
        .await
        .map_err(|_| FetchError::Unreachable("file writer task failed".into()))?
}

fn write_atomic(path: &Path, value: &[u8]) -> Result<(), FetchError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| FetchError::Malformed("the path names no file".into()))?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.keyward-{}-{nanos}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(value)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io_class(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn deliver_then_fetch_roundtrip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        deliver(&p, &SecretString::from("kw_prod_new".to_string())).await.unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fetch(&p).await.unwrap().expose_secret(), "kw_prod_new");
        // no temporary file is left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn missing_file_and_missing_dir_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(fetch(&dir.path().join("nope")).await.unwrap_err(), FetchError::NotFound);
        let v = SecretString::from("x".to_string());
        assert_eq!(deliver(&dir.path().join("no/such/dir/key"), &v).await.unwrap_err(), FetchError::NotFound);
    }

    #[tokio::test]
    async fn empty_file_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(fetch(&p).await.unwrap_err(), FetchError::Malformed(_)));
    }
}
