//! Drawing the model with cursive: the layout, and functions that render
//! each part of the [`Model`] into its view.
//!
//! ```text
//! [alice online] #general — Welcome to confab              <- status line
//! +- windows --+ 14:02 <bob> hi                 +- users -+
//! | 1 confab   | --------- new messages ------- | alice   |
//! | 2 #general | 14:03 <carol> hello            | bob     |
//! | 3 @bob (2) |                                | carol   |
//! +------------+                                +---------+
//! > _                                                        <- input line
//! ```
//!
//! Below 60 columns the window list is hidden, below 80 the user list: a
//! 40-column terminal shows the status line, the messages and the input.

use super::model::{Delivery, Line, Model, Window, WindowId};
use crate::text::{for_terminal, for_terminal_line};
use crate::tui::commands::ACTION_PREFIX;
use cursive::Vec2;
use cursive::theme::{BaseColor, Color, ColorStyle, Effect, Style};
use cursive::utils::markup::StyledString;
use cursive::view::{Nameable, Resizable, ScrollStrategy, View, ViewWrapper};
use cursive::views::{
    BoxedView, EditView, HideableView, LinearLayout, Panel, ScrollView, TextView,
};

/// Names of the views the TUI updates.
pub const STATUS: &str = "status";
/// The window list.
pub const WINDOWS: &str = "windows";
/// The message area.
pub const MESSAGES: &str = "messages";
/// Its scroll view.
pub const SCROLL: &str = "scroll";
/// The user list.
pub const USERS: &str = "users";
/// The input line.
pub const INPUT: &str = "input";

/// Screen width below which the window list is hidden.
pub const WINDOWS_MIN_WIDTH: usize = 60;
/// Screen width below which the user list is hidden.
pub const USERS_MIN_WIDTH: usize = 80;

/// The columns the message text gets on a screen `screen` columns wide:
/// what the side lists leave, less the scroll bar's column and a margin.
pub fn message_width(screen: usize) -> usize {
    let mut width = screen;
    if screen >= WINDOWS_MIN_WIDTH {
        width = width.saturating_sub(20);
    }
    if screen >= USERS_MIN_WIDTH {
        width = width.saturating_sub(18);
    }
    width.saturating_sub(2)
}

/// The middle row: window list, messages, user list; hides the side lists
/// on narrow screens.
pub struct Responsive {
    row: LinearLayout,
}

impl Responsive {
    fn adapt(&mut self, width: usize) {
        for (i, min) in [(0, WINDOWS_MIN_WIDTH), (2, USERS_MIN_WIDTH)] {
            if let Some(side) = self
                .row
                .get_child_mut(i)
                .and_then(|v| v.downcast_mut::<HideableView<BoxedView>>())
            {
                side.set_visible(width >= min);
            }
        }
    }
}

impl ViewWrapper for Responsive {
    cursive::wrap_impl!(self.row: LinearLayout);

    fn wrap_required_size(&mut self, req: Vec2) -> Vec2 {
        self.adapt(req.x);
        self.row.required_size(req)
    }

    fn wrap_layout(&mut self, size: Vec2) {
        self.adapt(size.x);
        self.row.layout(size);
    }
}

/// Builds the whole screen. `input` is the (already wired) input line.
pub fn build(input: impl View) -> impl View {
    let windows = HideableView::new(BoxedView::boxed(
        Panel::new(TextView::new("").with_name(WINDOWS))
            .title("windows")
            .fixed_width(20),
    ));
    let messages = ScrollView::new(TextView::new("").with_name(MESSAGES))
        .scroll_strategy(ScrollStrategy::StickToBottom)
        .with_name(SCROLL)
        .full_screen();
    let users = HideableView::new(BoxedView::boxed(
        Panel::new(TextView::new("").with_name(USERS))
            .title("users")
            .fixed_width(18),
    ));
    let row = LinearLayout::horizontal()
        .child(windows)
        .child(messages)
        .child(users);
    LinearLayout::vertical()
        .child(
            // One row at any width: cut, never wrapped.
            TextView::new("")
                .style(ColorStyle::highlight())
                .no_wrap()
                .with_name(STATUS)
                .full_width(),
        )
        .child(Responsive { row }.full_screen())
        .child(input.full_width())
}

/// A new empty input line.
pub fn input_line() -> EditView {
    EditView::new()
}

