//! Request handlers, one module per concern, as mini-redis keeps one file
//! per command:
//!
//! - [`account`]: hello, register, login, resume, logout, password, away;
//! - [`rooms`]: room list, create, join, leave, topic, who;
//! - [`messages`]: say, dm (both with replies), history, mark_read;
//! - [`editing`]: edit, delete, react, unreact;
//! - [`search`](mod@search): search;
//! - [`files`]: upload (and its data frames), download, file lists;
//! - [`moderation`]: kick, ban, unban, mute, unmute, bans, stats.
//!
//! A handler takes the request's typed fields, the logged-in [`User`] (if
//! the request needs one) and a narrow context ([`Cx`]: the shared
//! [`Services`], the calling session's id, outbox and address, and the
//! session's own [`SessionState`]), and returns a typed [`Answer`] or a
//! [`Refusal`]. It never sees a socket or a wire format: the session encodes
//! the answer in its own codec. So handlers run in unit tests against a
//! temporary database and an outbox without a connection (tests at the
//! bottom of this file).
//!
//! Adding a request means adding its protocol type, one function in the
//! module of its concern, and one line in [`dispatch`].

pub mod account;
pub mod editing;
pub mod files;
pub mod messages;
pub mod moderation;
pub mod rooms;
pub mod search;

use super::hub::{RoomRef, SessionId};
use super::outbox::Outbox;
use super::services::Services;
use super::transfer::{Download, Upload};
use crate::protocol::{ErrorCode, Request, ServerMsg};
use crate::rate_limit::FloodControl;
use crate::store::{StoreError, UserId, UserRecord};
use crate::validate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A logged-in user, as handlers see the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Database id.
    pub id: UserId,
    /// Canonical name.
    pub name: String,
}

/// What one session keeps for its handlers between requests.
pub struct SessionState {
    /// Flood control for `say` and `dm`.
    pub flood: FloodControl,
    /// The digest of the resume token this session logged in with or was
    /// given, so `logout` can revoke it.
    pub token_digest: Option<String>,
    /// The upload being received, if any (one at a time).
    pub upload: Option<Upload>,
    /// The last upload refused mid-stream, and why: its remaining data
    /// frames are ignored and its `upload_end` gets the same error.
    pub rejected_upload: Option<(u32, Refusal)>,
    /// The download being sent, if any (one at a time); the session loop
    /// pumps it.
    pub download: Option<Download>,
    /// Next stream id for uploads and downloads.
    next_stream: u32,
}

impl SessionState {
    /// A fresh session's state, with flood control set by the limits.
    pub fn new(services: &Services, now: Instant) -> SessionState {
        SessionState {
            flood: FloodControl::new(services.limits.flood_burst, services.limits.flood_rate, now),
            token_digest: None,
            upload: None,
            rejected_upload: None,
            download: None,
            next_stream: 1,
        }
    }

    /// A new stream id for an upload or a download.
    fn next_stream(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream += 1;
        id
    }
}

/// The narrow context a handler runs in.
pub struct Cx<'a> {
    /// The server's shared services.
    pub svc: &'a Services,
    /// The request's id, which the message writer's `ack` carries.
    pub req: Option<u64>,
    /// The session that sent the request.
    pub session: SessionId,
    /// Its outbox: where the message writer queues the `ack` of a message.
    pub outbox: &'a Arc<Outbox>,
    /// The client's address (throttling, audit).
    pub peer: SocketAddr,
    /// The session's own state.
    pub state: &'a mut SessionState,
    /// An IRC request's label (labeled-response), for the writer's echo;
    /// `None` for confab's requests.
    pub label: Option<String>,
}

impl Cx<'_> {
    /// Records an event in the audit table, with the caller's address; a
    /// failure is logged, never passed on.
    fn audit(&self, user: Option<&str>, action: &str, detail: &str) {
        let ip = self.peer.ip().to_string();
        if let Err(e) = self.svc.store.audit(user, Some(&ip), action, detail) {
            log::warn!("audit failed: {e}");
        }
    }
}

/// What a handler answers when it succeeds.
#[derive(Debug)]
pub enum Answer {
    /// Reply to the request with this.
    Reply(ServerMsg),
    /// No reply now: the message writer acks the request once the message
    /// is stored.
    Later,
    /// Reply, then end the session once the reply is written.
    ReplyAndEnd(ServerMsg),
    /// `hello` was accepted: reply (`welcome`); the session may log in.
    Greeted(ServerMsg),
    /// Logged in: the session now belongs to this user.
    Entered(Entry),
}

/// A completed login.
#[derive(Debug)]
pub struct Entry {
    /// Who logged in.
    pub user: User,
    /// The reply (`logged_in`).
    pub reply: ServerMsg,
    /// Events to send right after it (direct messages received while
    /// away).
    pub replay: Vec<ServerMsg>,
}

