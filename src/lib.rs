//! pgpilot: a guide through PostgreSQL migration runbooks.
pub mod analysis;
pub mod diag;
pub mod runbook;
pub mod sandbox;
