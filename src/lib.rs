//! pgpilot: a guide through PostgreSQL migration runbooks.
pub mod analysis;
pub mod check;
pub mod cli;
pub mod diag;
pub mod plan;
pub mod runbook;
pub mod sandbox;
pub mod style;
