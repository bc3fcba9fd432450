//! The full-screen client: cursive views over a plain [`Model`], fed by a
//! network thread.
//!
//! - `model`: the state (windows, lines, unread counts, connection).
//! - `commands`: the command table, input parsing, Tab completion.
//! - `net`: the network thread and its command/event types.
//! - `view`: the layout and rendering of the model.
//!
//! **Invariant:** the network thread never touches views. It sends
//! [`NetEvent`]s through cursive's callback sink; [`apply`] updates the
//! model on the UI thread and re-renders. The UI sends [`NetCommand`]s and
//! never waits for the network or the disk.

pub mod commands;
pub mod model;
pub mod net;
pub mod notify;
pub mod settings;
pub mod terminal;
pub mod view;

use crate::protocol::ServerMsg;
use crate::validate;
use commands::{ACTION_PREFIX, COMMANDS, Command, Input, KEYS};
use cursive::event::{Event, EventResult, Key};
use cursive::theme::{BorderStyle, Color, PaletteColor};
use cursive::view::{Nameable, ScrollStrategy};
use cursive::views::{Dialog, EditView, NamedView, OnEventView, ScrollView, TextView};
use cursive::{Cursive, View};
use model::{ConnState, Model, WindowId};
use net::{NetCommand, NetEvent, NetHandle};
use notify::{Incoming, Notifier, SoundLevel};
use settings::Settings;

/// The UI's state, kept in cursive's user data.
pub struct App {
    /// What the screen shows.
    pub model: Model,
    /// Where commands go.
    pub net: NetHandle,
    /// Lines entered, oldest first, for Up/Down.
    history: Vec<String>,
    /// Position while browsing `history` with Up/Down.
    history_pos: Option<usize>,
    /// Plays sounds, if set.
    notifier: Option<Notifier>,
    /// The settings, and where to save them when a command changes them.
    settings: Settings,
    settings_path: Option<std::path::PathBuf>,
    /// The largest message body the server takes (from its welcome).
    max_body: usize,
    /// The last Tab completion: the line it produced, every match, and
    /// which one is shown (Tab again shows the next).
    completion: Option<(String, Vec<String>, usize)>,
    /// When Ctrl-C was last pressed (a second press soon after quits).
    ctrl_c: Option<std::time::Instant>,
    /// The terminal title last set.
    title: String,
}

impl App {
    /// A UI state for `model`, sending commands to `net`.
    pub fn new(model: Model, net: NetHandle) -> App {
        App {
            model,
            net,
            history: Vec::new(),
            history_pos: None,
            notifier: None,
            settings: Settings::default(),
            settings_path: None,
            max_body: crate::protocol::MAX_BODY_LEN,
            ctrl_c: None,
            completion: None,
            title: String::new(),
        }
    }

    /// Plays sounds through `notifier`, by the rules in `settings`, which
    /// commands save to `path`.
    pub fn with_notifications(
        mut self,
        notifier: Notifier,
        settings: Settings,
        path: Option<std::path::PathBuf>,
    ) -> App {
        self.notifier = Some(notifier);
        self.model.ignored = settings.ignore.clone();
        self.settings = settings;
        self.settings_path = path;
        self
    }

    /// Saves the settings on a short-lived thread: the UI never waits for
    /// the disk.
    fn save_settings(&self) {
        if let Some(path) = self.settings_path.clone() {
            let settings = self.settings.clone();
            std::thread::spawn(move || {
                if let Err(e) = settings.save(&path) {
                    log::warn!("saving settings: {e}");
                }
            });
        }
    }

    /// Tells the server what the shown window is read up to, if that moved.
    fn report_read(&mut self) {
        if let Some((window, id)) = self.model.mark_read_due() {
            self.net.send(NetCommand::MarkRead { window, id });
        }
        // A room too large for presence events: its member list is
        // fetched again while it is shown, at most every 30 s.
        if let Some(room) = self
            .model
            .members_refresh_due(std::time::Duration::from_secs(30))
        {
            self.net.send(NetCommand::RefreshMembers(room));
        }
    }
}

type MessagesScroll = ScrollView<NamedView<TextView>>;

fn with_app<R>(s: &mut Cursive, f: impl FnOnce(&mut App) -> R) -> Option<R> {
    s.with_user_data(f)
}

/// Sets up the screen, keys and state on `siv` (a real terminal or the
/// puppet backend in tests).
pub fn setup(siv: &mut Cursive, app: App) {
    let borders = app.settings.display.borders;
    siv.update_theme(|t| {
        t.shadow = false;
        // Without borders, a URL copied from two wrapped lines picks up no
        // frame characters.
        t.borders = if borders {
            BorderStyle::Simple
        } else {
            BorderStyle::None
        };
        // The terminal's own colours, so it looks like the user's terminal
        // and works without colour support.
        for c in [
            PaletteColor::Background,
            PaletteColor::View,
            PaletteColor::Primary,
        ] {
            t.palette[c] = Color::TerminalDefault;
        }
    });
    siv.set_user_data(app);
    let input = OnEventView::new(view::input_line().on_submit(submit).with_name(view::INPUT))
        .on_pre_event_inner(Key::Tab, |v, _| {
            let content = v.get_mut().get_content().to_string();
            Some(EventResult::with_cb(move |s| complete_input(s, &content)))
        })
        .on_pre_event(Key::Up, |s| recall(s, -1))
        .on_pre_event(Key::Down, |s| recall(s, 1))
        // Alt-Up/Alt-Down select a message; Up and Down stay input
        // history, as in irssi and weechat.
        .on_pre_event(Event::Alt(Key::Up), |s| select_message(s, -1))
        .on_pre_event(Event::Alt(Key::Down), |s| select_message(s, 1))
        .on_pre_event(Key::Esc, |s| select_message(s, 0))
        .on_pre_event_inner(Event::CtrlChar('w'), |v, _| {
            delete_word(&mut v.get_mut());
            Some(EventResult::Consumed(None))
        })
        // A bracketed paste arrives whole: one line goes into the input,
        // several are a message of several lines, sent after a question.
        .on_pre_event_inner(
            cursive::event::EventTrigger::from_fn(|e| terminal::pasted(e).is_some()),
            |v, e| {
                let text = terminal::pasted(e)?;
                let mut edit = v.get_mut();
                let (content, cursor) = (edit.get_content(), edit.get_cursor());
                let pasted = normalize_paste(&text);
                let combined = format!("{}{pasted}{}", &content[..cursor], &content[cursor..]);
                if pasted.contains('\n') {
                    return Some(EventResult::with_cb(move |s| {
                        confirm_paste(s, combined.clone())
                    }));
                }
                let at = cursor + pasted.len();
                edit.set_content(combined);
                edit.set_cursor(at);
                Some(EventResult::Consumed(None))
            },
        );
    // With a message selected and nothing typed, one key starts acting on
    // it: r reply, e edit, d delete, + react (the command is put in the
    // input line, Enter sends it).
    let input = ['r', 'e', 'd', '+'].into_iter().fold(input, |input, c| {
        input.on_pre_event_inner(Event::Char(c), move |v, _| {
            if !v.get_mut().get_content().is_empty() {
                return None;
            }
            Some(EventResult::with_cb(move |s| quick_key(s, c)))
        })
    });
    siv.add_fullscreen_layer(view::build(input));

    siv.clear_global_callbacks(Event::CtrlChar('c'));
    siv.set_on_pre_event(Event::CtrlChar('c'), ctrl_c);
    siv.add_global_callback(Event::CtrlChar('n'), |s| switch(s, |m| m.next()));
    siv.add_global_callback(Event::CtrlChar('p'), |s| switch(s, |m| m.prev()));
    for n in 1..=9u8 {
        let c = char::from(b'0' + n);
        siv.add_global_callback(Event::AltChar(c), move |s| {
            switch(s, |m| m.select(usize::from(n - 1)))
        });
    }
    siv.add_global_callback(Key::F1, show_help);
    siv.add_global_callback(Key::PageUp, |s| scroll(s, Key::PageUp));
    siv.add_global_callback(Key::PageDown, |s| scroll(s, Key::PageDown));
    render(siv);
}

