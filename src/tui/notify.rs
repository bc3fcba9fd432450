//! Sound notifications: which events make a sound (the user's rules), and a
//! notifier thread that plays short tones made in code through rodio, or
//! rings the terminal bell when there is no audio device.
//!
//! The UI calls [`Notifier::play`], which never blocks: it hands the sound
//! to the notifier thread through a bounded channel and drops it if the
//! thread is busy. The thread plays at most one sound per second (bursts
//! are coalesced into the first).

use super::model::WindowId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Which events make a sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoundLevel {
    /// Nothing.
    Off,
    /// Direct messages and mentions of your name (the default).
    Mentions,
    /// Every message in every window not muted.
    All,
}

impl SoundLevel {
    /// Parses `off`, `mentions` or `all`.
    pub fn parse(s: &str) -> Option<SoundLevel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Some(SoundLevel::Off),
            "mentions" | "dms" => Some(SoundLevel::Mentions),
            "all" => Some(SoundLevel::All),
            _ => None,
        }
    }
}

/// The sounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    /// A direct message: two rising tones.
    DirectMessage,
    /// A mention of your name: three quick high tones.
    Mention,
    /// A file shared with you: one low tone.
    File,
    /// Any other message (level `all`): one soft short tone.
    Message,
}

/// The user's notification settings, kept in `~/.config/confab/config.toml`
/// under `[notifications]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyRules {
    /// Which events make a sound.
    pub sound: SoundLevel,
    /// Do not disturb: no sound at all, whatever `sound` says.
    pub dnd: bool,
    /// Muted windows, by label (`#random`, `@bob`).
    pub muted: BTreeSet<String>,
    /// Also ask the terminal for a desktop notification (OSC 777 and OSC
    /// 9, which terminals that lack them ignore) for mentions and direct
    /// messages.
    pub desktop: bool,
}

impl Default for NotifyRules {
    fn default() -> Self {
        NotifyRules {
            sound: SoundLevel::Mentions,
            dnd: false,
            muted: BTreeSet::new(),
            desktop: false,
        }
    }
}

/// What happened, as far as sounds care.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The window it landed in.
    pub window: &'a WindowId,
    /// Our own message (from another device).
    pub mine: bool,
    /// It mentions us.
    pub mention: bool,
    /// It shares a file.
    pub file: bool,
}

impl NotifyRules {
    /// The sound for an incoming message, if any.
    pub fn sound_for(&self, m: &Incoming<'_>) -> Option<Sound> {
        if m.mine || self.dnd || self.sound == SoundLevel::Off {
            return None;
        }
        if self.muted.contains(&m.window.label()) {
            return None;
        }
        let direct = matches!(m.window, WindowId::Direct(_));
        match (direct, m.mention, m.file) {
            (true, _, _) => Some(Sound::DirectMessage),
            (false, true, _) => Some(Sound::Mention),
            (false, false, true) if self.sound == SoundLevel::All => Some(Sound::File),
            (false, false, false) if self.sound == SoundLevel::All => Some(Sound::Message),
            _ => None,
        }
    }
}

impl NotifyRules {
    /// Whether `m` deserves a desktop notification: a mention or a direct
    /// message from someone else, in a window that is not muted, with
    /// `desktop` on and do-not-disturb off.
    pub fn desktop_for(&self, m: &Incoming<'_>) -> bool {
        self.desktop
            && !m.mine
            && !self.dnd
            && !self.muted.contains(&m.window.label())
            && (m.mention || matches!(m.window, WindowId::Direct(_)))
    }
}

/// The escape sequences that ask a terminal for a desktop notification:
/// OSC 777 (rxvt, foot, kitty, WezTerm...) and OSC 9 (iTerm2, Windows
/// Terminal...). `title` and `text` are made single-line and stripped of
/// control characters, so nothing the sender wrote can end the sequence.
pub fn desktop_notification(title: &str, text: &str) -> Vec<u8> {
    let clean = |s: &str| -> String {
        crate::text::for_terminal_line(s)
            .chars()
            .filter(|c| *c != ';' && *c != '\u{fffd}')
            .take(120)
            .collect()
    };
    let (title, text) = (clean(title), clean(text));
    format!("\x1b]777;notify;{title};{text}\x07\x1b]9;{title}: {text}\x07").into_bytes()
}

/// At most one sound per `gap`: bursts are coalesced.
#[derive(Debug, Clone)]
pub struct Coalescer {
    gap: Duration,
    last: Option<Instant>,
}

impl Coalescer {
    /// One sound per `gap` at most.
    pub fn new(gap: Duration) -> Coalescer {
        Coalescer { gap, last: None }
    }