/// The local calendar time of `ts_ms`.
fn local_time(ts_ms: i64) -> Option<libc::tm> {
    let secs = ts_ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r writes into the tm we pass and reads `secs`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&secs, &mut tm).is_null()).then_some(tm)
    }
}

/// The timestamp format (strftime), set once at start from the settings.
static TIME_FORMAT: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Sets the timestamp format (`[display] timestamp`, strftime as in
/// irssi's `timestamp_format`, e.g. `%H:%M:%S`); only the first call
/// counts. A format with a NUL byte is refused.
pub fn set_time_format(format: &str) -> Result<(), String> {
    let c = std::ffi::CString::new(format).map_err(|_| "a NUL in the timestamp format")?;
    let _ = TIME_FORMAT.set(c);
    Ok(())
}

/// Local time of `ts_ms` in the timestamp format (`HH:MM` by default).
pub fn clock(ts_ms: i64) -> String {
    let Some(tm) = local_time(ts_ms) else {
        return "--:--".into();
    };
    let Some(format) = TIME_FORMAT.get() else {
        return format!("{:02}:{:02}", tm.tm_hour, tm.tm_min);
    };
    let mut buf = [0u8; 64];
    // SAFETY: strftime writes at most buf.len() bytes into buf and reads
    // the NUL-terminated format and the tm we pass.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The local day of `ts_ms` as irssi's "Day changed" line names it:
/// `Wednesday 2 December 2026`.
pub fn day(ts_ms: i64) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match local_time(ts_ms) {
        Some(tm) => format!(
            "{} {} {} {}",
            DAYS[tm.tm_wday.rem_euclid(7) as usize],
            tm.tm_mday,
            MONTHS[tm.tm_mon.rem_euclid(12) as usize],
            1900 + tm.tm_year
        ),
        None => "an unknown day".into(),
    }
}

/// The colours the message area uses (`[theme]` in the settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Colors {
    /// Nick colours: each nick always gets the same one.
    pub nicks: Vec<Color>,
    /// A message that mentions us.
    pub mention: Color,
    /// The "new messages" divider and failed sends.
    pub alert: Color,
    /// File links and search results' window names.
    pub link: Color,
}

impl Default for Colors {
    fn default() -> Self {
        Colors {
            nicks: [
                BaseColor::Red,
                BaseColor::Green,
                BaseColor::Yellow,
                BaseColor::Blue,
                BaseColor::Magenta,
                BaseColor::Cyan,
            ]
            .map(Color::Light)
            .to_vec(),
            mention: Color::Light(BaseColor::Yellow),
            alert: Color::Light(BaseColor::Red),
            link: Color::Light(BaseColor::Cyan),
        }
    }
}

static COLORS: std::sync::OnceLock<Colors> = std::sync::OnceLock::new();

/// Sets the colours (once, at start; later calls are ignored).
pub fn set_colors(colors: Colors) {
    let _ = COLORS.set(colors);
}

fn colors() -> &'static Colors {
    COLORS.get_or_init(Colors::default)
}

/// A stable colour per nick, so people are recognisable at a glance.
pub fn nick_color(nick: &str) -> Color {
    let hash = nick.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let nicks = &colors().nicks;
    nicks
        .get(hash as usize % nicks.len().max(1))
        .copied()
        .unwrap_or(Color::TerminalDefault)
}

/// Wraps `text` to `width` columns, every line after the first starting
/// with `indent` spaces (so a message's lines sit under its first line's
/// text, as in irssi); the first line has `width - indent` columns too,
/// since its prefix (time and nick) takes `indent`. Words are kept whole
/// when they fit: a URL is split only if it is longer than a line. With
/// `width` 0 (unknown) only the text's own line breaks are indented.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let pad = format!("\n{}", " ".repeat(indent));
    let room = width.saturating_sub(indent);
    if width == 0 || room < 10 {
        return text.replace('\n', &pad);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push_str(&pad);
        }
        let mut col = 0;
        for (i, word) in line.split(' ').enumerate() {
            let w: usize = word.chars().map(|c| c.width().unwrap_or(0)).sum();
            if i > 0 {
                if col + 1 + w <= room {
                    out.push(' ');
                    col += 1;
                } else {
                    out.push_str(&pad);
                    col = 0;
                }
            }
            // A word longer than a line is cut where the line ends.
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if col + cw > room && col > 0 {
                    out.push_str(&pad);
                    col = 0;
                }
                out.push(c);
                col += cw;
            }
        }
    }
    out
}

