//! pgpilot: a guide through PostgreSQL migration runbooks.
//!
//! Data flows one way: runbook file → [`runbook`] → [`analysis`] → engine →
//! UI and audit. Nothing a user or the server can cause may panic.
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
pub mod analysis;
pub mod audit;
pub mod backoff;
pub mod backup;
pub mod check;
pub mod check_live;
pub mod check_report;
pub mod cli;
pub mod demo;
pub mod diag;
pub mod engine;
pub mod exit;
pub mod forecast;
pub mod governance;
pub mod headless;
pub mod headless_progress;
pub mod migrations;
pub mod monitor;
pub mod monitor_cmd;
pub mod notify;
pub mod os_user;
pub mod pg;
pub mod plan;
pub mod regular_file;
pub mod restore;
pub mod runbook;
pub mod sandbox;
pub mod session;
pub mod status_cmd;
pub mod style;
pub mod suppress;
pub mod text;
pub mod tui;