    /// Whether a sound may play at `now` (and records it if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.gap => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// Where sounds go.
pub enum Output {
    /// An audio device.
    #[cfg(feature = "audio")]
    Audio(rodio::MixerDeviceSink),
    /// No device: ring the terminal bell with this function (which the TUI
    /// runs on its own thread, between frames).
    Bell(Box<dyn Fn() + Send>),
}

impl Output {
    /// Whether sounds are real sounds (not the bell).
    pub fn is_audio(&self) -> bool {
        !matches!(self, Output::Bell(_))
    }
}

/// Opens the default audio device, with stderr silenced meanwhile (ALSA
/// prints to it when there is no device, which would garble the screen).
/// `None` when there is no device or no audio support.
#[cfg(feature = "audio")]
pub fn open_audio() -> Option<rodio::MixerDeviceSink> {
    let _quiet = StderrSilenced::new();
    let mut sink = rodio::DeviceSinkBuilder::open_default_sink().ok()?;
    sink.log_on_drop(false);
    Some(sink)
}

/// Without audio support compiled in there is never a device.
#[cfg(not(feature = "audio"))]
pub fn open_audio() -> Option<()> {
    None
}

/// Points stderr at /dev/null until dropped.
struct StderrSilenced {
    saved: libc::c_int,
}

impl StderrSilenced {
    #[cfg_attr(not(feature = "audio"), allow(dead_code))]
    fn new() -> Option<StderrSilenced> {
        // SAFETY: plain descriptor calls; every result is checked and the
        // saved descriptor is restored in Drop.
        unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            if saved < 0 {
                return None;
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null < 0 {
                libc::close(saved);
                return None;
            }
            libc::dup2(null, libc::STDERR_FILENO);
            libc::close(null);
            Some(StderrSilenced { saved })
        }
    }
}

impl Drop for StderrSilenced {
    fn drop(&mut self) {
        // SAFETY: restores the descriptor saved in new().
        unsafe {
            libc::dup2(self.saved, libc::STDERR_FILENO);
            libc::close(self.saved);
        }
    }
}

/// The UI's handle on the notifier thread.
#[derive(Clone)]
pub struct Notifier {
    tx: SyncSender<Sound>,
}

impl Notifier {
    /// Starts the notifier thread on `output`.
    pub fn start(output: Output) -> std::io::Result<Notifier> {
        let (tx, rx) = sync_channel(4);
        std::thread::Builder::new()
            .name("notifier".into())
            .spawn(move || run(output, &rx))?;
        Ok(Notifier { tx })
    }

