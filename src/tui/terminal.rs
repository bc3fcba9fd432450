//! The terminal: cursive's crossterm backend, with bracketed paste turned
//! on and mouse capture only when the user asks for it.
//!
//! Cursive's backend reads keys one by one and does not enable bracketed
//! paste, so a pasted newline was an Enter (a three-line paste sent two
//! messages and left the third in the input line). Here the backend's
//! drawing is kept and its input is read by [`Terminal::poll_event`]: a
//! paste arrives as one [`Event::Unknown`] tagged [`PASTE_TAG`] (cursive has
//! no paste event), which the input line turns into text or a question.
//! Without mouse capture the terminal's own selection (and URL clicking)
//! works, as in irssi; `mouse = true` in the settings turns it on.

use cursive::backend::Backend;
use cursive::event::{Event, Key, MouseButton, MouseEvent};
use cursive::{Vec2, XY};
use std::io::Write;
use std::time::Duration;

use crossterm::event::{
    self as cev, Event as CEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};

/// The bytes that start an [`Event::Unknown`] carrying pasted text.
pub const PASTE_TAG: &[u8] = b"\0confab-paste\0";

/// The pasted text an event carries, if it is a paste.
pub fn pasted(event: &Event) -> Option<String> {
    match event {
        Event::Unknown(bytes) => bytes
            .strip_prefix(PASTE_TAG)
            .map(|t| String::from_utf8_lossy(t).into_owned()),
        _ => None,
    }
}

/// Writes escape sequences of our own (title, bell, notifications) to the
/// terminal. Call it on the UI thread only, between frames, so it cannot
/// split a sequence cursive is writing.
pub fn write_raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// The terminal backend (see the module documentation).
pub struct Terminal {
    inner: Box<dyn Backend>,
    tty: std::fs::File,
    mouse: bool,
}

impl Terminal {
    /// Opens the terminal: raw mode and the alternate screen (cursive's
    /// backend), bracketed paste, and mouse capture if `mouse`.
    pub fn init(mouse: bool) -> std::io::Result<Box<dyn Backend>> {
        let inner = cursive::backends::crossterm::Backend::init()?;
        let mut tty = std::fs::OpenOptions::new().write(true).open("/dev/tty")?;
        crossterm::execute!(tty, cev::EnableBracketedPaste)?;
        if !mouse {
            crossterm::execute!(tty, cev::DisableMouseCapture)?;
        }
        Ok(Box::new(Terminal { inner, tty, mouse }))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Before the inner backend restores the rest of the terminal.
        let _ = crossterm::execute!(self.tty, cev::DisableBracketedPaste);
        let _ = self.tty.flush();
    }
}

impl Backend for Terminal {
    fn poll_event(&mut self) -> Option<Event> {
        loop {
            if !cev::poll(Duration::from_millis(1)).ok()? {
                return None;
            }
            let event = match cev::read().ok()? {
                CEvent::Paste(text) => {
                    let mut bytes = PASTE_TAG.to_vec();
                    bytes.extend_from_slice(text.as_bytes());
                    Some(Event::Unknown(bytes))
                }
                CEvent::Key(key) => key_event(key),
                CEvent::Resize(_, _) => Some(Event::WindowResize),
                CEvent::Mouse(m) if self.mouse => mouse_event(m),
                _ => None,
            };
            if event.is_some() {
                return event;
            }
        }
    }

    fn set_title(&mut self, title: String) {
        self.inner.set_title(title)
    }

    fn refresh(&mut self) {
        self.inner.refresh()
    }

    fn has_colors(&self) -> bool {
        self.inner.has_colors()
    }

    fn screen_size(&self) -> Vec2 {
        self.inner.screen_size()
    }

    fn move_to(&self, pos: Vec2) {
        self.inner.move_to(pos)
    }

    fn print(&self, text: &str) {
        self.inner.print(text)
    }

    fn clear(&self, color: cursive::theme::Color) {
        self.inner.clear(color)
    }

    fn set_color(&self, colors: cursive::theme::ColorPair) -> cursive::theme::ColorPair {
        self.inner.set_color(colors)
    }

    fn set_effect(&self, effect: cursive::theme::Effect) {
        self.inner.set_effect(effect)
    }

