//! A terminal in tmux for end-to-end tests of the TUI: keys in, screen read back.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tmux session running one command; killed when dropped.
pub struct Tmux {
    name: String,
}

impl Tmux {
    /// A 160×45 terminal running `cmd`.
    pub fn start(cmd: &str) -> Tmux {
        Tmux::sized(cmd, 160, 45)
    }

    /// A `width`×`height` terminal running `cmd`; each session has a name of its own.
    pub fn sized(cmd: &str, width: u16, height: u16) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pgpilot-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (width, height) = (width.to_string(), height.to_string());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &width,
                "-y",
                &height,
                cmd,
            ])
            .status()
            .expect("tmux (scripts/setup installs it)")
            .success();
        assert!(ok, "tmux new-session failed");
        Tmux { name }
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend_from_slice(keys);
        assert!(
            Command::new("tmux")
                .args(&args)
                .status()
                .expect("send-keys")
                .success()
        );
    }

    pub fn text(&self, text: &str) {
        assert!(
            Command::new("tmux")
                .args(["send-keys", "-t", &self.name, "-l", text])
                .status()
                .expect("send-keys")
                .success()
        );
    }

    /// The screen once it shows `what` (30 s at most, then the test fails with the screen).
    pub fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what:?} on screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}
