//! Approvals signed with the approver's SSH key, git's model: `pgpilot
//! approve --sign-with KEY` signs a canonical message with
//! `ssh-keygen -Y sign -n pgpilot-approval`, and an approval counts for a
//! runbook that names `[approvals] allowed_signers` only when
//! `ssh-keygen -Y verify` accepts it against that file. A superuser can
//! write any row into `pgpilot.approvals`; without the approver's private
//! key it cannot write a signature that verifies.
//!
//! ssh-keygen runs with an argument vector (no shell), the message on its
//! standard input, and a time limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::policy::Approval;
use crate::runbook::AllowedSigners;

/// The namespace of every pgpilot approval signature (ssh-keygen's `-n`),
/// so a signature made for another purpose (a git commit, a file) is
/// never taken for an approval.
pub const NAMESPACE: &str = "pgpilot-approval";

/// Signing may wait for the key's passphrase at the terminal.
const SIGN_LIMIT: Duration = Duration::from_secs(120);
/// Verifying reads two small files.
const VERIFY_LIMIT: Duration = Duration::from_secs(10);

/// The program, found on PATH (Debian and Ubuntu: package openssh-client).
const SSH_KEYGEN: &str = "ssh-keygen";

/// What a signed approval says, exactly as signed and as verified: each
/// field on its own line, none of which may hold a line break.
pub fn message(runbook_id: &str, sha256: &str, kind: &str, principal: &str, at: &str) -> String {
    format!(
        "pgpilot-approval-v1\nrunbook: {runbook_id}\nsha256: {sha256}\nkind: {kind}\nprincipal: {principal}\ntime: {at}\n"
    )
}

/// A principal is an identity of the allowed-signers file, usually an
/// e-mail address: one word without spaces, commas or control
/// characters, not starting with `-` (it is passed as an argument).
pub fn valid_principal(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && !p.starts_with('-')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-'))
}

/// Whether an approval's signature was checked, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum SignatureCheck {
    /// The row carries no signature.
    #[default]
    Unsigned,
    /// Signed, but the runbook names no allowed-signers file to check it
    /// against.
    Unchecked,
    /// ssh-keygen accepted it for the principal, against allowed_signers.
    Verified,
    /// ssh-keygen refused it (wrong key, another message, a principal the
    /// file does not list), with its reason.
    Invalid(String),
}

impl SignatureCheck {
    /// "signed by alice@example.com, verified" and the like.
    pub fn describe(&self, principal: Option<&str>) -> String {
        let by = principal.map(|p| format!(" by {p}")).unwrap_or_default();
        match self {
            SignatureCheck::Unsigned => "unsigned".into(),
            SignatureCheck::Unchecked => format!("signed{by}, not checked (no allowed_signers)"),
            SignatureCheck::Verified => format!("signed{by}, verified"),
            SignatureCheck::Invalid(why) => format!("signature{by} does not verify: {why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot run ssh-keygen: {0} (install openssh-client)")]
    Spawn(std::io::Error),
    #[error("ssh-keygen did not finish within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("ssh-keygen refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

/// The principal a key names in the comment of its `.pub` file
/// (`ssh-ed25519 AAAA… alice@example.com`).
pub fn principal_of_key(key: &Path) -> Result<String, SignError> {
    let public = if key.extension().is_some_and(|e| e == "pub") {
        key.to_path_buf()
    } else {
        let mut p = key.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    };
    let text = std::fs::read_to_string(&public).map_err(|e| {
        SignError::Other(format!(
            "cannot read {} for the key's comment: {e}; give --principal",
            public.display()
        ))
    })?;
    let comment = text.split_whitespace().nth(2).unwrap_or_default();
    if valid_principal(comment) {
        Ok(comment.to_string())
    } else {
        Err(SignError::Other(format!(
            "the comment of {} is no principal; give --principal (e.g. alice@example.com)",
            public.display()
        )))
    }
}

/// Runs ssh-keygen with `args`, `input` on its standard input, within
/// `limit`; its standard output, or why not.
async fn ssh_keygen(
    args: &[&std::ffi::OsStr],
    input: &str,
    limit: Duration,
) -> Result<Vec<u8>, SignError> {
    let mut child = tokio::process::Command::new(SSH_KEYGEN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(SignError::Spawn)?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(|e| SignError::Other(format!("cannot write to ssh-keygen: {e}")))?;
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| SignError::Other(format!("ssh-keygen: {e}")))
    };
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| SignError::Timeout(limit))??;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        // ssh-keygen says why on stderr, or only "Could not verify
        // signature." on stdout.
        let said = [&out.stderr, &out.stdout]
            .into_iter()
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        let line = crate::text::one_line(&said);
        Err(SignError::Refused(if line.is_empty() {
            format!("exited with {}", out.status)
        } else {
            line
        }))
    }
}

