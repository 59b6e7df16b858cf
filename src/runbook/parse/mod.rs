//! From TOML text to a [`Runbook`](super::Runbook), with every problem reported at its place.

mod step;

pub use step::{load, parse_str};
