//! Wire formats: how confab's typed events become bytes for one session.
//!
//! The server's core (request handlers, the hub, the message writer) speaks
//! confab's own typed events ([`ServerFrame`] / `ServerMsg`). Which bytes a
//! client receives is the business of its session's codec, named by a
//! [`Wire`]: confab's length-prefixed JSON frames, or IRC lines
//! (`crate::irc::events`) in one of the styles an IRC session's
//! capabilities ask for. (No IRC session exists yet: the listener and its
//! front end are still to come.)
//!
//! An event for many recipients travels as an [`Outgoing`]: the typed event
//! plus its encoding for each wire format, made the first time a recipient
//! of that format needs it. A room's fan-out therefore encodes once per
//! wire format in use, never once per recipient.
//!
//! **Invariant:** this module only converts values to bytes: no I/O, no
//! locks, no SQL.

use crate::irc::events::{Style, away_reply, encode_event};
use crate::irc::line::with_label;
use crate::protocol::{ServerFrame, ServerMsg, encode_json};
use std::cell::OnceCell;

/// A wire format a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    /// confab's protocol: a 5-byte header and a JSON payload per frame
    /// (docs/PROTOCOL.md).
    #[default]
    Confab,
    /// IRC lines, written in a style (tags, away-notify, read markers): what one IRC
    /// event looks like depends on the recipient's capabilities only, so
    /// an event is still encoded once per style in use.
    Irc(Style),
}

impl Wire {
    /// How many wire formats exist (the size of an [`Outgoing`]'s cache):
    /// confab's, and IRC in each of its eight styles.
    pub const COUNT: usize = 9;

    /// A number for this format, to keep it in an atomic.
    pub fn index(self) -> u8 {
        match self {
            Wire::Confab => 0,
            Wire::Irc(style) => {
                1 + u8::from(style.tags)
                    + 2 * u8::from(style.away_notify)
                    + 4 * u8::from(style.read_marker)
                    + 8 * u8::from(style.echo)
            }
        }
    }

    /// The format with this [`Wire::index`] (an unknown index is confab's).
    pub fn from_index(i: u8) -> Wire {
        match i {
            1..=16 => Wire::Irc(Style {
                tags: (i - 1) & 1 != 0,
                away_notify: (i - 1) & 2 != 0,
                read_marker: (i - 1) & 4 != 0,
                echo: (i - 1) & 8 != 0,
            }),
            _ => Wire::Confab,
        }
    }

    /// The slot of this format in an [`Outgoing`]'s cache.
    /// (The echo of a session's own messages changes only its acks, which
    /// are encoded per sender, so it has no slot of its own.)
    fn slot(self) -> usize {
        match self {
            Wire::Confab => 0,
            Wire::Irc(style) => {
                1 + usize::from(style.tags)
                    + 2 * usize::from(style.away_notify)
                    + 4 * usize::from(style.read_marker)
            }
        }
    }

    /// Encodes one frame for a session of this format. For IRC, only
    /// events are this module's (replies to IRC commands are numerics the
    /// IRC front end writes): a reply encodes to nothing here.
    pub fn encode(self, frame: &ServerFrame) -> Vec<u8> {
        match self {
            Wire::Confab => encode_json(frame),
            Wire::Irc(_) if frame.req.is_some() => Vec::new(),
            Wire::Irc(style) => encode_event(&frame.msg, style),
        }
    }
}

impl Wire {
    /// The sender's acknowledgement of a stored message (`ack`, a reply to
    /// request `req`): for an IRC session with echo-message, the message
    /// itself as every other recipient sees it; without, nothing (IRC has
    /// no acknowledgement).
    /// A direct message to someone away also gets IRC's `301` with their
    /// away message.
    /// With a `label` (IRC's labeled-response), the echo's first line
    /// carries it.
    pub fn encode_ack(
        self,
        req: Option<u64>,
        ack: ServerMsg,
        message: &Outgoing,
        label: Option<&str>,
    ) -> Vec<u8> {
        let Wire::Irc(style) = self else {
            return encode_json(&ServerFrame::reply(req, ack));
        };
        let mut out = Vec::new();
        if let (
            ServerMsg::Ack {
                away: Some(away), ..
            },
            ServerMsg::Message(m),
        ) = (&ack, message.msg())
            && let Some(line) = away_reply(m, away)
        {
            line.encode_into(&mut out);
        }
        if style.echo {
            match label {
                Some(label) => out.extend(with_label(message.bytes(self), label)),
                None => out.extend_from_slice(message.bytes(self)),
            }
        }
        out
    }
}

