//! Delivery of rotated virtual keys to where their service reads them, so
//! that a scheduled rotation needs no redeploy. The writing is done by the
//! secret sinks of `keyward-secrets` (`file:` atomic and 0600, `aws-sm://`,
//! `vault://`, `exec:`); this module checks targets and maps errors.

use keyward_secrets::{SecretRef, SecretSink};
use secrecy::SecretString;

/// Validate a delivery target when it is configured.
pub fn check_target(t: &str) -> Result<SecretRef, String> {
    let r: SecretRef = t.parse().map_err(|e: keyward_secrets::RefError| e.to_string())?;
    match &r {
        SecretRef::File(p) if !p.is_absolute() => Err(format!("delivery target {t:?}: use an absolute path")),
        SecretRef::File(_) | SecretRef::AwsSm { .. } | SecretRef::Vault { .. } | SecretRef::Exec(_) => Ok(r),
        other => Err(format!(
            "delivery target {t:?}: {} references are read-only here (use file:, aws-sm://, vault:// or exec:)",
            other.scheme()
        )),
    }
}

/// Write `secret` to `target`. Errors name the target and the reason class, never the value.
pub async fn deliver(sink: &dyn SecretSink, target: &str, secret: &SecretString) -> Result<(), String> {
    let r = check_target(target)?;
    sink.deliver(&r, secret).await.map(|_| ()).map_err(|e| format!("{target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked() {
        assert!(check_target("file:/run/keys/svc.key").is_ok());
        assert!(check_target("aws-sm://prod/svc-key").is_ok());
        assert!(check_target("vault://secret/svc#key").is_ok());
        assert!(check_target("file:relative/path").is_err());
        assert!(check_target("env:SVC_KEY").is_err(), "env: cannot be written");
        assert!(check_target("s3://bucket").is_err());
    }
}