/// The web addresses in a window's messages (for the terminal's
/// hyperlinks: see [`crate::tui::terminal`]).
pub fn links_in(w: &Window) -> Vec<String> {
    let mut links = Vec::new();
    for line in &w.lines {
        if let Line::Message { body, .. } = line {
            let body = for_terminal(body);
            links.extend(
                crate::text::urls(&body)
                    .into_iter()
                    .map(|r| body[r].to_owned()),
            );
        }
    }
    links.sort_unstable();
    links.dedup();
    links
}

/// Appends a message's text wrapped under itself (see [`wrap`]), its web
/// addresses in the link colour and underlined, so they stand out and the
/// terminal backend makes them hyperlinks (OSC 8) whatever the wrapping
/// did to them.
fn append_body(out: &mut StyledString, text: &str, width: usize, indent: usize, style: Style) {
    let wrapped = wrap(text, width, indent);
    let urls = crate::text::urls(text);
    if urls.is_empty() {
        out.append_styled(wrapped, style);
        return;
    }
    let link = style
        .combine(Style::from(colors().link))
        .combine(Effect::Underline);
    let mut start = 0;
    for (range, is_link) in link_runs(text, &wrapped, &urls, indent) {
        if range.start > start {
            out.append_styled(&wrapped[start..range.start], style);
        }
        out.append_styled(&wrapped[range.clone()], if is_link { link } else { style });
        start = range.end;
    }
    if start < wrapped.len() {
        out.append_styled(&wrapped[start..], style);
    }
}

/// The runs of `wrapped` (what [`wrap`] made of `text` with `indent`) that
/// belong to the address ranges `urls` of `text`, and the runs between
/// them, in order: `(range in wrapped, is a link)`. A line break that
/// wrapping put inside an address splits it into two link runs.
fn link_runs(
    text: &str,
    wrapped: &str,
    urls: &[std::ops::Range<usize>],
    indent: usize,
) -> Vec<(std::ops::Range<usize>, bool)> {
    let pad = format!("\n{}", " ".repeat(indent));
    let in_url = |i: usize| urls.iter().any(|r| r.contains(&i));
    let mut runs: Vec<(std::ops::Range<usize>, bool)> = Vec::new();
    let mut push = |range: std::ops::Range<usize>, link: bool| match runs.last_mut() {
        Some((last, l)) if *l == link && last.end == range.start => last.end = range.end,
        _ => runs.push((range, link)),
    };
    let mut w = 0;
    for (i, c) in text.char_indices() {
        // `wrap` turns the text's own line breaks into the padding, keeps
        // every other character, turns a space into the padding where a
        // line ends and puts the padding inside a word longer than a line.
        loop {
            let rest = &wrapped[w..];
            if c == '\n' || (c == ' ' && rest.starts_with(&pad)) {
                push(w..w + pad.len(), false);
                w += pad.len();
                break;
            }
            if rest.starts_with(c) {
                push(w..w + c.len_utf8(), in_url(i));
                w += c.len_utf8();
                break;
            }
            if rest.starts_with(&pad) {
                push(w..w + pad.len(), false);
                w += pad.len();
                continue;
            }
            // Not what `wrap` makes: leave the rest unstyled.
            push(w..wrapped.len(), false);
            return runs;
        }
    }
    if w < wrapped.len() {
        push(w..wrapped.len(), false);
    }
    runs
}

