//! What a scan reports.

use keyward_detect::leak::Kind;
use secrecy::SecretString;
use serde::{Serialize, Serializer};

/// Where a finding was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A file in a working tree (possibly inside an archive: see `path`).
    File,
    /// A blob in git history.
    GitBlob,
    /// A commit message.
    CommitMessage,
    /// An annotated tag's message.
    TagMessage,
    /// A file staged for the next commit (the pre-commit hook).
    Staged,
}

/// Git facts about a finding from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitInfo {
    /// The commit (hex) that introduced the blob or carries the message.
    pub commit: String,
    /// Author date of that commit, RFC 3339 in UTC.
    pub author_date: String,
}

/// What the inventory says about a found secret (filled by a
/// [`FindingHandler`](crate::FindingHandler), e.g. `--check-inventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A keyward key that works right now.
    Live,
    /// A keyward key rotated out (past its grace window).
    RotatedOut,
    /// A keyward key that was revoked.
    Revoked,
    /// A keyward key that is suspended.
    Suspended,
    /// A keyward key past its expiry.
    Expired,
    /// One of the gateway's configured upstream (Anthropic) keys.
    Upstream,
    /// Not known to the inventory.
    Unknown,
}

/// Classification of one finding against the inventory, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub status: Status,
    /// `key_...` or `ups_...` identifier, never the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What was done about it (`revoked`, `marked-compromised`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// One secret found at one place.
///
/// `secret` is never serialized or displayed; it is there so that a
/// [`FindingHandler`](crate::FindingHandler) can compute the inventory's keyed
/// digest or revoke the key. Everything printed uses `fingerprint` and `redacted`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    #[serde(serialize_with = "kind_id")]
    pub kind: Kind,
    /// SHA-256 hex of the secret.
    pub fingerprint: String,
    /// First 12 and last 4 characters.
    pub redacted: String,
    /// Display path; inside archives `outer.zip!inner/file`; for messages
    /// `commit <sha>` or `tag <name>`.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column in Unicode scalar values.
    pub column: u64,
    /// Byte offset of the secret in the file (or archive member, blob, message).
    pub offset: u64,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub git: Option<GitInfo>,
    /// For history scans: whether the same secret is still in the current tree
    /// (HEAD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_current_tree: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(skip)]
    pub secret: SecretString,
}

fn kind_id<S: Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.id())
}

impl Finding {
    pub(crate) fn sort_key(&self) -> (&str, u64, u64, Option<&str>) {
        (&self.path, self.line, self.column, self.git.as_ref().map(|g| g.commit.as_str()))
    }
}