/// Re-renders every part of the screen from the model (and reports the
/// shown window as read).
pub fn render(s: &mut Cursive) {
    let width = view::message_width(s.screen_size().x);
    let Some((title, status, windows, messages, users, links)) = with_app(s, |app| {
        app.report_read();
        let m = &app.model;
        // The terminal title (OSC 2) carries the unread count, so news
        // shows in a tab or task bar; set only when it changes.
        // Only in a real terminal (the binary's App has a notifier; the
        // puppet screens of the tests do not).
        let title = m.title();
        let title = (title != app.title).then(|| {
            app.title = title.clone();
            app.notifier.is_some().then_some(title)
        });
        (
            title,
            // The status line carries the topic and server reasons.
            crate::text::for_terminal_line(&m.status_line()).into_owned(),
            view::render_windows(m),
            view::render_messages(m.current(), &m.me, m.selected, width),
            view::render_users(m.current()),
            view::links_in(m.current()),
        )
    }) else {
        return;
    };
    if let Some(title) = title.flatten() {
        // Written here, on the UI thread between frames (as the bell):
        // cursive would hold a title set from a network event until the
        // next key press.
        let title = crate::text::for_terminal_line(&title);
        terminal::write_raw(format!("\x1b]2;{title}\x07").as_bytes());
    }
    terminal::set_links(links);
    s.call_on_name(view::STATUS, |v: &mut TextView| v.set_content(status));
    s.call_on_name(view::WINDOWS, |v: &mut TextView| v.set_content(windows));
    s.call_on_name(view::MESSAGES, |v: &mut TextView| v.set_content(messages));
    s.call_on_name(view::USERS, |v: &mut TextView| v.set_content(users));
}

fn switch(s: &mut Cursive, f: impl FnOnce(&mut Model)) {
    with_app(s, |app| f(&mut app.model));
    s.call_on_name(view::SCROLL, |v: &mut MessagesScroll| {
        v.set_scroll_strategy(ScrollStrategy::StickToBottom);
    });
    render(s);
}

fn quit(s: &mut Cursive) {
    with_app(s, |app| app.net.send(NetCommand::Quit));
    s.quit();
}

/// How soon a second Ctrl-C must follow the first to quit.
const CTRL_C_AGAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Ctrl-C quits when pressed twice (a stray one in a chat client loses a
/// session, as irssi users know: there it does nothing), or once when the
/// client has given up anyway.
fn ctrl_c(s: &mut Cursive) {
    let now = with_app(s, |app| {
        let armed = app.ctrl_c.is_some_and(|t| t.elapsed() < CTRL_C_AGAIN);
        if armed || matches!(app.model.conn, ConnState::Failed(_)) {
            return true;
        }
        app.ctrl_c = Some(std::time::Instant::now());
        app.model
            .notice("press Ctrl-C again to quit (or type /quit)");
        false
    })
    .unwrap_or(true);
    if now {
        quit(s);
    } else {
        render(s);
    }
}

/// Paths that complete `partial` (`~/` is the home directory), folders with
/// a `/` after them, sorted; hidden ones only when asked for with a dot.
fn path_completions(partial: &str) -> Vec<String> {
    let (dir, prefix) = match partial.rfind('/') {
        Some(i) => (&partial[..=i], &partial[i + 1..]),
        None => ("", partial),
    };
    let real = if dir.is_empty() {
        std::path::PathBuf::from(".")
    } else {
        expand_home(dir)
    };
    let Ok(entries) = std::fs::read_dir(&real) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{dir}{name}{slash}"))
        })
        .collect();
    out.sort();
    out
}

/// Deletes the word before the cursor (Ctrl-W, as in a shell).
fn delete_word(edit: &mut EditView) {
    let content = edit.get_content();
    let cursor = edit.get_cursor();
    let before = content[..cursor].trim_end_matches(' ');
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let text = format!("{}{}", &content[..start], &content[cursor..]);
    edit.set_content(text);
    edit.set_cursor(start);
}

fn scroll(s: &mut Cursive, key: Key) {
    let at = s.call_on_name(view::SCROLL, |v: &mut MessagesScroll| {
        v.on_event(Event::Key(key));
        if v.is_at_bottom() {
            v.set_scroll_strategy(ScrollStrategy::StickToBottom);
        }
        v.is_at_top()
    });
    let at_bottom = s
        .call_on_name(view::SCROLL, |v: &mut MessagesScroll| v.is_at_bottom())
        .unwrap_or(false);
    if key == Key::PageDown && at_bottom {
        // Back from a search result to the newest messages.
        with_app(s, |app| {
            let i = app.model.current;
            let w = &mut app.model.windows[i];
            if w.detached {
                w.detached = false;
                w.lines.retain(|l| !matches!(l, model::Line::Notice { .. }));
                app.net.send(NetCommand::History {
                    window: w.id.clone(),
                    before: None,
                });
            }
        });
    }
    if key == Key::PageUp && at == Some(true) {
        with_app(s, |app| {
            let i = app.model.current;
            let w = &mut app.model.windows[i];
            if w.more_before && !w.loading && w.id != WindowId::Status {
                w.loading = true;
                app.net.send(NetCommand::History {
                    window: w.id.clone(),
                    before: w.oldest_id(),
                });
            }
        });
    }
}

/// Moves the message selection (`step` 0 clears it).
fn select_message(s: &mut Cursive, step: isize) {
    with_app(s, |app| {
        if step == 0 {
            app.model.selected = None;
        } else {
            app.model.select_message(step);
        }
    });
    render(s);
}

/// A quick key typed into an empty input line: with a message selected,
/// the command acting on it; otherwise the character itself.
fn quick_key(s: &mut Cursive, c: char) {
    let text = with_app(s, |app| {
        let m = &app.model;
        let (_, _, body) = m.selected.and(m.target_message(false))?;
        let searching = m.current().id == WindowId::Search;
        match c {
            'r' if !searching => Some("/reply ".to_owned()),
            'e' if !searching && m.target_message(true).is_some() => Some(format!("/edit {body}")),
            'd' if !searching => Some("/delete".to_owned()),
            '+' => Some("/react ".to_owned()),
            _ => None,
        }
    })
    .flatten()
    .unwrap_or_else(|| c.to_string());
    s.call_on_name(view::INPUT, |v: &mut EditView| {
        v.set_content(text.clone());
        v.set_cursor(text.len());
    });
    render(s);
}

