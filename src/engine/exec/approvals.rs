//! The approvals guard: before the first change of a run (never of a
//! rollback, which incident response must not wait for), the approvals on
//! record must meet the runbook's requirement (`governance::policy`).

use super::Exec;
use super::sql::SqlFailure;
use crate::engine::{Mode, Outcome};
use crate::governance::hash::approval_hash;
use crate::governance::{policy, signature, store};

impl Exec<'_> {
    pub(super) async fn approvals_guard(&mut self) -> Result<(), Outcome> {
        // A rehearsal changes nothing and a rollback is incident response:
        // neither is held by approvals.
        if self.s.options.rehearse || !matches!(self.s.options.mode, Mode::Run { .. }) {
            return Ok(());
        }
        let rb = &self.s.runbook;
        let risk = rb
            .declared_risk
            .map_or(self.s.analysis.risk, |d| d.max(self.s.analysis.risk));
        let Some(req) = policy::requirement(
            rb,
            risk,
            self.s.options.env.as_deref(),
            self.s.options.emergency.is_some(),
        ) else {
            return Ok(());
        };
        let hash = approval_hash(rb);
        let id = rb.id.clone();
        let failed = |e: tokio_postgres::Error| {
            Outcome::Failed(format!(
                "cannot read pgpilot.approvals: {}",
                SqlFailure::from_pg(&e).message
            ))
        };
        let operator = store::session_user(self.client()).await.map_err(failed)?;
        let mut approvals = store::list(self.client(), &id).await.map_err(failed)?;
        let signers = rb
            .approvals
            .as_ref()
            .and_then(|a| a.allowed_signers.as_ref());
        signature::check_all(signers, &id, &mut approvals).await;
        let who = policy::Operator {
            role: &operator,
            principal: self.s.options.principal.as_deref(),
        };
        let verdict = policy::evaluate_as(&req, &hash, who, &approvals);
        // Approvers' names and comments are the database's text: made safe
        // where shown, like every other guard detail.
        let detail = crate::text::one_line(&verdict.explain(&hash));
        if !verdict.satisfied() {
            return self.guard("approvals", false, detail).await;
        }
        // The audit keeps the approvals in force in full (the change
        // record's "approved by"); the screen keeps its short line.
        let recorded = format!("approved:\n{}", verdict.in_force().join("\n"));
        self.guard_recorded("approvals", true, detail, recorded)
            .await
    }
}