/// Signs `message` with the private key `key` (or, given a `.pub` file,
/// the matching key in ssh-agent); the armored signature.
pub async fn sign(key: &Path, message: &str) -> Result<String, SignError> {
    let out = ssh_keygen(
        &[
            "-Y".as_ref(),
            "sign".as_ref(),
            "-n".as_ref(),
            NAMESPACE.as_ref(),
            "-f".as_ref(),
            key.as_os_str(),
        ],
        message,
        SIGN_LIMIT,
    )
    .await?;
    String::from_utf8(out).map_err(|_| SignError::Other("ssh-keygen wrote no text".into()))
}

/// Whether `signature` is `principal`'s signature of `message` by a key
/// the allowed-signers text lists for that principal and this namespace.
pub async fn verify(
    signers: &AllowedSigners,
    principal: &str,
    signature: &str,
    message: &str,
) -> SignatureCheck {
    if !valid_principal(principal) {
        return SignatureCheck::Invalid("the principal is not a valid identity".into());
    }
    let files = tempfile::tempdir().and_then(|dir| {
        std::fs::write(dir.path().join("allowed_signers"), &signers.text)?;
        std::fs::write(dir.path().join("approval.sig"), signature)?;
        Ok(dir)
    });
    let dir = match files {
        Ok(d) => d,
        Err(e) => return SignatureCheck::Invalid(format!("cannot write a temporary file: {e}")),
    };
    let allowed = dir.path().join("allowed_signers");
    let sig = dir.path().join("approval.sig");
    let result = ssh_keygen(
        &[
            "-Y".as_ref(),
            "verify".as_ref(),
            "-f".as_ref(),
            allowed.as_os_str(),
            "-I".as_ref(),
            principal.as_ref(),
            "-n".as_ref(),
            NAMESPACE.as_ref(),
            "-s".as_ref(),
            sig.as_os_str(),
        ],
        message,
        VERIFY_LIMIT,
    )
    .await;
    match result {
        Ok(_) => SignatureCheck::Verified,
        Err(SignError::Refused(why)) => SignatureCheck::Invalid(format!(
            "no key allowed_signers lists for {principal} signed this runbook version, kind and time (ssh-keygen: {why})"
        )),
        Err(e) => SignatureCheck::Invalid(e.to_string()),
    }
}

/// Checks the signature of every approval against `signers` when the
/// runbook names them, filling in each approval's `signature_check`. The
/// message is rebuilt from the row (which `policy` compares with the
/// runbook's current hash): a signature of another runbook version, kind,
/// principal or time does not verify.
pub async fn check_all(
    signers: Option<&AllowedSigners>,
    runbook_id: &str,
    approvals: &mut [Approval],
) {
    for a in approvals.iter_mut() {
        let (Some(principal), Some(signature), Some(at)) = (
            a.principal.clone(),
            a.signature.clone(),
            a.signed_at.clone(),
        ) else {
            a.signature_check = SignatureCheck::Unsigned;
            continue;
        };
        a.signature_check = match signers {
            None => SignatureCheck::Unchecked,
            Some(s) => {
                let m = message(runbook_id, &a.runbook_sha256, &a.kind, &principal, &at);
                verify(s, &principal, &signature, &m).await
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_single_safe_words() {
        assert!(valid_principal("alice@example.com"));
        assert!(valid_principal("bob.smith+dba@corp-1.example"));
        for bad in ["", "-I", "a b", "a,b", "a\nb", "*", "alice@example.com\n"] {
            assert!(!valid_principal(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_message_binds_runbook_hash_kind_principal_and_time() {
        let m = message(
            "r",
            "abc",
            "technical",
            "alice@example.com",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            m,
            "pgpilot-approval-v1\nrunbook: r\nsha256: abc\nkind: technical\nprincipal: alice@example.com\ntime: 2026-01-01T00:00:00Z\n"
        );
    }
}
