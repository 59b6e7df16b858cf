//! Resolving `--db` plus libpq's environment variables and defaults into a
//! [`ConnSpec`].

mod resolve;

pub use resolve::*;