/// Pasted text as a message: line ends as `\n`, no trailing empty lines.
fn normalize_paste(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim_end_matches('\n')
        .to_owned()
}

/// Asks before sending a paste of several lines (as weechat's
/// paste_max_lines and irssi's paste_verify_line_count do): as one message
/// of several lines (Enter), as one message per line, or not at all (the
/// input line keeps what it had).
fn confirm_paste(s: &mut Cursive, text: String) {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    let Some((label, ask)) = with_app(s, |app| {
        (
            app.model.current().id.label(),
            n >= app.settings.paste.confirm_lines,
        )
    }) else {
        return;
    };
    if !ask {
        // Fewer lines than `[paste] confirm_lines`: one message, at once.
        send_pasted(s, vec![text]);
        return;
    }
    let preview: Vec<&str> = text.lines().take(5).collect();
    let more = if n > 5 {
        format!("\n… and {} more", n - 5)
    } else {
        String::new()
    };
    let question = format!(
        "Send these {n} pasted lines to {label}?\n\n{}{more}",
        crate::text::for_terminal(&preview.join("\n"))
    );
    let one = text.clone();
    let sent = |s: &mut Cursive, bodies: Vec<String>| {
        s.pop_layer();
        send_pasted(s, bodies);
    };
    s.add_layer(
        OnEventView::new(
            Dialog::text(question)
                .title("Paste")
                .button("Send as one message", move |s| sent(s, vec![one.clone()]))
                .button(format!("Send {n} messages"), move |s| {
                    sent(s, lines.clone())
                })
                .button("Cancel", |s| {
                    s.pop_layer();
                }),
        )
        .on_event(Key::Esc, |s| {
            s.pop_layer();
        }),
    );
}

/// Sends pasted text as `bodies` (blank ones left out) to the shown window
/// and clears the input line, which the paste had filled.
fn send_pasted(s: &mut Cursive, bodies: Vec<String>) {
    s.call_on_name(view::INPUT, |v: &mut EditView| v.set_content(""));
    with_app(s, |app| {
        let window = app.model.current().id.clone();
        for body in bodies.into_iter().filter(|b| !b.trim().is_empty()) {
            send_text(app, window.clone(), body, None);
        }
    });
    s.call_on_name(view::SCROLL, |v: &mut MessagesScroll| {
        v.set_scroll_strategy(ScrollStrategy::StickToBottom);
    });
    render(s);
}

/// Whether the selected message is someone else's (an admin deleting it).
fn selected_is_others(m: &Model) -> bool {
    matches!(m.selected_line(), Some(model::Line::Message { from, .. }) if *from != m.me)
}

