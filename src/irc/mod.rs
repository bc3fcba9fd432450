//! IRC, as a second way in (issue 19): the pieces that need no socket.
//!
//! - [`line`]: IRC lines (RFC 1459/2812 framing, IRCv3 message tags):
//!   parsing, formatting, and splitting a byte stream into lines.
//! - [`events`]: confab's events (`ServerMsg`) as the IRC lines a session
//!   receives.
//!
//! Not built yet: the listener and the session front end that maps IRC
//! commands onto confab's requests (registration, SASL, JOIN, PRIVMSG,
//! ...), the numerics for replies, and the `Wire` variant that puts
//! [`events`] into the hub's fan-out.

pub mod events;
pub mod line;
