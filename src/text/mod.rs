//! Text that leaves the program: passwords removed ([`redact`]) and control
//! characters made visible ([`terminal`]) — one mechanism each, used by
//! every output (terminal lines, the TUI, JSON, CSV, markdown, the audit).

pub mod redact;
pub mod terminal;

pub use redact::redact;
pub use terminal::{
    csv_cell, for_terminal, json_safe, markdown_code, markdown_fence, markdown_text, one_line,
};
