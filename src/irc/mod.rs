//! IRC, as a second way in (issue 19): the pieces that need no socket.
//!
//! - [`line`]: IRC lines (RFC 1459/2812 framing, IRCv3 message tags):
//!   parsing, formatting, and splitting a byte stream into lines.
//!
//! The listener and the session front end that map IRC commands onto
//! confab's requests and confab's events onto IRC lines are not built yet.

pub mod line;