/// Tab: completes the word before the cursor; Tab again (the line still
/// as completed) goes to the next match, as in irssi. After `/send `, a
/// file path.
fn complete_input(s: &mut Cursive, content: &str) {
    let Some(completed) = with_app(s, |app| {
        if let Some((shown, matches, i)) = &mut app.completion
            && shown == content
            && matches.len() > 1
        {
            *i = (*i + 1) % matches.len();
            *shown = matches[*i].clone();
            return Some(shown.clone());
        }
        let rooms: Vec<String> = app
            .model
            .windows
            .iter()
            .filter_map(|w| match &w.id {
                WindowId::Room(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let matches = match content.strip_prefix("/send ") {
            Some(path) => path_completions(path)
                .into_iter()
                .map(|p| format!("/send {p}"))
                .collect(),
            None => commands::completions(content, &app.model.nicks(), &rooms),
        };
        let first = matches.first()?.clone();
        app.completion = Some((first.clone(), matches, 0));
        Some(first)
    })
    .flatten() else {
        return;
    };
    s.call_on_name(view::INPUT, |v: &mut EditView| {
        v.set_content(completed.clone());
        v.set_cursor(completed.len());
    });
}

fn recall(s: &mut Cursive, step: isize) {
    let Some(line) = with_app(s, |app| {
        let n = app.history.len();
        if n == 0 {
            return None;
        }
        let pos = match (app.history_pos, step) {
            (None, -1) => n - 1,
            (None, _) => return None,
            (Some(p), -1) => p.saturating_sub(1),
            (Some(p), _) if p + 1 >= n => {
                app.history_pos = None;
                return Some(String::new());
            }
            (Some(p), _) => p + 1,
        };
        app.history_pos = Some(pos);
        Some(app.history[pos].clone())
    })
    .flatten() else {
        return;
    };
    s.call_on_name(view::INPUT, |v: &mut EditView| {
        v.set_content(line.clone());
        v.set_cursor(line.len());
    });
}

fn show_help(s: &mut Cursive) {
    let mut text = String::from("Commands\n");
    for c in COMMANDS {
        let synopsis = format!("/{} {}", c.name, c.args);
        text.push_str(&format!("  {synopsis:<18} {}\n", c.help));
    }
    text.push_str("\nKeys\n");
    for (k, what) in KEYS {
        text.push_str(&format!("  {k:<16} {what}\n"));
    }
    text.push_str(
        "\nText that does not start with / is sent to the current window;\n//text sends /text.",
    );
    s.add_layer(
        OnEventView::new(
            Dialog::around(ScrollView::new(TextView::new(text)))
                .title("confab help")
                .dismiss_button("Close"),
        )
        .on_event(Key::Esc, |s| {
            s.pop_layer();
        }),
    );
}

/// The input line was submitted.
fn submit(s: &mut Cursive, line: &str) {
    if line.is_empty() {
        // Enter on an empty line in the search window jumps to the
        // selected result.
        with_app(s, |app| {
            let m = &app.model;
            if m.current().id == WindowId::Search
                && let Some((window, id, _)) = m.target_message(false)
            {
                app.net.send(NetCommand::Jump { window, id });
            }
        });
        return;
    }
    // Too long for the server: refused before the input is cleared, so
    // nothing typed is lost.
    let max = with_app(s, |app| app.max_body).unwrap_or(usize::MAX);
    if line.len() > max {
        with_app(s, |app| app.model.error(too_long(line.len(), max)));
        render(s);
        return;
    }
    s.call_on_name(view::INPUT, |v: &mut EditView| v.set_content(""));
    let after = with_app(s, |app| {
        if !line.trim().is_empty() {
            app.history.push(line.to_owned());
        }
        app.history_pos = None;
        handle_line(app, line)
    })
    .unwrap_or(AfterLine::Stay);
    match after {
        AfterLine::Quit => {
            s.quit();
            return;
        }
        AfterLine::Help => show_help(s),
        AfterLine::Passwd => passwd_dialog(s),
        AfterLine::Stay => {}
    }
    s.call_on_name(view::SCROLL, |v: &mut MessagesScroll| {
        v.set_scroll_strategy(ScrollStrategy::StickToBottom);
    });
    render(s);
}

/// `/mute` and `/unmute`: the named window (`#room`, `@user`, `room`) or
/// the current one; saved to the settings file.
fn set_muted(app: &mut App, target: Option<String>, current: &WindowId, mute: bool) {
    let label = match target {
        Some(t) if t.starts_with('#') || t.starts_with('@') => t.to_ascii_lowercase(),
        Some(t) => format!("#{}", t.to_ascii_lowercase()),
        None => current.label(),
    };
    if mute {
        app.settings.notifications.muted.insert(label.clone());
        app.model
            .notice(format!("{label} muted: no sounds from it"));
    } else {
        app.settings.notifications.muted.remove(&label);
        app.model.notice(format!("{label} unmuted"));
    }
    app.save_settings();
}

/// `~/x` as `$HOME/x`; other paths unchanged.
fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

/// `/passwd`: the current password and the new one twice, in hidden
/// fields; checked here, then sent.
fn passwd_dialog(s: &mut Cursive) {
    let field = |name: &str| EditView::new().secret().with_name(name);
    let change = |s: &mut Cursive| {
        let get = |s: &mut Cursive, name: &str| {
            s.call_on_name(name, |v: &mut EditView| v.get_content().to_string())
                .unwrap_or_default()
        };
        let (old, new, again) = (get(s, "pw-old"), get(s, "pw-new"), get(s, "pw-again"));
        let problem = if new != again {
            Some("the new passwords differ".to_owned())
        } else {
            validate::password(&new).err().map(|e| e.message)
        };
        if let Some(problem) = problem {
            s.call_on_name("pw-text", |v: &mut TextView| v.set_content(problem));
            return;
        }
        s.pop_layer();
        with_app(s, |app| {
            app.net.send(NetCommand::ChangePassword { old, new })
        });
    };
    s.add_layer(
        OnEventView::new(
            Dialog::new()
                .title("Change your password")
                .content(
                    cursive::views::LinearLayout::vertical()
                        .child(
                            TextView::new("Current password, then the new one twice:")
                                .with_name("pw-text"),
                        )
                        .child(field("pw-old"))
                        .child(field("pw-new"))
                        .child(field("pw-again")),
                )
                .button("Change", change)
                .button("Cancel", |s| {
                    s.pop_layer();
                }),
        )
        .on_event(Key::Esc, |s| {
            s.pop_layer();
        }),
    );
}

/// `/ignore USER` and `/unignore USER`: kept in the settings file.
fn set_ignored(app: &mut App, user: &str, ignore: bool) {
    let m = &mut app.model;
    let user = user.trim_start_matches('@').to_ascii_lowercase();
    if ignore {
        m.ignored.insert(user.clone());
        m.notice(format!(
            "ignoring {user}'s room messages on this device (/unignore {user})"
        ));
    } else if m.ignored.remove(&user) {
        m.notice(format!("no longer ignoring {user}"));
    } else {
        m.error(format!("{user} is not ignored"));
        return;
    }
    app.settings.ignore = m.ignored.clone();
    app.save_settings();
}

/// Sends `body` to `window` (shown at once as pending).
fn send_text(app: &mut App, window: WindowId, body: String, reply_to: Option<i64>) {
    if !window.is_conversation() {
        app.model
            .error("this window is not a conversation: /join a room or /msg someone first");
        return;
    }
    if let Err(e) = validate::body(&body) {
        app.model.error(e.message);
        return;
    }
    if body.len() > app.max_body {
        app.model.error(too_long(body.len(), app.max_body));
        return;
    }
    let local = app.model.add_pending(&window, &body);
    if let Some(reply) = reply_to.and_then(|id| app.model.reply_ref(&window, id)) {
        app.model.set_pending_reply(local, reply);
    }
    app.net.send(NetCommand::Send {
        window,
        body,
        local,
        reply_to,
    });
    app.model.selected = None;
}

/// `for N minutes`, or `forever` without a limit.
fn for_minutes(minutes: Option<u64>, forever: &str) -> String {
    minutes.map_or_else(|| forever.to_owned(), |m| format!("for {m} minutes"))
}

fn too_long(len: usize, max: usize) -> String {
    format!(
        "that is {len} bytes; the server takes messages of up to {max} bytes (nothing was sent)"
    )
}

/// What the screen does after an input line (beyond the model's change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLine {
    /// Nothing more.
    Stay,
    /// Quit.
    Quit,
    /// Open the help screen.
    Help,
    /// Open the change-password dialog.
    Passwd,
}

/// Acts on one input line.
pub fn handle_line(app: &mut App, line: &str) -> AfterLine {
    let m = &mut app.model;
    let input = match commands::parse(line) {
        Ok(Some(input)) => input,
        Ok(None) => return AfterLine::Stay,
        Err(e) => {
            m.error(e);
            return AfterLine::Stay;
        }
    };
    let current = m.current().id.clone();
    let current_room = match &current {
        WindowId::Room(r) => Some(r.clone()),
        _ => None,
    };
    let say = send_text;
    match input {
        Input::Say(text) => say(app, current, text, None),
        Input::Command(cmd) => match cmd {
            Command::Me(action) => say(app, current, format!("{ACTION_PREFIX}{action}"), None),
            Command::Search(query) => app.net.send(NetCommand::Search(query)),
            Command::Reply(text) => match m.target_message(false) {
                Some((window, id, _)) if window == current => say(app, window, text, Some(id)),
                Some(_) => m.error("jump to the message first (Enter in the search window)"),
                None => m.error("nothing to reply to here"),
            },
            Command::Edit(text) => match m.target_message(true) {
                Some((_, id, _)) => {
                    if let Err(e) = validate::body(&text) {
                        m.error(e.message);
                    } else {
                        app.net.send(NetCommand::Edit { id, body: text });
                        m.selected = None;
                    }
                }
                None => m.error("select one of your messages (Alt-Up) to edit it"),
            },
            Command::Delete => match m.target_message(!selected_is_others(m)) {
                Some((_, id, _)) => {
                    app.net.send(NetCommand::Delete(id));
                    m.selected = None;
                }
                None => m.error("select a message (Alt-Up) to delete it"),
            },
            Command::React(emoji) => match m.target_message(false) {
                Some((window, id, _)) => {
                    let add = !m.reacted(&window, id, &emoji);
                    app.net.send(NetCommand::React { id, emoji, add });
                    m.selected = None;
                }
                None => m.error("nothing to react to here"),
            },
            Command::Join(room) => match validate::room(&room) {
                Ok(room) => app.net.send(NetCommand::Join(room)),
                Err(e) => m.error(e.message),
            },
            Command::Leave { room, reason } => match room.or(current_room) {
                Some(room) => match validate::room(&room) {
                    Ok(room) => app.net.send(NetCommand::Leave { room, reason }),
                    Err(e) => m.error(e.message),
                },
                None => m.error("not in a room: /leave ROOM"),
            },
            Command::Rooms => app.net.send(NetCommand::Rooms),
            Command::Whois(user) => {
                let user = user.trim_start_matches('@').to_ascii_lowercase();
                let rooms: Vec<String> = m
                    .windows
                    .iter()
                    .filter(|w| w.members.iter().any(|x| x.user == user))
                    .map(|w| w.id.label())
                    .collect();
                match m.status_of(&user) {
                    Some(status) => m.notice(format!("{user}: {status}; in {}", rooms.join(" "))),
                    None => m.notice(format!("{user} is in none of your rooms' member lists")),
                }
            }
            Command::Ignore(None) => {
                let list: Vec<&str> = m.ignored.iter().map(String::as_str).collect();
                let text = if list.is_empty() {
                    "ignoring nobody".to_owned()
                } else {
                    format!("ignoring: {}", list.join(" "))
                };
                m.notice(text);
            }
            Command::Ignore(Some(user)) => set_ignored(app, &user, true),
            Command::Unignore(user) => set_ignored(app, &user, false),
            Command::Kick { user, reason } => app.net.send(NetCommand::Plain {
                done: format!("{user} was kicked"),
                request: crate::protocol::Request::Kick { user, reason },
            }),
            Command::Ban {
                user,
                minutes,
                reason,
            } => app.net.send(NetCommand::Plain {
                done: format!("{user} is banned {}", for_minutes(minutes, "for good")),
                request: crate::protocol::Request::Ban {
                    user,
                    reason,
                    minutes,
                },
            }),
            Command::Quiet { user, minutes } => match current_room.clone() {
                Some(room) => app.net.send(NetCommand::Plain {
                    done: format!(
                        "{user} cannot write in #{room} {}",
                        for_minutes(minutes, "until /unquiet")
                    ),
                    request: crate::protocol::Request::Mute {
                        room,
                        user,
                        minutes,
                    },
                }),
                None => m.error("/quiet works in a room"),
            },
            Command::Unquiet(user) => match current_room.clone() {
                Some(room) => app.net.send(NetCommand::Plain {
                    done: format!("{user} may write in #{room} again"),
                    request: crate::protocol::Request::Unmute { room, user },
                }),
                None => m.error("/unquiet works in a room"),
            },
            Command::Unban(user) => app.net.send(NetCommand::Plain {
                done: format!("{user} is no longer banned"),
                request: crate::protocol::Request::Unban { user },
            }),
            Command::DeleteRoom(room) => match validate::room(&room) {
                Ok(room) => app.net.send(NetCommand::DeleteRoom(room)),
                Err(e) => m.error(e.message),
            },
            Command::Msg { to, text } => match validate::username(&to) {
                Ok(to) => {
                    let window = WindowId::Direct(to);
                    let new = m.index_of(&window).is_none();
                    let i = m.open(window.clone());
                    m.select(i);
                    if new {
                        m.windows[i].loading = true;
                        app.net.send(NetCommand::History {
                            window: window.clone(),
                            before: None,
                        });
                    }
                    if let Some(text) = text {
                        say(app, window, text, None);
                    }
                }
                Err(_) => m.error(format!("{to} is not a valid user name")),
            },
            Command::Users => match current_room {
                Some(room) => app.net.send(NetCommand::Who(room)),
                None => m.error("not in a room"),
            },
            Command::Topic(None) => {
                let topic = m.current().topic.clone();
                if topic.is_empty() {
                    m.notice("no topic is set");
                } else {
                    m.notice(format!("topic: {topic}"));
                }
            }
            Command::Topic(Some(topic)) => match current_room {
                Some(room) => app.net.send(NetCommand::Topic { room, topic }),
                None => m.error("not in a room"),
            },
            Command::Send(path) => match current {
                WindowId::Status | WindowId::Mentions => {
                    m.error("/send shares into a room or a direct conversation")
                }
                window => app.net.send(NetCommand::Upload {
                    window,
                    path: expand_home(&path),
                }),
            },
            Command::Download { id, dir } => app.net.send(NetCommand::Download {
                file: id,
                dir: dir.map(|d| expand_home(&d)),
            }),
            Command::Files => match current {
                WindowId::Status | WindowId::Mentions => {
                    m.error("/files lists a room's or a conversation's files")
                }
                window => app.net.send(NetCommand::Files(window)),
            },
            Command::Mentions => {
                let i = m.open(WindowId::Mentions);
                m.select(i);
            }
            Command::Mute(target) => set_muted(app, target, &current, true),
            Command::Unmute(target) => set_muted(app, target, &current, false),
            Command::Dnd => {
                let n = &mut app.settings.notifications;
                n.dnd = !n.dnd;
                let text = if n.dnd {
                    "do not disturb: all sounds off (/dnd again to turn them back on)"
                } else {
                    "do not disturb is off"
                };
                app.model.notice(text);
                app.save_settings();
            }
            Command::Sound(None) => {
                let n = &app.settings.notifications;
                let level = match n.sound {
                    SoundLevel::Off => "off",
                    SoundLevel::Mentions => "mentions and direct messages",
                    SoundLevel::All => "all messages",
                };
                let muted: Vec<&str> = n.muted.iter().map(String::as_str).collect();
                let text = format!(
                    "sounds: {level}{}; muted: {}",
                    if n.dnd { " (do not disturb is on)" } else { "" },
                    if muted.is_empty() {
                        "none".into()
                    } else {
                        muted.join(" ")
                    }
                );
                app.model.notice(text);
            }
            Command::Sound(Some(level)) => match SoundLevel::parse(&level) {
                Some(level) => {
                    app.settings.notifications.sound = level;
                    app.model.notice("sound setting saved");
                    app.save_settings();
                }
                None => app.model.error("usage: /sound off|mentions|all"),
            },
            Command::Away(message) => {
                let message = message.unwrap_or_else(|| "away".into());
                m.away = Some(message.clone());
                app.net.send(NetCommand::Away(Some(message)))
            }
            Command::Back => {
                m.away = None;
                app.net.send(NetCommand::Away(None))
            }
            Command::Close => match current {
                WindowId::Direct(_) | WindowId::Mentions | WindowId::Search => m.close(&current),
                WindowId::Room(r) => m.error(format!("use /leave to leave #{r}")),
                WindowId::Status => m.error("the status window stays"),
            },
            Command::Help => return AfterLine::Help,
            Command::Passwd => return AfterLine::Passwd,
            Command::Quit => {
                app.net.send(NetCommand::Quit);
                return AfterLine::Quit;
            }
        },
    }
    AfterLine::Stay
}

/// Applies a network event to the model (on the UI thread).
pub fn apply(app: &mut App, ev: NetEvent) -> bool {
    let m = &mut app.model;
    match ev {
        NetEvent::Connecting => m.conn = ConnState::Connecting,
        NetEvent::Queued {
            position,
            length,
            eta_secs,
        } => {
            m.conn = ConnState::Queued {
                position,
                length,
                eta_secs,
            }
        }
        NetEvent::Online {
            user,
            rooms,
            unread,
            max_body,
        } => {
            app.max_body = max_body;
            m.me = user;
            m.conn = ConnState::Online;
            m.logins += 1;
            m.on_rooms(&rooms);
            m.on_unread(&unread);
            m.status_notice(if m.outage { "reconnected" } else { "connected" });
            m.outage = false;
            // The server forgets an away message with the last session.
            if let Some(away) = m.away.clone() {
                app.net.send(NetCommand::Away(Some(away)));
            }
            if let Some(summary) = Model::away_summary(&unread) {
                // Once: in the status window, and in the window shown if
                // that is another one.
                if m.current != 0 {
                    m.notice(summary.clone());
                }
                m.status_notice(summary);
            }
            // Conversations with unread messages show them, not only the
            // ones delivered since (rooms get theirs with the rejoin).
            for u in &unread {
                if let (None, Some(with)) = (&u.room, &u.with) {
                    app.net.send(NetCommand::History {
                        window: WindowId::Direct(with.clone()),
                        before: None,
                    });
                }
            }
        }
        NetEvent::Offline { reason, retry_in } => {
            // One line per outage; the retries show in the status line.
            if !m.outage {
                m.outage = true;
                m.status_notice(format!("disconnected: {reason}"));
            }
            m.conn = ConnState::Offline { reason, retry_in };
        }
        NetEvent::Failed(reason) => {
            m.fail_all_pending("not connected");
            m.status_notice(format!("gave up: {reason}"));
            m.conn = ConnState::Failed(reason.clone());
            m.select(0);
            m.error(format!("{reason} — press Ctrl-C to quit"));
        }
        NetEvent::AuthFailed { reason, .. } => {
            m.conn = ConnState::Failed(reason.clone());
            m.status_notice(format!("login refused: {reason}"));
        }
        NetEvent::Server(ServerMsg::Message(msg)) => {
            let msg = *msg;
            if let Some(arrival) = m.on_message(&msg) {
                let incoming = Incoming {
                    window: &arrival.window,
                    mine: arrival.mine,
                    mention: arrival.mention,
                    file: arrival.file,
                };
                if let (Some(notifier), Some(sound)) = (
                    &app.notifier,
                    app.settings.notifications.sound_for(&incoming),
                ) {
                    notifier.play(sound);
                }
                if app.notifier.is_some() && app.settings.notifications.desktop_for(&incoming) {
                    // On the UI thread, between frames (as the bell).
                    let title = format!("{} in {}", msg.from, arrival.window.label());
                    terminal::write_raw(&notify::desktop_notification(&title, &msg.body));
                }
            }
        }
        NetEvent::Server(ServerMsg::Read { room, with, id, .. }) => {
            let window = match (room, with) {
                (Some(r), _) => WindowId::Room(r),
                (None, Some(w)) => WindowId::Direct(w),
                _ => return false,
            };
            m.on_read(&window, id);
        }
        NetEvent::Server(ServerMsg::Presence {
            room,
            user,
            event,
            message,
        }) => m.on_presence(&room, &user, event, message),
        NetEvent::Server(ServerMsg::TopicChanged { room, topic, by }) => {
            m.on_topic(&room, &topic, &by)
        }
        NetEvent::Server(ServerMsg::MessageEdited {
            id,
            room,
            to,
            from,
            body,
            ..
        }) => {
            let window = m.window_about(room.as_deref(), to.as_deref(), &from);
            m.on_edited(&window, id, &body);
        }
        NetEvent::Server(ServerMsg::MessageDeleted {
            id, room, to, from, ..
        }) => {
            let window = m.window_about(room.as_deref(), to.as_deref(), &from);
            m.on_deleted(&window, id);
        }
        NetEvent::Server(ServerMsg::Reaction {
            id,
            room,
            to,
            from,
            emoji,
            user,
            added,
            count,
        }) => {
            let window = m.window_about(room.as_deref(), to.as_deref(), &from);
            m.on_reaction(&window, id, &emoji, &user, added, count);
        }
        NetEvent::SearchResults {
            query,
            results,
            more,
        } => m.on_search(&query, &results, more),
        NetEvent::Jumped {
            window,
            messages,
            id,
        } => m.on_jumped(&window, &messages, id),
        // Another session of ours joined or left a room: this one shows
        // the same rooms, with the same numbers.
        NetEvent::Server(ServerMsg::YouJoined { room, .. }) => {
            m.open(WindowId::Room(room.clone()));
            m.status_notice(format!("you joined #{room} in another session"));
            app.net.send(NetCommand::Fetch(room));
        }
        NetEvent::Server(ServerMsg::YouLeft { room, .. }) => {
            m.close(&WindowId::Room(room.clone()));
            m.status_notice(format!("you left #{room} in another session"));
        }
        NetEvent::Server(ServerMsg::RoomDeleted { room, by }) => {
            m.close(&WindowId::Room(room.clone()));
            m.status_notice(format!("#{room} was deleted by {by}"));
        }
        NetEvent::Server(_) => {}
        NetEvent::Acked { local, id, ts } => m.on_ack(local, id, ts),
        NetEvent::PeerAway { window, message } => m.on_peer_away(&window, &message),
        NetEvent::NoSuchPeer(window) => {
            m.close(&window);
            m.error(format!(
                "there is no user {}",
                window.label().trim_start_matches('@')
            ));
        }
        NetEvent::SendFailed { local, reason } => m.on_send_failed(local, &reason),
        NetEvent::Joined {
            room,
            members,
            history,
            focus,
            live_presence,
        } => {
            let name = room.name.clone();
            m.on_joined(&room, members, &history, live_presence);
            // Switch to a room the user asked for, or, after the first
            // login (not a reconnect: whoever reads the status window
            // stays there), from the status window to the first room (its
            // history is loaded now, so the "new messages" divider can be
            // placed).
            if focus || (m.current == 0 && m.logins == 1) {
                let i = m.open(WindowId::Room(name));
                m.select(i);
            }
        }
        NetEvent::Left(room) => {
            m.close(&WindowId::Room(room.clone()));
            m.notice(format!("you left #{room}"));
        }
        NetEvent::History {
            window,
            messages,
            more,
        } => m.on_history(&window, &messages, more),
        NetEvent::Members { room, members } => m.on_members(&room, members),
        NetEvent::Users { room, members } => {
            // A large room's page can hold hundreds: name the first ones.
            const NAMED: usize = 50;
            let mut list: Vec<String> = members
                .iter()
                .take(NAMED)
                .map(|u| format!("{}{}", u.user, if u.online { "" } else { " (offline)" }))
                .collect();
            if members.len() > NAMED {
                list.push(format!("and {} more", members.len() - NAMED));
            }
            if let Some(i) = m.index_of(&WindowId::Room(room.clone())) {
                m.windows[i].members = members;
            }
            m.notice(format!("#{room}: {}", list.join(", ")));
        }
        NetEvent::RoomList(rooms) => {
            m.notice(format!("{} rooms:", rooms.len()));
            for r in rooms {
                let members = if r.members == 1 { "member" } else { "members" };
                m.notice(format!(
                    "  #{} ({} {members}) {}",
                    r.name, r.members, r.topic
                ));
            }
        }
        NetEvent::Transfer(t) => m.transfer = t,
        NetEvent::FileList(files) => {
            if files.is_empty() {
                m.notice("no files shared here yet");
            }
            for f in files {
                m.notice(format!(
                    "file {}: {} ({}, {}) from {} — /download {}",
                    f.file.id,
                    f.file.name,
                    crate::file_rules::human_size(f.file.size),
                    f.file.mime,
                    f.from,
                    f.file.id
                ));
            }
        }
        NetEvent::Notice(text) => m.notice(text),
        NetEvent::Error(text) => m.error(text),
        NetEvent::Stopped => return true,
    }
    false
}

/// Posts a network event to the UI thread.
pub fn post(s: &mut Cursive, ev: NetEvent) {
    let refused = match &ev {
        NetEvent::AuthFailed {
            reason,
            password,
            exists,
        } => Some((reason.clone(), password.clone(), *exists)),
        _ => None,
    };
    let stop = with_app(s, |app| apply(app, ev)).unwrap_or(false);
    if stop {
        s.quit();
        return;
    }
    render(s);
    if let Some((reason, password, exists)) = refused {
        login_dialog(s, &reason, &password, exists);
    }
}

/// Name of the password field in the login dialog.
pub const PASSWORD: &str = "password";
/// Name of the dialog's text (the reason, or what to fix).
const LOGIN_TEXT: &str = "login-text";

/// Asks for a password again after a refused login. Enter in the field
/// logs in; Register (offered unless the account is known to exist)
/// creates the account, with the password typed here or, if the field is
/// left empty, the one just refused, so nothing needs retyping.
fn login_dialog(s: &mut Cursive, reason: &str, refused: &str, exists: bool) {
    let user = with_app(s, |app| app.model.me.clone()).unwrap_or_default();
    let prompt = if exists {
        format!("Password for {user}:")
    } else if refused.is_empty() {
        format!("Password for {user} (or choose Register to create the account {user}):")
    } else {
        format!(
            "Password for {user}, or choose Register to create the account {user} \
             (with the password you typed, if you leave this empty):"
        )
    };
    let text = format!("{}.\n\n{prompt}", crate::text::for_terminal(reason));
    // Each button sends what was typed, or the refused password.
    let send = |register: bool| {
        let refused = refused.to_owned();
        move |s: &mut Cursive| {
            let typed = s
                .call_on_name(PASSWORD, |v: &mut EditView| v.get_content().to_string())
                .unwrap_or_default();
            let password = if typed.is_empty() {
                refused.clone()
            } else {
                typed
            };
            login_send(s, password, register)
        }
    };
    let submit = send(false);
    let field = EditView::new()
        .secret()
        .on_submit(move |s, _| submit(s))
        .with_name(PASSWORD);
    let mut dialog = Dialog::new()
        .title("Log in to confab")
        .content(
            cursive::views::LinearLayout::vertical()
                .child(TextView::new(text).with_name(LOGIN_TEXT))
                .child(field),
        )
        .button("Log in", send(false));
    if !exists {
        dialog = dialog.button("Register", send(true));
    }
    s.add_layer(dialog.button("Quit", quit));
}

/// The login dialog's Log in / Register: registering checks the password
/// locally, then asks for it once more (as `--register` does).
fn login_send(s: &mut Cursive, password: String, register: bool) {
    if let Err(e) = validate::password(&password) {
        let what = if register {
            "choose another password"
        } else {
            "type your password"
        };
        s.call_on_name(LOGIN_TEXT, |v: &mut TextView| {
            v.set_content(format!("{}: {what}:", e.message))
        });
        return;
    }
    s.pop_layer();
    if !register {
        credentials(s, password, false);
        return;
    }
    let confirm = move |s: &mut Cursive, again: &str| {
        s.pop_layer();
        if again == password {
            credentials(s, password.clone(), true);
        } else {
            login_dialog(s, "The passwords differ", "", false);
        }
    };
    s.add_layer(
        Dialog::new()
            .title("Create the account")
            .content(
                cursive::views::LinearLayout::vertical()
                    .child(TextView::new("Type the same password again, to be sure:"))
                    .child(
                        EditView::new()
                            .secret()
                            .on_submit(confirm)
                            .with_name(PASSWORD),
                    ),
            )
            .button("Cancel", |s| {
                s.pop_layer();
                login_dialog(s, "Not registered", "", false);
            }),
    );
}

fn credentials(s: &mut Cursive, password: String, register: bool) {
    with_app(s, |app| {
        app.model.conn = ConnState::Connecting;
        app.net.send(NetCommand::Credentials { password, register });
    });
    render(s);
}

#[cfg(test)]
mod tests {
    //! Screen tests on cursive's puppet backend: real views, real layout,
    //! fake terminal.

    use super::*;
    use crate::protocol::{ChatMessage, Member, RoomInfo};
    use cursive::Vec2;
    use cursive::backends::puppet::Backend;
    use cursive::backends::puppet::observed::{ObservedPieceInterface, ObservedScreen};
    use std::sync::mpsc::Receiver;

    struct Screen {
        runner: cursive::CursiveRunner<Cursive>,
        frames: cursive::reexports::crossbeam_channel::Receiver<ObservedScreen>,
        input: cursive::reexports::crossbeam_channel::Sender<Option<Event>>,
        commands: Receiver<NetCommand>,
    }

    impl Screen {
        fn new(width: usize, height: usize) -> Screen {
            let backend = Backend::init(Some(Vec2::new(width, height)));
            let frames = backend.stream();
            let input = backend.input();
            let (net, commands) = NetHandle::detached().unwrap();
            let mut siv = Cursive::new();
            setup(&mut siv, App::new(Model::new("alice"), net));
            let mut screen = Screen {
                runner: siv.into_runner(backend),
                frames,
                input,
                commands,
            };
            screen.post(NetEvent::Online {
                max_body: crate::protocol::MAX_BODY_LEN,
                unread: Vec::new(),
                user: "alice".into(),
                rooms: vec![RoomInfo {
                    name: "general".into(),
                    topic: "Welcome".into(),
                    members: 2,
                }],
            });
            screen.post(NetEvent::Joined {
                room: RoomInfo {
                    name: "general".into(),
                    topic: "Welcome".into(),
                    members: 2,
                },
                members: vec![
                    Member {
                        user: "alice".into(),
                        online: true,
                        away: None,
                    },
                    Member {
                        user: "bob".into(),
                        online: true,
                        away: None,
                    },
                ],
                history: vec![ChatMessage {
                    id: 1,
                    room: Some("general".into()),
                    to: None,
                    from: "bob".into(),
                    body: "hello alice".into(),
                    ts: 0,
                    file: None,
                    reply_to: None,
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    kind: Default::default(),
                    notice: false,
                }],
                focus: false,
                live_presence: true,
            });
            // Lay the screen out once, as a terminal start would, so that
            // the first key reaches the focused input line.
            screen.runner.refresh();
            screen
        }

        /// The next command sent, skipping read reports (tested apart).
        fn command(&mut self) -> Result<NetCommand, std::sync::mpsc::TryRecvError> {
            loop {
                match self.commands.try_recv()? {
                    NetCommand::MarkRead { .. } => {}
                    other => return Ok(other),
                }
            }
        }

        fn post(&mut self, ev: NetEvent) {
            post(&mut self.runner, ev);
        }

        fn keys(&mut self, events: impl IntoIterator<Item = Event>) {
            for ev in events {
                self.input.send(Some(ev)).unwrap();
                self.runner.step();
            }
        }

        fn type_line(&mut self, text: &str) {
            self.keys(text.chars().map(Event::Char));
            self.keys([Event::Key(Key::Enter)]);
        }

        fn text(&mut self) -> String {
            self.runner.refresh();
            let frame = self.frames.try_iter().last().expect("a frame");
            frame.as_strings().join("\n")
        }
    }

    #[test]
    fn paths_complete_with_folders_marked_and_hidden_files_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        std::fs::write(dir.path().join("cat.png"), b"x").unwrap();
        std::fs::write(dir.path().join("car.txt"), b"x").unwrap();
        std::fs::write(dir.path().join(".cache"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("cats")).unwrap();
        assert_eq!(
            path_completions(&format!("{base}/ca")),
            [
                format!("{base}/car.txt"),
                format!("{base}/cat.png"),
                format!("{base}/cats/")
            ]
        );
        assert_eq!(
            path_completions(&format!("{base}/.c")),
            [format!("{base}/.cache")]
        );
        assert!(path_completions("/no/such/dir/x").is_empty());
    }

    #[test]
    fn ctrl_w_deletes_the_word_before_the_cursor() {
        let mut edit = EditView::new().content("send the file now");
        edit.set_cursor("send the file".len());
        delete_word(&mut edit);
        assert_eq!(edit.get_content().as_str(), "send the  now");
        assert_eq!(edit.get_cursor(), "send the ".len());
        edit.set_cursor("send the ".len());
        delete_word(&mut edit);
        assert_eq!(edit.get_content().as_str(), "send  now");
    }

    #[test]
    fn screen_shows_status_windows_messages_and_users() {
        let mut screen = Screen::new(100, 20);
        let text = screen.text();
        assert!(text.contains("[alice online] #general — Welcome"), "{text}");
        assert!(text.contains("2 #general"), "{text}");
        assert!(text.contains("<bob> hello alice"), "{text}");
        assert!(text.contains("● bob"), "{text}");
    }

    #[test]
    fn a_forty_column_terminal_hides_the_side_lists_but_keeps_the_chat() {
        let mut screen = Screen::new(40, 12);
        let text = screen.text();
        assert!(text.contains("<bob> hello alice"), "{text}");
        assert!(!text.contains("windows"), "{text}");
        assert!(!text.contains("users"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn typing_a_line_sends_it_and_shows_it_pending_until_acked() {
        let mut screen = Screen::new(100, 20);
        screen.type_line("hi bob");
        let cmd = screen.command().expect("a command");
        let NetCommand::Send {
            window,
            body,
            local,
            ..
        } = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(
            (window, body.as_str()),
            (WindowId::Room("general".into()), "hi bob")
        );
        assert!(screen.text().contains("<alice> hi bob (sending…)"));
        screen.post(NetEvent::Acked {
            local,
            id: 2,
            ts: 0,
        });
        let text = screen.text();
        assert!(text.contains("<alice> hi bob"), "{text}");
        assert!(!text.contains("sending"), "{text}");
    }

    #[test]
    fn queue_position_shows_in_the_status_line_and_updates() {
        let mut screen = Screen::new(100, 20);
        screen.post(NetEvent::Queued {
            position: 3,
            length: 4,
            eta_secs: None,
        });
        assert!(
            screen
                .text()
                .contains("Server full — you are #3 in the queue")
        );
        screen.post(NetEvent::Queued {
            position: 1,
            length: 2,
            eta_secs: Some(5),
        });
        assert!(
            screen
                .text()
                .contains("you are #1 in the queue (about 5 s)")
        );
    }

    #[test]
    fn window_keys_switch_and_unread_counts_show() {
        let mut screen = Screen::new(100, 20);
        screen.post(NetEvent::Server(ServerMsg::Message(Box::new(
            ChatMessage {
                id: 7,
                room: None,
                to: Some("alice".into()),
                from: "bob".into(),
                body: "psst".into(),
                ts: 0,
                file: None,
                reply_to: None,
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                kind: Default::default(),
                notice: false,
            },
        ))));
        assert!(screen.text().contains("3 @bob (1)"));
        screen.keys([Event::AltChar('3')]);
        let text = screen.text();
        assert!(text.contains("[alice online] @bob"), "{text}");
        assert!(text.contains("new messages"), "{text}");
        screen.keys([Event::CtrlChar('n')]);
        assert!(screen.text().contains("[alice online] confab"));
    }

    #[test]
    fn tab_completes_nicks_and_errors_show_in_the_view() {
        let mut screen = Screen::new(100, 20);
        screen.keys("b".chars().map(Event::Char));
        screen.keys([Event::Key(Key::Tab), Event::Char('h'), Event::Char('i')]);
        screen.keys([Event::Key(Key::Enter)]);
        match screen.command().unwrap() {
            NetCommand::Send { body, .. } => assert_eq!(body, "bob: hi"),
            other => panic!("{other:?}"),
        }
        screen.type_line("/join bad name!");
        assert!(screen.text().contains("!! room names are"));
        screen.post(NetEvent::Error("no user ghost (no_such_user)".into()));
        assert!(screen.text().contains("!! no user ghost"));
    }

    #[test]
    fn page_up_at_the_top_asks_the_server_for_older_history_once() {
        let mut screen = Screen::new(100, 20);
        // Joined with one message of a room that may have more.
        with_app(&mut screen.runner, |app| {
            let i = app.model.current;
            app.model.windows[i].more_before = true;
        });
        screen.keys([Event::Key(Key::PageUp)]);
        match screen.command() {
            Ok(NetCommand::History { window, before }) => {
                assert_eq!(window, WindowId::Room("general".into()));
                assert_eq!(before, Some(1));
            }
            other => panic!("{other:?}"),
        }
        screen.keys([Event::Key(Key::PageUp)]);
        assert!(screen.command().is_err(), "no second request while loading");
        let older = ChatMessage {
            id: 0,
            room: Some("general".into()),
            to: None,
            from: "carol".into(),
            body: "ancient words".into(),
            ts: 0,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        };
        screen.post(NetEvent::History {
            window: WindowId::Room("general".into()),
            messages: vec![older],
            more: false,
        });
        let text = screen.text();
        let (a, b) = (
            text.find("ancient words").unwrap(),
            text.find("hello alice").unwrap(),
        );
        assert!(a < b, "older history goes above: {text}");
    }

    #[test]
    fn up_recalls_earlier_input() {
        let mut screen = Screen::new(100, 20);
        screen.type_line("first line");
        screen.type_line("second line");
        while screen.command().is_ok() {}
        screen.keys([
            Event::Key(Key::Up),
            Event::Key(Key::Up),
            Event::Key(Key::Enter),
        ]);
        match screen.command() {
            Ok(NetCommand::Send { body, .. }) => assert_eq!(body, "first line"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_shown_window_is_reported_read_and_the_summary_is_shown() {
        let mut screen = Screen::new(100, 20);
        // Joining showed #general with message 1: reported read.
        let mut reads = Vec::new();
        while let Ok(cmd) = screen.commands.try_recv() {
            if let NetCommand::MarkRead { window, id } = cmd {
                reads.push((window, id));
            }
        }
        assert_eq!(reads, [(WindowId::Room("general".into()), 1)]);
        screen.post(NetEvent::Online {
            max_body: crate::protocol::MAX_BODY_LEN,
            user: "alice".into(),
            rooms: vec![],
            unread: vec![crate::protocol::Unread {
                room: None,
                with: Some("bob".into()),
                count: 2,
                mentions: 0,
                last_read: 0,
                newest: 9,
            }],
        });
        let text = screen.text();
        assert!(
            text.contains("While you were away — 2 direct messages from bob"),
            "{text}"
        );
        assert!(text.contains("@bob (2)"), "{text}");
    }
}
