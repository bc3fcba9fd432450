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
//!
//! **Hyperlinks.** Web addresses in messages become OSC 8 hyperlinks, so a
//! terminal that knows them (kitty, iTerm2, GNOME's VTE, Windows Terminal,
//! WezTerm, foot) opens the whole address on a click even where wrapping
//! cut it in two. Cursive draws cell by cell from a buffer and counts an
//! escape sequence inside a string as text, so links cannot be drawn as
//! text. Instead the view draws an address underlined in the link colour,
//! [`set_links`] names the addresses on screen, and this backend keeps a
//! copy of the screen ([`Shadow`]): when a frame ends, every underlined
//! run of cells that changed and belongs to one of those addresses is
//! drawn again, the same cells in the same style, between OSC 8's opening
//! and closing sequences. A terminal that does not know OSC 8 ignores
//! them; `hyperlinks = false` in the settings turns this off.

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

thread_local! {
    /// The web addresses on screen now, which underlined runs of cells may
    /// belong to. Set by the UI thread when it renders the shown window and
    /// read by this backend, which cursive calls on that same thread.
    static LINKS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Names the web addresses the screen shows (see the module
/// documentation); underlined text that is part of none stays plain. Call
/// it on the UI thread.
pub fn set_links(urls: Vec<String>) {
    LINKS.with(|links| *links.borrow_mut() = urls);
}

/// The terminal backend (see the module documentation).
pub struct Terminal {
    inner: Box<dyn Backend>,
    tty: Option<std::fs::File>,
    mouse: bool,
    /// The copy of the screen that finds hyperlink cells (`None`: off).
    shadow: Option<std::cell::RefCell<Shadow>>,
}

impl Terminal {
    /// Opens the terminal: raw mode and the alternate screen (cursive's
    /// backend), bracketed paste, mouse capture if `mouse`, OSC 8
    /// hyperlinks if `hyperlinks`.
    pub fn init(mouse: bool, hyperlinks: bool) -> std::io::Result<Box<dyn Backend>> {
        let inner = cursive::backends::crossterm::Backend::init()?;
        let mut tty = std::fs::OpenOptions::new().write(true).open("/dev/tty")?;
        crossterm::execute!(tty, cev::EnableBracketedPaste)?;
        if !mouse {
            crossterm::execute!(tty, cev::DisableMouseCapture)?;
        }
        Ok(Box::new(Terminal::wrap(
            inner,
            Some(tty),
            mouse,
            hyperlinks,
        )))
    }

    fn wrap(
        inner: Box<dyn Backend>,
        tty: Option<std::fs::File>,
        mouse: bool,
        hyperlinks: bool,
    ) -> Terminal {
        Terminal {
            inner,
            tty,
            mouse,
            shadow: hyperlinks.then(|| std::cell::RefCell::new(Shadow::default())),
        }
    }
}

/// One cell of the [`Shadow`].
#[derive(Debug, Clone, Default)]
struct ShadowCell {
    /// What was printed there (empty: nothing, or the right half of a wide
    /// character).
    text: String,
    colors: Option<cursive::theme::ColorPair>,
    /// Effects as a bit set (`1 << effect`).
    effects: u8,
    /// Printed during the frame being drawn.
    dirty: bool,
}

/// What the terminal shows, cell by cell, and the style cursive has set,
/// as seen through the backend calls.
#[derive(Debug, Default)]
struct Shadow {
    size: Vec2,
    cells: Vec<ShadowCell>,
    pos: Vec2,
    colors: Option<cursive::theme::ColorPair>,
    effects: u8,
}

const EFFECTS: [cursive::theme::Effect; 8] = {
    use cursive::theme::Effect::*;
    [
        Simple,
        Reverse,
        Dim,
        Bold,
        Italic,
        Strikethrough,
        Underline,
        Blink,
    ]
};

fn effect_bit(effect: cursive::theme::Effect) -> u8 {
    1 << (effect as u8)
}

impl Shadow {
    fn resize(&mut self, size: Vec2) {
        if size != self.size {
            self.size = size;
            self.cells = vec![ShadowCell::default(); size.x * size.y];
        }
    }

    fn print(&mut self, text: &str) {
        use unicode_width::UnicodeWidthStr;
        let width = text.width();
        let Vec2 { x, y } = self.pos;
        if x < self.size.x && y < self.size.y {
            let cell = &mut self.cells[y * self.size.x + x];
            cell.text.clear();
            cell.text.push_str(text);
            cell.colors = self.colors;
            cell.effects = self.effects;
            cell.dirty = true;
            // The right half of a wide character.
            if width == 2 && x + 1 < self.size.x {
                let next = &mut self.cells[y * self.size.x + x + 1];
                next.text.clear();
                next.colors = self.colors;
                next.effects = self.effects;
                next.dirty = true;
            }
        }
        self.pos.x += width;
    }

    /// The runs of underlined cells that changed in this frame and belong
    /// to a known address: `(first cell, cells, address)`.
    fn changed_links(&self, links: &[String]) -> Vec<(Vec2, usize, String)> {
        let underline = effect_bit(cursive::theme::Effect::Underline);
        let mut found = Vec::new();
        for y in 0..self.size.y {
            let row = &self.cells[y * self.size.x..(y + 1) * self.size.x];
            let mut x = 0;
            while x < row.len() {
                if row[x].effects & underline == 0 {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < row.len() && row[x].effects & underline != 0 {
                    x += 1;
                }
                let run = &row[start..x];
                if !run.iter().any(|c| c.dirty) {
                    continue;
                }
                let text: String = run.iter().map(|c| c.text.as_str()).collect();
                if let Some(url) = link_of(&text, links) {
                    found.push((Vec2::new(start, y), x - start, url.to_owned()));
                }
            }
        }
        found
    }
}

/// The address a run of link text belongs to: the one it is, else the one
/// it starts or ends (an address wrapping cut), else one it is inside.
fn link_of<'a>(text: &str, links: &'a [String]) -> Option<&'a str> {
    if text.is_empty() {
        return None;
    }
    let pick = |test: &dyn Fn(&str) -> bool| links.iter().find(|l| test(l)).map(String::as_str);
    pick(&|l| l == text)
        .or_else(|| pick(&|l| l.starts_with(text) || l.ends_with(text)))
        .or_else(|| pick(&|l| l.contains(text)))
}

/// OSC 8's opening sequence for `url` (the caller knows it is printable
/// ASCII: [`crate::text::urls`] finds only such addresses). The `id`
/// groups the pieces of a wrapped address, so a terminal highlights them
/// together.
fn osc8_open(url: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    format!("\x1b]8;id=confab{:x};{url}\x1b\\", h.finish() & 0xffff_ffff)
}

/// OSC 8's closing sequence.
const OSC8_CLOSE: &str = "\x1b]8;;\x1b\\";

impl Terminal {
    /// Draws the changed link runs again as hyperlinks (module docs), then
    /// puts back the style cursive had set.
    fn draw_links(&self) {
        let Some(shadow) = &self.shadow else {
            return;
        };
        let mut shadow = shadow.borrow_mut();
        let runs = LINKS.with(|links| shadow.changed_links(&links.borrow()));
        if !runs.is_empty() {
            let (mut colors, mut effects) = (shadow.colors, shadow.effects);
            for (start, len, url) in &runs {
                // Only printable ASCII may go into the sequence.
                if !url.bytes().all(|b| b.is_ascii_graphic()) {
                    continue;
                }
                self.inner.move_to(*start);
                self.inner.print(&osc8_open(url));
                let first = start.y * shadow.size.x + start.x;
                for cell in &shadow.cells[first..first + len] {
                    if cell.colors != colors {
                        if let Some(c) = cell.colors {
                            self.inner.set_color(c);
                        }
                        colors = cell.colors;
                    }
                    self.set_effects(effects, cell.effects);
                    effects = cell.effects;
                    if !cell.text.is_empty() {
                        self.inner.print(&cell.text);
                    }
                }
                self.inner.print(OSC8_CLOSE);
            }
            // Back to the style cursive believes is set.
            if colors != shadow.colors
                && let Some(c) = shadow.colors
            {
                self.inner.set_color(c);
            }
            self.set_effects(effects, shadow.effects);
            let pos = shadow.pos;
            self.inner.move_to(pos);
        }
        for cell in &mut shadow.cells {
            cell.dirty = false;
        }
    }

    fn set_effects(&self, from: u8, to: u8) {
        for effect in EFFECTS {
            let bit = effect_bit(effect);
            if to & bit != 0 && from & bit == 0 {
                self.inner.set_effect(effect);
            } else if to & bit == 0 && from & bit != 0 {
                self.inner.unset_effect(effect);
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Before the inner backend restores the rest of the terminal.
        if let Some(tty) = &mut self.tty {
            let _ = crossterm::execute!(tty, cev::DisableBracketedPaste);
            let _ = tty.flush();
        }
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
        self.draw_links();
        self.inner.refresh()
    }

    fn has_colors(&self) -> bool {
        self.inner.has_colors()
    }

    fn screen_size(&self) -> Vec2 {
        self.inner.screen_size()
    }

    fn move_to(&self, pos: Vec2) {
        if let Some(shadow) = &self.shadow {
            let mut shadow = shadow.borrow_mut();
            shadow.resize(self.inner.screen_size());
            shadow.pos = pos;
        }
        self.inner.move_to(pos)
    }

    fn print(&self, text: &str) {
        if let Some(shadow) = &self.shadow {
            shadow.borrow_mut().print(text);
        }
        self.inner.print(text)
    }

    fn clear(&self, color: cursive::theme::Color) {
        if let Some(shadow) = &self.shadow {
            let mut shadow = shadow.borrow_mut();
            let size = shadow.size;
            shadow.cells = vec![ShadowCell::default(); size.x * size.y];
        }
        self.inner.clear(color)
    }

    fn set_color(&self, colors: cursive::theme::ColorPair) -> cursive::theme::ColorPair {
        if let Some(shadow) = &self.shadow {
            shadow.borrow_mut().colors = Some(colors);
        }
        self.inner.set_color(colors)
    }

    fn set_effect(&self, effect: cursive::theme::Effect) {
        if let Some(shadow) = &self.shadow {
            shadow.borrow_mut().effects |= effect_bit(effect);
        }
        self.inner.set_effect(effect)
    }

    fn unset_effect(&self, effect: cursive::theme::Effect) {
        if let Some(shadow) = &self.shadow {
            shadow.borrow_mut().effects &= !effect_bit(effect);
        }
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

    /// A backend that writes what it is asked to do as text: `@x,y` for a
    /// move, `{c}` for a colour change, `+n`/`-n` for effect n on/off,
    /// printed text as it is.
    struct Recorder(std::rc::Rc<std::cell::RefCell<String>>);

    impl Backend for Recorder {
        fn poll_event(&mut self) -> Option<Event> {
            None
        }
        fn set_title(&mut self, _: String) {}
        fn refresh(&mut self) {}
        fn has_colors(&self) -> bool {
            true
        }
        fn screen_size(&self) -> Vec2 {
            Vec2::new(20, 3)
        }
        fn move_to(&self, pos: Vec2) {
            self.0
                .borrow_mut()
                .push_str(&format!("@{},{}", pos.x, pos.y));
        }
        fn print(&self, text: &str) {
            self.0.borrow_mut().push_str(text);
        }
        fn clear(&self, _: cursive::theme::Color) {}
        fn set_color(&self, c: cursive::theme::ColorPair) -> cursive::theme::ColorPair {
            self.0.borrow_mut().push_str("{c}");
            c
        }
        fn set_effect(&self, e: cursive::theme::Effect) {
            self.0.borrow_mut().push_str(&format!("+{}", e as u8));
        }
        fn unset_effect(&self, e: cursive::theme::Effect) {
            self.0.borrow_mut().push_str(&format!("-{}", e as u8));
        }
    }

    #[test]
    fn changed_link_cells_are_drawn_again_inside_osc8() {
        use cursive::theme::{ColorPair, Effect};
        let out = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
        let mut term = Terminal::wrap(Box::new(Recorder(out.clone())), None, false, true);
        let url = "https://a.b/cdefgh";
        set_links(vec!["https://zz.org".into(), url.into()]);
        // As cursive flushes a frame: cell by cell, style changes between.
        let draw = |term: &Terminal, row: usize, text: &str, link: bool| {
            term.move_to(Vec2::new(2, row));
            term.set_color(ColorPair::terminal_default());
            if link {
                term.set_effect(Effect::Underline);
            }
            for c in text.chars() {
                term.print(&c.to_string());
            }
            if link {
                term.unset_effect(Effect::Underline);
            }
        };
        // The address cut in two by wrapping, and plain text beside.
        draw(&term, 0, "https://a.b/", true);
        draw(&term, 1, "cdefgh", true);
        draw(&term, 2, "plain", false);
        out.borrow_mut().clear();
        term.refresh();
        let frame = out.borrow().clone();
        let open = osc8_open(url);
        assert_eq!(frame.matches(open.as_str()).count(), 2, "{frame}");
        assert_eq!(frame.matches(OSC8_CLOSE).count(), 2, "{frame}");
        assert!(
            frame.contains(&format!("@2,0{open}+6https://a.b/")),
            "{frame}"
        );
        assert!(
            frame.contains(&format!("@2,1{open}cdefgh{OSC8_CLOSE}")),
            "{frame}"
        );
        assert!(!frame.contains("plain"), "{frame}");
        // Back to what cursive set last: no underline, the cursor where
        // cursive left it.
        assert!(frame.ends_with("-6@7,2"), "{frame}");

        // Nothing changed: nothing drawn again.
        out.borrow_mut().clear();
        term.refresh();
        assert_eq!(*out.borrow(), "");

        // Underlined text that is no known address stays as it was.
        draw(&term, 2, "nolink", true);
        out.borrow_mut().clear();
        term.refresh();
        assert!(!out.borrow().contains("\x1b]8"), "{}", out.borrow());
        set_links(Vec::new());
    }

    #[test]
    fn a_run_of_link_text_finds_its_address() {
        let links = ["https://x.org/ab".to_owned(), "https://x.org/a".to_owned()];
        assert_eq!(link_of("https://x.org/a", &links), Some("https://x.org/a"));
        assert_eq!(link_of("https://x.org/", &links), Some("https://x.org/ab"));
        assert_eq!(link_of("ab", &links), Some("https://x.org/ab"));
        assert_eq!(link_of("nothing", &links), None);
        assert_eq!(link_of("", &links), None);
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