/// One event on its way to any number of sessions, encoded at most once
/// per wire format.
#[derive(Debug)]
pub struct Outgoing {
    frame: ServerFrame,
    encoded: [OnceCell<Vec<u8>>; Wire::COUNT],
}

impl Outgoing {
    /// Wraps a frame; nothing is encoded yet.
    pub fn new(frame: ServerFrame) -> Outgoing {
        Outgoing {
            frame,
            encoded: Default::default(),
        }
    }

    /// An unsolicited event (no request id).
    pub fn event(msg: ServerMsg) -> Outgoing {
        Outgoing::new(ServerFrame::event(msg))
    }

    /// The event itself.
    pub fn msg(&self) -> &ServerMsg {
        &self.frame.msg
    }

    /// The event's bytes in `wire`'s format, encoded on first use.
    pub fn bytes(&self, wire: Wire) -> &[u8] {
        self.encoded[wire.slot()].get_or_init(|| wire.encode(&self.frame))
    }
}

/// The bytes of several events back to back, per wire format, built on
/// first use (a run of messages pushed to each recipient in one go).
#[derive(Debug, Default)]
pub struct Concatenated {
    encoded: [OnceCell<Vec<u8>>; Wire::COUNT],
}

impl Concatenated {
    /// All of `events` in `wire`'s format, in order.
    pub fn bytes<'a, I>(&'a self, wire: Wire, events: I) -> &'a [u8]
    where
        I: IntoIterator<Item = &'a Outgoing>,
    {
        self.encoded[wire.slot()].get_or_init(|| {
            let mut all = Vec::new();
            for e in events {
                all.extend_from_slice(e.bytes(wire));
            }
            all
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMsg;

    #[test]
    fn an_outgoing_event_is_encoded_once_and_matches_the_codec() {
        let ev = Outgoing::event(ServerMsg::Pong);
        let first = ev.bytes(Wire::Confab).as_ptr();
        assert_eq!(
            ev.bytes(Wire::Confab).as_ptr(),
            first,
            "cached, not re-encoded"
        );
        assert_eq!(
            ev.bytes(Wire::Confab),
            &encode_json(&ServerFrame::event(ServerMsg::Pong))[..]
        );
    }

    #[test]
    fn each_irc_style_has_its_own_encoding_cached_beside_confabs() {
        let mut m = crate::protocol::ChatMessage::new(5, "alice".into(), "hi".into(), 0);
        m.room = Some("rust".into());
        let ev = Outgoing::event(ServerMsg::Message(Box::new(m)));
        let plain = Wire::Irc(Style::default());
        let tagged = Wire::Irc(Style {
            tags: true,
            ..Style::default()
        });
        assert_eq!(
            ev.bytes(plain),
            b":alice!alice@confab PRIVMSG #rust :hi\r\n"
        );
        assert!(
            ev.bytes(tagged)
                .starts_with(b"@time=1970-01-01T00:00:00.000Z;msgid=5")
        );
        assert_eq!(
            ev.bytes(Wire::Confab),
            &encode_json(&ServerFrame::event(ev.msg().clone()))[..],
            "confab's own format beside"
        );
        let styles: Vec<Style> = (0..16u8)
            .map(|bits| Style {
                tags: bits & 1 != 0,
                away_notify: bits & 2 != 0,
                read_marker: bits & 4 != 0,
                echo: bits & 8 != 0,
            })
            .collect();
        for s in &styles {
            assert_eq!(Wire::from_index(Wire::Irc(*s).index()), Wire::Irc(*s));
        }
        let mut seen: Vec<usize> = styles
            .iter()
            .filter(|s| !s.echo)
            .map(|s| Wire::Irc(*s).slot())
            .collect();
        seen.push(Wire::Confab.slot());
        seen.sort_unstable();
        assert_eq!(seen, (0..Wire::COUNT).collect::<Vec<_>>(), "one slot each");
        // Replies are the IRC front end's own.
        assert!(
            plain
                .encode(&ServerFrame::reply(Some(1), ServerMsg::Ok))
                .is_empty()
        );
    }

    #[test]
    fn concatenated_events_keep_their_order() {
        let a = Outgoing::event(ServerMsg::Pong);
        let b = Outgoing::event(ServerMsg::Ok);
        let all = Concatenated::default();
        let mut want = a.bytes(Wire::Confab).to_vec();
        want.extend_from_slice(b.bytes(Wire::Confab));
        assert_eq!(all.bytes(Wire::Confab, [&a, &b]), &want[..]);
    }
}
