//! Per-statement facts, split by statement family.

mod table;

pub use table::{Facts, classify};