/// Why a request was refused: an `error` reply (or, for a few codes, the
/// session's last words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The wire error code.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// Whether the session ends after saying this (in a `closing` event
    /// instead of an `error` reply).
    pub fn ends_session(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::Flooding | ErrorCode::VersionMismatch | ErrorCode::HelloRequired
        )
    }
}

impl From<validate::Invalid> for Refusal {
    fn from(i: validate::Invalid) -> Refusal {
        Refusal::new(i.code, i.message)
    }
}

/// A database failure: logged in full, told to the client without detail.
impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Refusal {
        log::error!("database: {err}");
        Refusal::new(
            ErrorCode::ServerError,
            "internal error; the request had no effect",
        )
    }
}

/// A refusal from the file transfer code.
impl From<(ErrorCode, String)> for Refusal {
    fn from((code, message): (ErrorCode, String)) -> Refusal {
        Refusal::new(code, message)
    }
}

/// A handler's outcome.
pub type Handled = Result<Answer, Refusal>;

/// Runs a logged-in user's request with the handler of its concern.
/// (`hello`, `ping`, `quit` and the login requests are the session's to
/// route, by its phase.)
pub fn dispatch(cx: &mut Cx, me: &User, request: Request) -> Handled {
    match request {
        Request::Rooms => rooms::list(cx),
        Request::CreateRoom { room, topic } => rooms::create(cx, me, &room, &topic),
        Request::Join { room } => rooms::join(cx, me, &room),
        Request::Leave { room, reason } => rooms::leave(cx, me, &room, reason.as_deref()),
        Request::Topic { room, topic } => rooms::topic(cx, me, &room, &topic),
        Request::DeleteRoom { room } => rooms::delete(cx, me, &room),
        Request::Who { room, after, limit } => rooms::who(cx, &room, after.as_deref(), limit),
        Request::Say {
            room,
            body,
            reply_to,
            notice,
        } => messages::say(cx, me, &room, body, reply_to, notice),
        Request::Dm {
            to,
            body,
            reply_to,
            notice,
        } => messages::dm(cx, me, &to, body, reply_to, notice),
        Request::Edit { id, body } => editing::edit(cx, me, id, body),
        Request::Delete { id, reason } => editing::delete(cx, me, id, &reason),
        Request::React { id, emoji } => editing::react(cx, me, id, &emoji),
        Request::Unreact { id, emoji } => editing::unreact(cx, me, id, &emoji),
        Request::Search {
            query,
            before,
            limit,
        } => search::search(cx, me, &query, before, limit),
        Request::History {
            room,
            with,
            before,
            around,
            limit,
        } => {
            let window = match (around, before) {
                (Some(id), None) => messages::Window::Around(id),
                (None, before) => messages::Window::Before(before),
                (Some(_), Some(_)) => {
                    return Err(Refusal::new(
                        ErrorCode::BadRequest,
                        "history takes `before` or `around`, not both",
                    ));
                }
            };
            messages::history(cx, me, room, with, window, limit)
        }
        Request::MarkRead { room, with, id } => messages::mark_read(cx, me, room, with, id),
        Request::Upload {
            room,
            to,
            name,
            size,
        } => files::upload(cx, me, room, to, &name, size),
        Request::UploadEnd { upload, sha256 } => files::upload_end(cx, me, upload, &sha256),
        Request::UploadCancel { upload } => files::upload_cancel(cx, upload),
        Request::Download { file } => files::download(cx, me, file),
        Request::Files { room, with } => files::list(cx, me, room, with),
        Request::Away { message } => account::away(cx, me, message),
        Request::Logout => account::logout(cx),
        Request::ChangePassword { old, new } => account::change_password(cx, me, &old, &new),
        Request::Kick { user, reason } => moderation::kick(cx, me, &user, &reason),
        Request::Ban {
            user,
            reason,
            minutes,
        } => moderation::ban(cx, me, &user, &reason, minutes),
        Request::Unban { user } => moderation::unban(cx, me, &user),
        Request::Mute {
            room,
            user,
            minutes,
        } => moderation::mute(cx, me, &room, &user, minutes),
        Request::Unmute { room, user } => moderation::unmute(cx, me, &room, &user),
        Request::Bans => moderation::bans(cx, me),
        Request::Stats => moderation::stats(cx, me),
        Request::Register { .. } | Request::Login { .. } | Request::Resume { .. } => {
            Err(Refusal::new(
                ErrorCode::AlreadyLoggedIn,
                "this session is already logged in",
            ))
        }
        Request::Hello { .. } | Request::Ping | Request::Quit => Err(Refusal::new(
            ErrorCode::BadRequest,
            "this request is answered by the session",
        )),
    }
}