/// The message area's text for a window; `width` is the area's width in
/// columns, to wrap lines under their text (0: unknown).
pub fn render_messages(w: &Window, me: &str, selected: Option<i64>, width: usize) -> StyledString {
    let mut out = StyledString::new();
    if w.lines.is_empty() {
        out.append_styled(
            match &w.id {
                WindowId::Status => "Welcome to confab. F1 or /help lists commands and keys.\n",
                WindowId::Mentions => "Messages that mention you will be collected here.\n",
                _ => "No messages yet.\n",
            },
            Style::from(Effect::Dim),
        );
    }
    if w.more_before && !w.lines.is_empty() {
        out.append_styled("  (PgUp for older messages)\n", Style::from(Effect::Dim));
    }
    let mut last_day: Option<(i32, i32)> = None;
    for line in &w.lines {
        // A "day changed" line between lines of different local days (the
        // day compared as numbers; named only where it changes).
        let ts = match line {
            Line::Message { ts, .. } | Line::Notice { ts, .. } | Line::Error { ts, .. } => *ts,
        };
        let today = local_time(ts).map(|tm| (tm.tm_year, tm.tm_yday));
        if last_day.is_some() && today != last_day {
            out.append_styled(
                format!("-- Day changed to {}\n", day(ts)),
                Style::from(Effect::Dim),
            );
        }
        last_day = today;
        match line {
            Line::Message {
                id,
                ts,
                from,
                body,
                delivery,
                file,
                extra,
            } => {
                if id.is_some() && *id == w.divider_before {
                    out.append_styled(
                        "──────── new messages ────────\n",
                        Style::from(colors().alert),
                    );
                }
                if let Some(r) = &extra.reply {
                    let quoted = if r.deleted {
                        "(deleted message)".to_owned()
                    } else {
                        format!(
                            "{}: {}",
                            for_terminal_line(&r.from),
                            for_terminal_line(&r.excerpt)
                        )
                    };
                    out.append_styled(format!("      ↳ {quoted}\n"), Style::from(Effect::Dim));
                }
                let is_selected = id.is_some() && *id == selected;
                let stamp = format!("{}{} ", if is_selected { "▶" } else { "" }, clock(*ts));
                let mut stamp_width = unicode_width::UnicodeWidthStr::width(stamp.as_str());
                out.append_styled(
                    stamp,
                    if is_selected {
                        Style::from(Effect::Reverse)
                    } else {
                        Style::from(Effect::Dim)
                    },
                );
                if let Some(origin) = &extra.origin {
                    let label = format!("[{}] ", for_terminal_line(&origin.label()));
                    stamp_width += unicode_width::UnicodeWidthStr::width(label.as_str());
                    out.append_styled(label, Style::from(colors().link));
                }
                let mut nick_style = Style::from(nick_color(from));
                if from == me {
                    nick_style = nick_style.combine(Effect::Bold);
                }
                // Whatever the server sent, nothing reaches the terminal
                // that could rewrite it or reorder the text around it.
                let nick = for_terminal_line(from);
                if extra.topic && !extra.deleted {
                    out.append_styled(
                        format!("-- {nick} set the topic: {}\n", for_terminal_line(body)),
                        Style::from(Effect::Dim),
                    );
                    continue;
                }
                if extra.deleted {
                    out.append_plain("<");
                    out.append_styled(nick, nick_style);
                    out.append_plain("> ");
                    out.append_styled("(message deleted)\n", Style::from(Effect::Dim));
                    continue;
                }
                // A mention of us stands out, as in irssi (in a /me line
                // too: it counts as one).
                let text_style = if from != me && crate::mention::mentions(body, me) {
                    Style::from(colors().mention).combine(Effect::Bold)
                } else {
                    Style::none()
                };
                // Lines after the first start under the first one's text.
                let nick_width = unicode_width::UnicodeWidthStr::width(nick.as_ref());
                if let Some(action) = body.strip_prefix(ACTION_PREFIX) {
                    let indent = stamp_width + 3 + nick_width;
                    out.append_plain("* ");
                    out.append_styled(nick, nick_style);
                    out.append_plain(" ");
                    append_body(&mut out, &for_terminal(action), width, indent, text_style);
                } else {
                    // A notice is `-nick-`, as irssi shows one.
                    let (open, close) = if extra.notice {
                        ("-", "- ")
                    } else {
                        ("<", "> ")
                    };
                    let indent = stamp_width + 3 + nick_width;
                    out.append_plain(open);
                    out.append_styled(nick, nick_style);
                    out.append_plain(close);
                    append_body(&mut out, &for_terminal(body), width, indent, text_style);
                }
                if let Some(file_id) = file {
                    out.append_styled(
                        format!(" [/download {file_id}]"),
                        Style::from(colors().link),
                    );
                }
                if extra.edited {
                    out.append_styled(" (edited)", Style::from(Effect::Dim));
                }
                match delivery {
                    Delivery::Stored => {}
                    Delivery::Pending(_) => {
                        out.append_styled(" (sending…)", Style::from(Effect::Dim));
                    }
                    Delivery::Failed(reason) => out.append_styled(
                        format!(" [not sent: {}]", for_terminal_line(reason)),
                        Style::from(colors().alert),
                    ),
                }
                out.append_plain("\n");
                if !extra.reactions.is_empty() {
                    out.append_plain("      ");
                    for r in &extra.reactions {
                        let text = format!("[{} {}] ", for_terminal_line(&r.emoji), r.count);
                        if r.me {
                            // Ours stand out, as in Slack.
                            out.append_styled(text, Style::from(Effect::Bold));
                        } else {
                            out.append_styled(text, Style::from(Effect::Dim));
                        }
                    }
                    out.append_plain("\n");
                }
            }
            Line::Notice { ts, text } => {
                out.append_styled(
                    format!("{} -- {}\n", clock(*ts), for_terminal(text)),
                    Style::from(Effect::Dim),
                );
            }
            Line::Error { ts, text } => {
                out.append_styled(
                    format!("{} !! {}\n", clock(*ts), for_terminal(text)),
                    Style::from(colors().alert),
                );
            }
        }
    }
    out
}

