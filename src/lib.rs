//! confab: a secure terminal chat server and its client library.
//!
//! # Layout
//!
//! - [`protocol`]: frames and message types; pure encode/decode, no I/O.
//! - [`validate`]: naming and size rules for users, rooms, bodies, topics.
//! - [`connection`]: the one place where frames meet a (non-blocking) stream.
//! - [`poller`]: sleeping in `poll(2)` on a socket and a cross-thread waker.
//! - [`tls`]: TLS acceptor and connector set-up; certificate fingerprints.
//! - [`file_rules`]: which files may be shared (type by content, size, names).
//! - [`irc`]: IRC lines (parsing, formatting, stream splitting) for the IRC
//!   front end to come.
//! - [`mention`]: whether a message mentions a user.
//! - [`known_hosts`]: trust on first use of server certificates, like ssh.
//! - [`password`]: PBKDF2-HMAC-SHA256 password hashes.
//! - [`rate_limit`]: token buckets for flood control.
//! - [`text`]: which characters may hide or reorder text; terminal-safe
//!   printing of any string from the network or the database.
//! - [`store`]: the storage contract (the `Store` trait) and its SQLite
//!   backend, which holds all the SQL.
//! - [`config`]: server settings from flags, environment and TOML.
//! - [`admin`]: `confab-server admin ...` tasks on the database.
//! - [`server`]: accept loop, front door and wait queue, session threads,
//!   shared state, message writer, shutdown.
//! - [`tui`]: the full-screen terminal client (cursive) on the client library.
//! - [`bench`](mod@bench): load scenarios for `confab-bench` and `make bench`.
//! - [`client`]: the client library used by the `confab` binary, the tests
//!   and the benchmark.
//!
//! `ARCHITECTURE.md` explains how these fit together; `docs/PROTOCOL.md`
//! specifies the wire protocol.

#![deny(missing_docs)]

pub mod admin;
pub mod bench;
pub mod client;
pub mod config;
pub mod connection;
pub mod file_rules;
pub mod irc;
pub mod known_hosts;
pub mod manual;
pub mod mention;
pub mod password;
pub mod poller;
pub mod protocol;
pub mod rate_limit;
pub mod search;
pub mod server;
pub mod store;
pub mod text;
pub mod tls;
pub mod tui;
pub mod validate;