/// A room that exists, by the name a client gave.
fn existing_room(svc: &Services, raw: &str) -> Result<RoomRef, Refusal> {
    let name = validate::room(raw)?;
    svc.hub
        .room(&name)
        .ok_or_else(|| Refusal::new(ErrorCode::NoSuchRoom, format!("no room #{name}")))
}

/// A room that exists and has `user` as a member.
fn member_room(svc: &Services, raw: &str, user: UserId) -> Result<RoomRef, Refusal> {
    let room = existing_room(svc, raw)?;
    if svc.hub.is_member(&room.name, user) {
        Ok(room)
    } else {
        Err(Refusal::new(
            ErrorCode::NotMember,
            format!("you are not in #{}; join it first", room.name),
        ))
    }
}

/// A user that exists, by the name a client gave.
fn existing_user(svc: &Services, raw: &str) -> Result<UserRecord, Refusal> {
    let name =
        validate::username(raw).map_err(|_| Refusal::new(ErrorCode::NoSuchUser, "no such user"))?;
    svc.store
        .find_user(&name)?
        .ok_or_else(|| Refusal::new(ErrorCode::NoSuchUser, format!("no user {name}")))
}

/// A conversation a request names: a room the caller is in, or another
/// user (a direct conversation).
enum Conversation {
    Room(RoomRef),
    Direct(UserRecord),
}

