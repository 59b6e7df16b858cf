//! The colour theme, in one place.

use ratatui::style::{Color, Modifier, Style};

use crate::runbook::Risk;

use super::app::{LogLevel, StepState};

pub fn title() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}
pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}
pub fn focus_border() -> Style {
    Style::new().fg(Color::Cyan)
}
pub fn border() -> Style {
    Style::new().fg(Color::DarkGray)
}
pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}
pub fn banner_rehearsal() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}
pub fn banner_rollback() -> Style {
    Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}
pub fn danger() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}
pub fn warn() -> Style {
    Style::new().fg(Color::Yellow)
}
pub fn good() -> Style {
    Style::new().fg(Color::Green)
}
pub fn keyword() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}
pub fn string() -> Style {
    Style::new().fg(Color::Green)
}
pub fn executor() -> Style {
    Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
}

pub fn risk(r: Risk) -> Style {
    match r {
        Risk::Low => good(),
        Risk::Medium => warn(),
        Risk::High => danger(),
    }
}

pub fn state(s: &StepState) -> Style {
    match s {
        StepState::Pending => dim(),
        StepState::Running { .. } => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        StepState::Applied | StepState::Passed | StepState::Acknowledged | StepState::Rehearsed => {
            good()
        }
        StepState::Failed(_) => danger(),
        StepState::Skipped(_)
        | StepState::RolledBack
        | StepState::Stale(_)
        | StepState::InProgress
        | StepState::RollingBack => warn(),
    }
}

pub fn log(l: LogLevel) -> Style {
    match l {
        LogLevel::Info => Style::new(),
        LogLevel::Good => good(),
        LogLevel::Warn => warn(),
        LogLevel::Bad => danger(),
    }
}
