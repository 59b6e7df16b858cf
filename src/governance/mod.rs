//! The seeds' change governance, enforced where the change runs: approvals
//! bound to the exact runbook (`hash`, `store`), the requirement a run must
//! meet (`policy`), and the commands that record and list them (`cli`).

pub mod cli;
pub mod hash;
pub mod plan;
pub mod policy;
pub mod signature;
pub mod store;
pub mod window;
