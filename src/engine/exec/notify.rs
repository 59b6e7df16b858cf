//! `[notify]` for this session: the notifier started before the first
//! record, its first failed delivery shown as a warning on the driver's
//! event channel (the delivery thread sends it whenever it happens).

use super::Exec;
use crate::engine::EngineEvent;
use crate::pg::Severity;

impl Exec<'_> {
    pub(super) fn start_notifications(&mut self) {
        let Some(section) = self.s.runbook.notify.clone() else {
            return;
        };
        let events = self.io.events.clone();
        let show = Box::new(move |message: String| {
            let _ = events.send(EngineEvent::Notice {
                step: None,
                severity: Severity::Warning,
                message,
            });
        });
        if let Some(why) = self.s.recorder.start_notifier(&section, show) {
            self.warn(vec![why]);
        }
    }
}