    /// Asks for a sound; never blocks (a full queue drops it, which the
    /// coalescing would do anyway).
    pub fn play(&self, sound: Sound) {
        match self.tx.try_send(sound) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn run(output: Output, rx: &Receiver<Sound>) {
    let mut coalescer = Coalescer::new(Duration::from_secs(1));
    #[cfg(feature = "audio")]
    let player = match &output {
        Output::Audio(sink) => Some(rodio::Player::connect_new(sink.mixer())),
        Output::Bell(_) => None,
    };
    while let Ok(sound) = rx.recv() {
        if !coalescer.allow(Instant::now()) {
            continue;
        }
        match &output {
            #[cfg(feature = "audio")]
            Output::Audio(_) => {
                if let Some(player) = &player {
                    play_tones(player, sound);
                }
            }
            Output::Bell(ring) => {
                log::trace!("bell for {sound:?}");
                ring();
            }
        }
    }
}

/// The tones of each sound: (frequency Hz, milliseconds) pairs.
pub fn tones(sound: Sound) -> &'static [(f32, u64)] {
    match sound {
        Sound::DirectMessage => &[(660.0, 90), (880.0, 140)],
        Sound::Mention => &[(1046.5, 60), (1046.5, 60), (1318.5, 90)],
        Sound::File => &[(440.0, 200)],
        Sound::Message => &[(784.0, 50)],
    }
}

#[cfg(feature = "audio")]
fn play_tones(player: &rodio::Player, sound: Sound) {
    use rodio::Source;
    use rodio::source::SineWave;
    for (freq, ms) in tones(sound) {
        player.append(
            SineWave::new(*freq)
                .take_duration(Duration::from_millis(*ms))
                .fade_in(Duration::from_millis(5))
                .amplify(0.15),
        );
        // A short gap between tones.
        player.append(
            SineWave::new(0.0)
                .take_duration(Duration::from_millis(25))
                .amplify(0.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn msg(window: &WindowId, mention: bool) -> Incoming<'_> {
        Incoming {
            window,
            mine: false,
            mention,
            file: false,
        }
    }

    #[test]
    fn desktop_notifications_are_for_mentions_and_dms_and_cannot_be_escaped() {
        let rules = NotifyRules {
            desktop: true,
            ..NotifyRules::default()
        };
        let room = WindowId::Room("general".into());
        let dm = WindowId::Direct("bob".into());
        let m = |window, mention| Incoming {
            window,
            mine: false,
            mention,
            file: false,
        };
        assert!(rules.desktop_for(&m(&dm, false)));
        assert!(rules.desktop_for(&m(&room, true)));
        assert!(!rules.desktop_for(&m(&room, false)));
        assert!(!NotifyRules::default().desktop_for(&m(&dm, false)));
        let seq = desktop_notification("bob", "hi\x07\x1b]0;pwned\x07; there");
        let text = String::from_utf8(seq).unwrap();
        assert!(text.starts_with("\x1b]777;notify;bob;hi"), "{text:?}");
        // Only our own BEL and ESC bytes: two sequences, each ended once.
        assert_eq!(text.matches('\x07').count(), 2, "{text:?}");
        assert_eq!(text.matches('\x1b').count(), 2, "{text:?}");
    }

    #[test]
    fn default_rules_sound_for_dms_and_mentions_only() {
        let rules = NotifyRules::default();
        let room = WindowId::Room("general".into());
        let dm = WindowId::Direct("bob".into());
        assert_eq!(
            rules.sound_for(&msg(&dm, false)),
            Some(Sound::DirectMessage)
        );
        assert_eq!(rules.sound_for(&msg(&room, true)), Some(Sound::Mention));
        assert_eq!(rules.sound_for(&msg(&room, false)), None);
        let mine = Incoming {
            mine: true,
            ..msg(&dm, true)
        };
        assert_eq!(rules.sound_for(&mine), None, "never for our own messages");
    }

    #[test]
    fn mute_dnd_and_levels_silence_as_configured() {
        let room = WindowId::Room("general".into());
        let dm = WindowId::Direct("bob".into());
        let mut rules = NotifyRules::default();
        rules.muted.insert("#general".into());
        assert_eq!(rules.sound_for(&msg(&room, true)), None, "muted room");
        assert_eq!(
            rules.sound_for(&msg(&dm, false)),
            Some(Sound::DirectMessage)
        );
        rules.dnd = true;
        assert_eq!(rules.sound_for(&msg(&dm, false)), None, "do not disturb");
        let all = NotifyRules {
            sound: SoundLevel::All,
            ..NotifyRules::default()
        };
        assert_eq!(all.sound_for(&msg(&room, false)), Some(Sound::Message));
        let file = Incoming {
            file: true,
            ..msg(&room, false)
        };
        assert_eq!(all.sound_for(&file), Some(Sound::File));
        let off = NotifyRules {
            sound: SoundLevel::Off,
            ..NotifyRules::default()
        };
        assert_eq!(off.sound_for(&msg(&dm, true)), None);
        assert_eq!(SoundLevel::parse("ALL"), Some(SoundLevel::All));
        assert_eq!(SoundLevel::parse("loud"), None);
    }

    #[test]
    fn bursts_are_coalesced_to_one_sound_per_second() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(1));
        assert!(c.allow(t0));
        assert!(!c.allow(t0 + Duration::from_millis(300)));
        assert!(!c.allow(t0 + Duration::from_millis(999)));
        assert!(c.allow(t0 + Duration::from_millis(1000)));
    }

    /// As on CI or over ssh: no audio device, so the bell rings, once per
    /// coalesced burst, and nothing is printed.
    #[test]
    fn without_an_audio_device_the_bell_rings_once_per_burst() {
        let device = open_audio();
        let rings = Arc::new(AtomicUsize::new(0));
        let r = rings.clone();
        let output = match device {
            #[cfg(feature = "audio")]
            Some(sink) => Output::Audio(sink),
            #[allow(unreachable_patterns)]
            _ => Output::Bell(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })),
        };
        let audio = output.is_audio();
        let notifier = Notifier::start(output).unwrap();
        for _ in 0..3 {
            notifier.play(Sound::Mention);
        }
        std::thread::sleep(Duration::from_millis(300));
        if audio {
            // A machine with a sound card: the bell path is not taken.
            assert_eq!(rings.load(Ordering::SeqCst), 0);
        } else {
            assert_eq!(rings.load(Ordering::SeqCst), 1, "three requests, one bell");
        }
    }

    #[test]
    fn every_sound_has_short_tones() {
        for s in [
            Sound::DirectMessage,
            Sound::Mention,
            Sound::File,
            Sound::Message,
        ] {
            let total: u64 = tones(s).iter().map(|t| t.1).sum();
            assert!(total > 0 && total <= 400, "{s:?}");
        }
    }
}