/// Resolves a request's `room` and `with` (or `to`) fields, exactly one of
/// which must be given. `what` names the request and `peer_field` its
/// user field, for the error.
fn conversation(
    svc: &Services,
    me: &User,
    room: Option<String>,
    peer: Option<String>,
    what: &str,
    peer_field: &str,
) -> Result<Conversation, Refusal> {
    match (room, peer) {
        (Some(room), None) => Ok(Conversation::Room(member_room(svc, &room, me.id)?)),
        (None, Some(peer)) => Ok(Conversation::Direct(existing_user(svc, &peer)?)),
        _ => Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("{what} needs exactly one of `room` and `{peer_field}`"),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Handlers run against real services (a temporary SQLite database,
    //! the real hub and message writer) and outboxes without a connection.

    use super::*;
    use crate::config::ServerConfig;
    use crate::protocol::ServerMsg;
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// Services on a temporary directory, with cheap password hashing.
    pub(crate) struct TestServer {
        pub svc: Services,
        _writer: JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl TestServer {
        pub(crate) fn new(admins: &[&str]) -> TestServer {
            let dir = tempfile::tempdir().unwrap();
            let config = ServerConfig {
                db: dir.path().join("t.db"),
                data_dir: dir.path().to_path_buf(),
                password_iterations: 1000,
                admins: admins.iter().map(|a| a.to_string()).collect(),
                ..ServerConfig::default()
            };
            let store = crate::store::open(&config.db, 4).unwrap();
            let (svc, writer) = Services::start(&config, store).unwrap();
            TestServer {
                svc,
                _writer: writer,
                _dir: dir,
            }
        }

        /// A session (id `sid`, attached to the hub with an outbox without a
        /// connection) that has not logged in.
        pub(crate) fn anonymous(&self, sid: SessionId) -> TestSession {
            let outbox = Arc::new(Outbox::new(1 << 20));
            self.svc.hub.attach(sid, outbox.clone());
            TestSession {
                sid,
                outbox,
                state: SessionState::new(&self.svc, Instant::now()),
                user: None,
            }
        }

        /// A session (id `sid`, an outbox with no connection) that logs in
        /// as a new user `name`.
        pub(crate) fn session(&self, sid: SessionId, name: &str) -> TestSession {
            let mut s = self.anonymous(sid);
            let entered = s.run(self, |cx| account::register(cx, name, "a good password"));
            match entered {
                Ok(Answer::Entered(e)) => s.user = Some(e.user),
                other => panic!("register {name}: {other:?}"),
            }
            s.outbox.take();
            s
        }
    }

    pub(crate) struct TestSession {
        pub sid: SessionId,
        pub outbox: Arc<Outbox>,
        pub state: SessionState,
        pub user: Option<User>,
    }

    impl TestSession {
        pub(crate) fn run<T>(&mut self, server: &TestServer, f: impl FnOnce(&mut Cx) -> T) -> T {
            let mut cx = Cx {
                svc: &server.svc,
                req: Some(1),
                session: self.sid,
                outbox: &self.outbox,
                peer: "127.0.0.1:4000".parse().unwrap(),
                state: &mut self.state,
                label: None,
            };
            f(&mut cx)
        }

        /// Runs a logged-in request through [`dispatch`].
        pub(crate) fn request(&mut self, server: &TestServer, request: Request) -> Handled {
            let me = self.user.clone().expect("logged in");
            self.run(server, |cx| dispatch(cx, &me, request))
        }

        /// Waits (with a deadline) until the outbox holds bytes containing
        /// `needle`; returns everything taken.
        pub(crate) fn wait_for(&self, needle: &str) -> String {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = String::new();
            while Instant::now() < deadline {
                seen.push_str(&String::from_utf8_lossy(&self.outbox.take().0));
                if seen.contains(needle) {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("{needle:?} never arrived; got {seen:?}");
        }
    }

    fn code(h: Handled) -> ErrorCode {
        match h {
            Err(r) => r.code,
            Ok(a) => panic!("expected a refusal, got {a:?}"),
        }
    }

    #[test]
    fn a_message_is_acked_by_the_writer_and_reaches_the_other_member() {
        let server = TestServer::new(&[]);
        let mut alice = server.session(1, "alice");
        let bob = server.session(2, "bob");
        let said = alice.request(
            &server,
            Request::Say {
                room: "general".into(),
                body: "hello bob".into(),
                reply_to: None,
                notice: false,
            },
        );
        assert!(matches!(said, Ok(Answer::Later)), "{said:?}");
        alice.wait_for("\"ack\"");
        bob.wait_for("hello bob");
        let me = alice.user.clone().unwrap();
        let history = alice.run(&server, |cx| {
            messages::history(
                cx,
                &me,
                Some("general".into()),
                None,
                messages::Window::Before(None),
                None,
            )
        });
        let Ok(Answer::Reply(ServerMsg::History { messages, .. })) = history else {
            panic!("{history:?}");
        };
        assert_eq!(messages.last().unwrap().body, "hello bob");
    }

    #[test]
    fn requests_about_rooms_check_existence_and_membership() {
        let server = TestServer::new(&[]);
        let mut alice = server.session(1, "alice");
        let mut bob = server.session(2, "bob");
        let create = alice.request(
            &server,
            Request::CreateRoom {
                room: "rust".into(),
                topic: "crabs".into(),
            },
        );
        assert!(matches!(
            create,
            Ok(Answer::Reply(ServerMsg::Joined { .. }))
        ));
        let say = |room: &str| Request::Say {
            room: room.into(),
            body: "hi".into(),
            reply_to: None,
            notice: false,
        };
        assert_eq!(
            code(bob.request(&server, say("rust"))),
            ErrorCode::NotMember
        );
        assert_eq!(
            code(bob.request(&server, say("nowhere"))),
            ErrorCode::NoSuchRoom
        );
        let join = bob.request(
            &server,
            Request::Join {
                room: "RUST".into(),
            },
        );
        assert!(matches!(join, Ok(Answer::Reply(ServerMsg::Joined { .. }))));
        alice.wait_for("\"join\"");
        assert!(matches!(
            bob.request(&server, say("rust")),
            Ok(Answer::Later)
        ));
    }

    #[test]
    fn admin_requests_need_the_right_and_kick_ends_the_sessions() {
        let server = TestServer::new(&[]);
        let mut boss = server.session(1, "boss");
        let mut eve = server.session(2, "eve");
        server.svc.store.set_admin("boss", true).unwrap();
        let kick = |user: &str| Request::Kick {
            user: user.into(),
            reason: "spam".into(),
        };
        assert_eq!(
            code(eve.request(&server, kick("boss"))),
            ErrorCode::Forbidden
        );
        assert!(matches!(
            boss.request(&server, kick("eve")),
            Ok(Answer::Reply(ServerMsg::Ok))
        ));
        assert!(eve.outbox.flags().closing, "eve's session was told to end");
        eve.wait_for("kicked by boss: spam");
        let audit = server.svc.store.audit_log(10).unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "kick" && a.detail.contains("eve"))
        );
    }

    #[test]
    fn a_configured_admin_name_cannot_be_registered() {
        let server = TestServer::new(&["boss"]);
        let mut anon = server.anonymous(9);
        let claim = anon.run(&server, |cx| {
            account::register(cx, "Boss", "a good password")
        });
        assert_eq!(code(claim), ErrorCode::UserExists);
        assert!(server.svc.store.find_user("boss").unwrap().is_none());
    }

    #[test]
    fn a_wrong_password_is_refused_counted_and_audited() {
        let server = TestServer::new(&[]);
        let _alice = server.session(1, "alice");
        let mut anon = server.anonymous(9);
        let login = anon.run(&server, |cx| account::login(cx, "alice", "not it"));
        assert_eq!(code(login), ErrorCode::AuthFailed);
        let audit = server.svc.store.audit_log(1).unwrap();
        assert_eq!(audit[0].action, "login_failed");
        assert_eq!(audit[0].user.as_deref(), Some("alice"));
        let good = anon.run(&server, |cx| account::login(cx, "alice", "a good password"));
        assert!(matches!(good, Ok(Answer::Entered(_))), "{good:?}");
    }
}
