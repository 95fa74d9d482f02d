//! Parsing of secret references (DESIGN.md, "Secret sources").

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// The embedded encrypted store.
    Local(String),
    Env(String),
    File(PathBuf),
    Exec(String),
    AwsSm {
        secret_id: String,
        field: Option<String>,
    },
    Vault {
        mount: String,
        path: String,
        field: String,
    },
    GcpSm(String),
    AzureKv {
        vault: String,
        secret: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("secret reference {0:?} has an unknown scheme (use local:, env:, file:, exec:, aws-sm://, vault://, gcp-sm://, azure-kv://)")]
    Scheme(String),
    #[error("secret reference {0:?} is incomplete: {1}")]
    Shape(String, &'static str),
}

fn non_empty<'a>(full: &str, v: &'a str, what: &'static str) -> Result<&'a str, RefError> {
    if v.trim().is_empty() {
        Err(RefError::Shape(full.to_string(), what))
    } else {
        Ok(v)
    }
}

impl FromStr for SecretRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(v) = s.strip_prefix("local:") {
            let name = non_empty(s, v, "a name is required")?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(RefError::Shape(s.into(), "a local name uses letters, digits, '-', '_' and '.'"));
            }
            return Ok(SecretRef::Local(name.into()));
        }
        if let Some(v) = s.strip_prefix("env:") {
            return Ok(SecretRef::Env(non_empty(s, v, "a variable name is required")?.into()));
        }
        if let Some(v) = s.strip_prefix("file:") {
            return Ok(SecretRef::File(non_empty(s, v, "a path is required")?.into()));
        }
        if let Some(v) = s.strip_prefix("exec:") {
            return Ok(SecretRef::Exec(non_empty(s, v, "a command is required")?.into()));
        }
        if let Some(v) = s.strip_prefix("aws-sm://") {
            let (id, field) = match v.split_once('#') {
                Some((id, f)) => (id, Some(non_empty(s, f, "the JSON field after '#' is empty")?.to_string())),
                None => (v, None),
            };
            return Ok(SecretRef::AwsSm { secret_id: non_empty(s, id, "a secret id is required")?.into(), field });
        }
        if let Some(v) = s.strip_prefix("vault://") {
            let (p, field) =
                v.split_once('#').ok_or(RefError::Shape(s.into(), "vault://MOUNT/PATH#FIELD needs #FIELD"))?;
            let (mount, path) =
                p.split_once('/').ok_or(RefError::Shape(s.into(), "vault://MOUNT/PATH#FIELD needs a path"))?;
            return Ok(SecretRef::Vault {
                mount: non_empty(s, mount, "mount is empty")?.into(),
                path: non_empty(s, path, "path is empty")?.into(),
                field: non_empty(s, field, "field is empty")?.into(),
            });
        }
        if let Some(v) = s.strip_prefix("gcp-sm://") {
            if !v.starts_with("projects/") || !v.contains("/secrets/") {
                return Err(RefError::Shape(s.into(), "use gcp-sm://projects/P/secrets/S"));
            }
            return Ok(SecretRef::GcpSm(v.into()));
        }
        if let Some(v) = s.strip_prefix("azure-kv://") {
            let (vault, secret) = v.split_once('/').ok_or(RefError::Shape(s.into(), "use azure-kv://VAULT/SECRET"))?;
            return Ok(SecretRef::AzureKv {
                vault: non_empty(s, vault, "vault is empty")?.into(),
                secret: non_empty(s, secret, "secret is empty")?.into(),
            });
        }
        Err(RefError::Scheme(s.to_string()))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Local(n) => write!(f, "local:{n}"),
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Exec(c) => write!(f, "exec:{c}"),
            SecretRef::AwsSm { secret_id, field: Some(fl) } => write!(f, "aws-sm://{secret_id}#{fl}"),
            SecretRef::AwsSm { secret_id, field: None } => write!(f, "aws-sm://{secret_id}"),
            SecretRef::Vault { mount, path, field } => write!(f, "vault://{mount}/{path}#{field}"),
            SecretRef::GcpSm(p) => write!(f, "gcp-sm://{p}"),
            SecretRef::AzureKv { vault, secret } => write!(f, "azure-kv://{vault}/{secret}"),
        }
    }
}

impl SecretRef {
    /// The scheme alone: what logs and metrics may name.
    pub fn scheme(&self) -> &'static str {
        match self {
            SecretRef::Local(_) => "local",
            SecretRef::Env(_) => "env",
            SecretRef::File(_) => "file",
            SecretRef::Exec(_) => "exec",
            SecretRef::AwsSm { .. } => "aws-sm",
            SecretRef::Vault { .. } => "vault",
            SecretRef::GcpSm(_) => "gcp-sm",
            SecretRef::AzureKv { .. } => "azure-kv",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_form_parses_and_prints_back() {
        for s in [
            "local:prod-main",
            "env:ANTHROPIC_API_KEY",
            "file:/run/secrets/claude",
            "exec:op read op://vault/claude/key",
            "aws-sm://prod/claude/api-key",
            "aws-sm://prod/claude#api_key",
            "vault://secret/claude/prod#api_key",
            "gcp-sm://projects/p1/secrets/claude",
            "azure-kv://myvault/claude-key",
        ] {
            let r: SecretRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn malformed_refs_are_errors() {
        for s in [
            "",
            "local:",
            "local:a/b",
            "env:",
            "vault://secret/claude",
            "gcp-sm://claude",
            "azure-kv://v",
            "s3://x",
            "sk-ant-api03-abc",
        ] {
            assert!(s.parse::<SecretRef>().is_err(), "{s}");
        }
    }
}