/// The window list's text: number, name, unread count; the current one
/// highlighted.
pub fn render_windows(m: &Model) -> StyledString {
    let mut out = StyledString::new();
    for (i, w) in m.windows.iter().enumerate() {
        let label = w.id.label();
        let label = for_terminal_line(&label);
        let text = if w.unread > 0 {
            format!("{} {label} ({})\n", i + 1, w.unread)
        } else {
            format!("{} {label}\n", i + 1)
        };
        if i == m.current {
            out.append_styled(text, Style::from(Effect::Reverse));
        } else if w.unread > 0 {
            out.append_styled(text, Style::from(Effect::Bold));
        } else {
            out.append_plain(text);
        }
    }
    out
}

/// The user list's text: online members first, away ones marked.
pub fn render_users(w: &Window) -> StyledString {
    let mut out = StyledString::new();
    let mut members: Vec<_> = w.members.iter().collect();
    members.sort_by_key(|m| (!m.online, m.user.clone()));
    for m in members {
        let (mark, style) = match (m.online, &m.away) {
            (true, None) => ("●", Style::from(nick_color(&m.user))),
            (true, Some(_)) => ("◐", Style::from(Effect::Dim)),
            (false, _) => ("○", Style::from(Effect::Dim)),
        };
        out.append_styled(format!("{mark} {}\n", for_terminal_line(&m.user)), style);
    }
    let shown = w.members.len() as u32;
    if w.member_total > shown {
        out.append_styled(
            format!("+ {} more\n", w.member_total - shown),
            Style::from(Effect::Dim),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, Member, RoomInfo};

    fn source(s: &StyledString) -> String {
        s.source().to_owned()
    }

    #[test]
    fn web_addresses_are_link_runs_even_when_wrapping_cuts_them() {
        let links = |text: &str, width: usize, indent: usize| -> Vec<String> {
            let wrapped = wrap(text, width, indent);
            link_runs(text, &wrapped, &crate::text::urls(text), indent)
                .into_iter()
                .filter(|(_, link)| *link)
                .map(|(r, _)| wrapped[r].to_owned())
                .collect()
        };
        assert_eq!(
            links("see https://example.org/a, ok", 0, 4),
            ["https://example.org/a"]
        );
        // A line break between words, then an address cut where the line
        // ends: two runs, neither with the padding.
        let url = format!("https://example.org/{}", "x".repeat(30));
        let text = format!("look at this page {url} now");
        let runs = links(&text, 30, 6);
        assert!(runs.len() >= 2, "{runs:?}");
        assert_eq!(runs.concat(), url);
        // Every run of the output is the wrapped text, in order.
        let wrapped = wrap(&text, 30, 6);
        let all: String = link_runs(&text, &wrapped, &crate::text::urls(&text), 6)
            .into_iter()
            .map(|(r, _)| &wrapped[r])
            .collect();
        assert_eq!(all, wrapped);
        // A multi-line message keeps its own line breaks out of the link.
        assert_eq!(links("one\nhttps://a.b/c\ntwo", 40, 6), ["https://a.b/c"]);
    }

    #[test]
    fn a_notice_is_drawn_with_dashes_as_irssi_does() {
        let mut m = Model::new("alice");
        m.on_message(&ChatMessage {
            room: Some("general".into()),
            notice: true,
            ..ChatMessage::new(1, "bot".into(), "build passed".into(), 0)
        });
        m.select(1);
        let text = source(&render_messages(m.current(), "alice", None, 0));
        assert!(text.contains("-bot- build passed"), "{text}");
    }

    #[test]
    fn an_address_in_a_message_is_drawn_as_a_link() {
        let mut m = Model::new("alice");
        m.on_message(&ChatMessage {
            room: Some("general".into()),
            ..ChatMessage::new(1, "bob".into(), "read https://a.b/c please".into(), 0)
        });
        m.select(1);
        let out = render_messages(m.current(), "alice", None, 0);
        let linked: Vec<&str> = out
            .spans()
            .filter(|s| {
                s.attr
                    .effects
                    .resolve(Default::default())
                    .contains(Effect::Underline)
            })
            .map(|s| s.content)
            .collect();
        assert_eq!(linked, ["https://a.b/c"]);
    }

    #[test]
    fn long_lines_wrap_under_their_text_and_keep_words_whole() {
        // 30 columns, text after a 10-column prefix: 20 per line.
        let text = "the quick brown fox jumps over https://example.org/a/long/path/here now";
        let wrapped = wrap(text, 30, 10);
        let lines: Vec<&str> = wrapped.split('\n').collect();
        assert_eq!(lines[0], "the quick brown fox");
        assert_eq!(lines[1], format!("{}jumps over", " ".repeat(10)));
        // Longer than a line: cut where the line ends, then indented.
        assert_eq!(lines[2], format!("{}https://example.org/", " ".repeat(10)));
        assert!(lines.iter().skip(1).all(|l| l.starts_with(&" ".repeat(10))));
        assert!(
            lines.iter().all(|l| l.trim_start().chars().count() <= 20),
            "{lines:?}"
        );
        // Wide characters count double.
        let cjk = wrap(&"漢字".repeat(8), 30, 10);
        assert_eq!(cjk.split('\n').next().unwrap().chars().count(), 10);
        // Unknown width: only the text's own line breaks are indented.
        assert_eq!(wrap("a\nb", 0, 3), "a\n   b");
    }

    #[test]
    fn a_day_changed_line_separates_days() {
        let mut m = Model::new("alice");
        let room = WindowId::Room("general".into());
        let i = m.open(room.clone());
        let day_ms = 86_400_000;
        for (id, ts) in [
            (1, 10 * day_ms + 3_600_000),
            (2, 10 * day_ms + 7_200_000),
            (3, 12 * day_ms),
        ] {
            m.on_message(&ChatMessage {
                room: Some("general".into()),
                ..ChatMessage::new(id, "bob".into(), format!("m{id}"), ts)
            });
        }
        m.select(i);
        let text = source(&render_messages(m.current(), "alice", None, 0));
        assert_eq!(text.matches("-- Day changed to ").count(), 1, "{text}");
        let changed = text.find("-- Day changed to").unwrap();
        assert!(text.find("m2").unwrap() < changed && changed < text.find("m3").unwrap());
        assert!(text.contains(&day(12 * day_ms)), "{text}");
    }

    #[test]
    fn a_mention_stands_out_in_a_me_line_too_and_extra_lines_are_indented() {
        let mut m = Model::new("alice");
        let room = WindowId::Room("general".into());
        let i = m.open(room.clone());
        for (id, body) in [
            (1, format!("{ACTION_PREFIX}waves at alice")),
            (2, "two\nlines".to_owned()),
        ] {
            m.on_message(&ChatMessage {
                room: Some("general".into()),
                ..ChatMessage::new(id, "bob".into(), body, 0)
            });
        }
        m.select(i);
        let out = render_messages(m.current(), "alice", None, 0);
        let highlighted = out
            .spans()
            .find(|s| s.content.contains("waves at alice"))
            .expect("the action's text");
        // The mention style: bright yellow (and bold).
        assert!(
            format!("{:?}", highlighted.attr.color).contains("Light(Yellow)"),
            "{:?}",
            highlighted.attr
        );
        // Under the text: "HH:MM <bob> " is 12 columns.
        let indented = format!("<bob> two\n{}lines", " ".repeat(12));
        assert!(source(&out).contains(&indented), "{}", source(&out));
    }

    #[test]
    fn messages_render_time_nick_body_divider_and_delivery_state() {
        let mut m = Model::new("alice");
        let room = WindowId::Room("general".into());
        let i = m.open(room.clone());
        for (id, body) in [(1, "first"), (2, "/me waves")] {
            m.on_message(&ChatMessage {
                id,
                room: Some("general".into()),
                to: None,
                from: "bob".into(),
                body: body.into(),
                ts: 0,
                file: None,
                reply_to: None,
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                kind: Default::default(),
                notice: false,
            });
        }
        m.select(i);
        let local = m.add_pending(&room, "on its way");
        let text = source(&render_messages(m.current(), "alice", None, 0));
        assert!(text.contains("new messages"), "{text}");
        assert!(text.contains("<bob> first"));
        assert!(text.contains("* bob waves"));
        assert!(text.contains("<alice> on its way (sending…)"));
        m.on_send_failed(local, "slow down");
        let text = source(&render_messages(m.current(), "alice", None, 0));
        assert!(text.contains("[not sent: slow down]"));
    }

    /// Issue 14, items 4 and 5: nothing the server sends reaches the
    /// terminal raw: no escape sequence, no bidi override, wherever it is.
    #[test]
    fn escape_sequences_and_bidi_controls_from_the_server_never_reach_the_terminal() {
        let mut m = Model::new("alice");
        let i = m.open(WindowId::Room("general".into()));
        m.on_message(&ChatMessage {
            id: 1,
            room: Some("general".into()),
            to: None,
            from: "ev\u{1b}]0;pwned\u{7}il".into(),
            body: "see \u{1b}[2J\u{202E}gnp.exe and \u{200B}this".into(),
            ts: 0,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        });
        m.select(i);
        m.status_notice("notice \u{1b}[31mred\u{2066}");
        let texts = [
            source(&render_messages(m.current(), "alice", None, 0)),
            source(&render_messages(&m.windows[0], "alice", None, 0)),
            source(&render_users(m.current())),
            source(&render_windows(&m)),
        ];
        for text in &texts {
            assert!(
                !text
                    .chars()
                    .any(|c| (c.is_control() && c != '\n') || crate::text::is_hidden_format(c)),
                "{text:?}"
            );
        }
        assert!(
            texts[0].contains("see \u{FFFD}[2Jgnp.exe and this"),
            "{}",
            texts[0]
        );
    }

    /// Issue 15: a big room's first page is marked as such, with how many
    /// more there are.
    #[test]
    fn a_partial_member_list_says_how_many_more_there_are() {
        let mut m = Model::new("alice");
        let room = RoomInfo {
            name: "big".into(),
            topic: String::new(),
            members: 10_000,
        };
        let page = vec![Member {
            user: "alice".into(),
            online: true,
            away: None,
        }];
        m.on_joined(&room, page, &[], false);
        let i = m.index_of(&WindowId::Room("big".into())).unwrap();
        let text = source(&render_users(&m.windows[i]));
        assert!(text.contains("+ 9999 more"), "{text}");
        // Shown, a room without live presence asks for a fresh list, and
        // not again right away.
        m.select(i);
        m.windows[i].members_fetched = None;
        assert_eq!(
            m.members_refresh_due(std::time::Duration::from_secs(30)),
            Some("big".into())
        );
        assert_eq!(
            m.members_refresh_due(std::time::Duration::from_secs(30)),
            None
        );
    }

    #[test]
    fn window_list_shows_numbers_and_unread_counts() {
        let mut m = Model::new("alice");
        m.open(WindowId::Room("general".into()));
        m.on_message(&ChatMessage {
            id: 1,
            room: None,
            to: Some("alice".into()),
            from: "bob".into(),
            body: "hi".into(),
            ts: 0,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        });
        let text = source(&render_windows(&m));
        assert_eq!(text, "1 confab\n2 #general\n3 @bob (1)\n");
    }

    #[test]
    fn users_list_puts_online_first_and_marks_away() {
        let mut m = Model::new("alice");
        let i = m.open(WindowId::Room("r".into()));
        m.windows[i].members = vec![
            Member {
                user: "zoe".into(),
                online: true,
                away: None,
            },
            Member {
                user: "amy".into(),
                online: false,
                away: None,
            },
            Member {
                user: "bob".into(),
                online: true,
                away: Some("lunch".into()),
            },
        ];
        let text = source(&render_users(&m.windows[i]));
        assert_eq!(text, "◐ bob\n● zoe\n○ amy\n");
    }

    #[test]
    fn nick_colours_are_stable() {
        assert_eq!(nick_color("alice"), nick_color("alice"));
        assert_eq!(clock(-1_000_000_000_000_000).len(), 5);
    }
}
