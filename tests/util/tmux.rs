//! A terminal for the tests: a tmux server of its own, a program in it,
//! keys sent with `send-keys`, the screen read with `capture-pane`, and
//! waits on the screen with deadlines (never fixed sleeps).

use super::WAIT;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 100x30 session.
    pub fn run(command: &str) -> Tmux {
        Tmux::run_sized(command, 100, 30)
    }

    /// Starts `command` in a detached session of `width` x `height`.
    pub fn run_sized(command: &str, width: u16, height: u16) -> Tmux {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "confab-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux is installed (make deps installs it)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with its colours and effects as escape sequences
    /// (`capture-pane -e`).
    pub fn screen_styled(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-e"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies every byte the program writes to its terminal from now on
    /// into `file` (`pipe-pane`), for what a screen capture does not keep
    /// (hyperlinks).
    pub fn record_output(&self, file: &std::path::Path) {
        let status = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "pipe-pane",
                "-O",
                "-t",
                "0",
                &format!("cat >> '{}'", file.display()),
            ])
            .status()
            .expect("pipe-pane");
        assert!(status.success(), "tmux pipe-pane failed");
    }

    /// Waits until `done(screen)` holds and returns that screen; fails
    /// the test with the screen after WAIT, saying what was awaited.
    pub fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("screen never showed {what}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the screen contains `text`.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("{text:?}"), |s| s.contains(text))
    }

    /// The pane's title (set by the program with OSC 2).
    pub fn title(&self) -> String {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "display-message",
                "-p",
                "-t",
                "0",
                "#{pane_title}",
            ])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Pastes `text` as a terminal does with bracketed paste on (tmux's
    /// paste-buffer -p brackets it when the program asked for that).
    pub fn paste(&self, text: &str) {
        let set = Command::new("tmux")
            .args(["-L", &self.socket, "set-buffer", "-b", "confab", text])
            .status()
            .expect("set-buffer");
        assert!(set.success());
        let paste = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "paste-buffer",
                "-p",
                "-d",
                "-b",
                "confab",
                "-t",
                "0",
            ])
            .status()
            .expect("paste-buffer");
        assert!(paste.success());
    }

    pub fn type_text(&self, text: &str) {
        // -l: literal, so words like "Enter" in the text are not keys.
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Whether the terminal bell rang in the (detached) session.
    pub fn bell_rang(&self) -> bool {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "display",
                "-p",
                "-t",
                "0",
                "#{window_bell_flag}",
            ])
            .output()
            .expect("tmux display");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
