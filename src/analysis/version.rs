//! The PostgreSQL major version the analysis assumes. pg_query parses
//! PostgreSQL 18's grammar while targets run older servers, so advice that
//! depends on the version (REINDEX CONCURRENTLY from 12, DETACH PARTITION
//! CONCURRENTLY from 14, …) follows the target's version, and syntax the
//! target lacks is a finding.

use serde::Serialize;

/// The oldest major version pgpilot analyses for.
pub const OLDEST: u32 = 10;
/// The newest: the grammar pg_query parses. Assumed when nothing says
/// otherwise, so nothing is reported as missing from an unknown target.
pub const NEWEST: u32 = 18;

/// Where the assumed version came from, from the strongest to the weakest:
/// the server itself (`check --db`), `--pg-version`, the runbook's
/// `[target] server_version`, or the default ([`NEWEST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionSource {
    Server,
    Flag,
    Runbook,
    Default,
}

impl VersionSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            VersionSource::Server => "server",
            VersionSource::Flag => "flag",
            VersionSource::Runbook => "runbook",
            VersionSource::Default => "default",
        }
    }

    /// Where it came from, in a word or two, for finding messages.
    pub const fn label(self) -> &'static str {
        match self {
            VersionSource::Server => "the server",
            VersionSource::Flag => "--pg-version",
            VersionSource::Runbook => "[target] server_version",
            VersionSource::Default => "the default",
        }
    }

    /// Where it came from, in words, for the text output.
    pub const fn described(self) -> &'static str {
        match self {
            VersionSource::Server => "the server's version (--db)",
            VersionSource::Flag => "--pg-version",
            VersionSource::Runbook => "[target] server_version",
            VersionSource::Default => {
                "the newest supported: no --db, --pg-version or [target] server_version says otherwise"
            }
        }
    }
}

/// The major version the analysis assumes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetVersion {
    pub major: u32,
    pub source: VersionSource,
}

impl Default for TargetVersion {
    fn default() -> Self {
        TargetVersion {
            major: NEWEST,
            source: VersionSource::Default,
        }
    }
}

impl TargetVersion {
    /// Whether the target has what PostgreSQL `since` introduced.
    pub fn has(self, since: u32) -> bool {
        self.major >= since
    }
}

/// The PostgreSQL version a runbook is analysed for: `known` (the server's,
/// or `--pg-version`) over the runbook's `[target] server_version` over the
/// default, the newest supported.
pub fn target_version(
    runbook: &crate::runbook::Runbook,
    known: Option<TargetVersion>,
) -> TargetVersion {
    known
        .or_else(|| {
            runbook
                .target
                .server_version
                .as_ref()
                .map(|(major, _)| TargetVersion {
                    major: *major,
                    source: VersionSource::Runbook,
                })
        })
        .unwrap_or_default()
}

/// A major version as written by a user: `13`, or `9.6`-style rejected.
pub fn parse_major(text: &str) -> Result<u32, String> {
    let major: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a PostgreSQL major version (a number such as 16)"))?;
    supported(major)
}

/// `major` when pgpilot analyses for it, else why not.
pub fn supported(major: u32) -> Result<u32, String> {
    if (OLDEST..=NEWEST).contains(&major) {
        Ok(major)
    } else {
        Err(format!(
            "PostgreSQL {major} is not supported: pgpilot analyses for PostgreSQL {OLDEST} to {NEWEST}"
        ))
    }
}

/// The major version in `server_version_num` (160004 → 16).
pub fn major_of_num(num: i64) -> u32 {
    u32::try_from(num / 10_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_are_read_and_bounded() {
        assert_eq!(parse_major("13"), Ok(13));
        assert!(parse_major("9").unwrap_err().contains("not supported"));
        assert!(parse_major("19").unwrap_err().contains("10 to 18"));
        assert!(parse_major("13.2").unwrap_err().contains("major version"));
        assert_eq!(major_of_num(150_004), 15);
        assert_eq!(major_of_num(100_023), 10);
    }
}