    fn unset_effect(&self, effect: cursive::theme::Effect) {
        self.inner.unset_effect(effect)
    }

    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }

    fn name(&self) -> &str {
        "crossterm (bracketed paste)"
    }
}

/// A key press as cursive names it.
fn key_event(key: KeyEvent) -> Option<Event> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    let m = key.modifiers - KeyModifiers::SHIFT;
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    if let KeyCode::Char(c) = key.code {
        return Some(if m == KeyModifiers::CONTROL {
            Event::CtrlChar(c)
        } else if m == KeyModifiers::ALT {
            Event::AltChar(c)
        } else {
            Event::Char(c)
        });
    }
    if key.code == KeyCode::BackTab {
        return Some(Event::Shift(Key::Tab));
    }
    let k = match key.code {
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Delete => Key::Del,
        KeyCode::Insert => Key::Ins,
        KeyCode::Enter => Key::Enter,
        KeyCode::Tab => Key::Tab,
        KeyCode::F(n) => Key::from_f(n),
        _ => return None,
    };
    let ctrl = m.contains(KeyModifiers::CONTROL);
    let alt = m.contains(KeyModifiers::ALT);
    Some(match (ctrl, alt, shift) {
        (true, true, _) => Event::CtrlAlt(k),
        (true, false, true) => Event::CtrlShift(k),
        (false, true, true) => Event::AltShift(k),
        (true, false, false) => Event::Ctrl(k),
        (false, true, false) => Event::Alt(k),
        (false, false, true) => Event::Shift(k),
        (false, false, false) => Event::Key(k),
    })
}

/// A mouse event (only with mouse capture on): clicks and the wheel.
fn mouse_event(m: cev::MouseEvent) -> Option<Event> {
    let button = |b: cev::MouseButton| match b {
        cev::MouseButton::Left => MouseButton::Left,
        cev::MouseButton::Right => MouseButton::Right,
        cev::MouseButton::Middle => MouseButton::Middle,
    };
    let event = match m.kind {
        MouseEventKind::Down(b) => MouseEvent::Press(button(b)),
        MouseEventKind::Up(b) => MouseEvent::Release(button(b)),
        MouseEventKind::Drag(b) => MouseEvent::Hold(button(b)),
        MouseEventKind::ScrollUp => MouseEvent::WheelUp,
        MouseEventKind::ScrollDown => MouseEvent::WheelDown,
        _ => return None,
    };
    Some(Event::Mouse {
        offset: XY::zero(),
        position: XY::new(usize::from(m.column), usize::from(m.row)),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_cursive_events() {
        let k = |code, mods| key_event(KeyEvent::new(code, mods));
        assert_eq!(
            k(KeyCode::Char('a'), KeyModifiers::NONE),
            Some(Event::Char('a'))
        );
        assert_eq!(
            k(KeyCode::Char('A'), KeyModifiers::SHIFT),
            Some(Event::Char('A'))
        );
        assert_eq!(
            k(KeyCode::Char('w'), KeyModifiers::CONTROL),
            Some(Event::CtrlChar('w'))
        );
        assert_eq!(
            k(KeyCode::Char('3'), KeyModifiers::ALT),
            Some(Event::AltChar('3'))
        );
        assert_eq!(k(KeyCode::Up, KeyModifiers::ALT), Some(Event::Alt(Key::Up)));
        assert_eq!(
            k(KeyCode::Enter, KeyModifiers::NONE),
            Some(Event::Key(Key::Enter))
        );
        assert_eq!(
            k(KeyCode::BackTab, KeyModifiers::SHIFT),
            Some(Event::Shift(Key::Tab))
        );
        assert_eq!(
            k(KeyCode::F(1), KeyModifiers::NONE),
            Some(Event::Key(Key::F1))
        );
    }

    #[test]
    fn a_paste_event_carries_its_text() {
        let mut bytes = PASTE_TAG.to_vec();
        bytes.extend_from_slice("one\ntwo".as_bytes());
        assert_eq!(pasted(&Event::Unknown(bytes)), Some("one\ntwo".to_owned()));
        assert_eq!(pasted(&Event::Unknown(b"\x1b[99~".to_vec())), None);
        assert_eq!(pasted(&Event::Char('x')), None);
    }
}
