//! What `plan` says about approvals: the hash approvals are bound to, and
//! what a run needs outside production and in it.

use serde::Serialize;

use super::hash::approval_hash;
use super::policy::{Requirement, Source, requirement, short};
use crate::check::Checked;

#[derive(Serialize)]
pub struct PlanApprovals {
    /// The hash `pgpilot approve` records (`governance::hash`).
    pub sha256: String,
    /// What a run needs in an environment other than production (`null`: nothing).
    pub required: Option<Requirement>,
    /// What a run with `--env production` needs.
    pub production: Option<Requirement>,
}

impl PlanApprovals {
    pub fn new(c: &Checked) -> PlanApprovals {
        let risk = c.effective_risk();
        PlanApprovals {
            sha256: approval_hash(&c.runbook),
            required: requirement(&c.runbook, risk, None, false),
            production: requirement(&c.runbook, risk, Some("production"), false),
        }
    }

    /// "approvals (sha256 3f2a…): technical, business by distinct roles; in production each at least 7d old".
    pub fn line(&self) -> String {
        let describe = |r: &Requirement| {
            let mut s = r.kinds.join(", ");
            if r.distinct_approvers && r.kinds.len() > 1 {
                s.push_str(" by distinct roles");
            }
            s.push_str(", none by the operator's own role");
            if r.signed {
                s.push_str(", each signed with a key in allowed_signers");
            }
            if r.source == Source::ChangeType {
                s.push_str(" (the seed's defaults by change type)");
            }
            if let Some(n) = r.notice {
                s.push_str(&format!(
                    ", each at least {} old",
                    crate::runbook::format_duration(n)
                ));
            }
            s
        };
        let what = match (&self.required, &self.production) {
            (None, None) => "none required".to_string(),
            (Some(r), Some(p)) if r == p => describe(r),
            (Some(r), Some(p)) => format!("{}; in production {}", describe(r), describe(p)),
            (None, Some(p)) => format!("none outside production; in production {}", describe(p)),
            (Some(r), None) => describe(r),
        };
        format!("approvals (sha256 {}…): {what}", short(&self.sha256))
    }
}
