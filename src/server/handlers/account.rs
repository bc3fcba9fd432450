//! Account requests: `hello`, `register`, `login`, `resume`, `logout`,
//! `change_password`, and `away` (the user's own status).
//!
//! Logins go through `Auth`: the throttle is checked first, the PBKDF2
//! verification (or a dummy one, for an unknown name, so both cost the
//! same) runs under the hashing bound (`Auth`), and every outcome is audited. A
//! successful login ends in [`enter`], which registers the session with
//! the hub and gathers what the user missed.

use super::{Answer, Cx, Entry, Handled, Refusal, User};
use crate::protocol::{self, ErrorCode, PROTOCOL_VERSION, ServerMsg};
use crate::server::auth::{Attempt, Proof};
use crate::store::{UserId, now_ms};
use crate::validate;

/// Most offline direct messages replayed at login (older ones stay in
/// history).
const OFFLINE_DM_REPLAY: u32 = 1000;

/// The first request: checks the protocol version and says what this
/// server allows.
pub fn hello(cx: &mut Cx, version: u32, client: &str) -> Handled {
    if version != PROTOCOL_VERSION {
        return Err(Refusal::new(
            ErrorCode::VersionMismatch,
            format!(
                "this server speaks protocol version {PROTOCOL_VERSION}, the client {version}; upgrade the older side"
            ),
        ));
    }
    log::debug!(
        "session {}: hello from {:?}",
        cx.session,
        client.chars().take(64).collect::<String>()
    );
    let svc = cx.svc;
    Ok(Answer::Greeted(ServerMsg::Welcome {
        version: PROTOCOL_VERSION,
        server: format!("confab-server {}", env!("CARGO_PKG_VERSION")),
        max_body: svc.limits.max_message_len,
        max_request: svc.limits.max_request_len,
        max_file: svc.file_rules.max_size,
        file_types: svc
            .file_rules
            .allowed
            .iter()
            .map(|k| format!("{k:?}").to_ascii_lowercase())
            .collect(),
        flood_burst: svc.limits.flood_burst,
        flood_refill_ms: refill_ms(svc.limits.flood_rate),
        flood_strikes: crate::rate_limit::STRIKE_BURST,
        features: protocol::FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        edit_window_s: svc.limits.edit_window.as_secs(),
        max_reactions: protocol::MAX_REACTIONS,
    }))
}

/// Milliseconds per token at `rate` tokens per second (0 for no refill).
fn refill_ms(rate: f64) -> u64 {
    if rate > 0.0 {
        (1000.0 / rate).round().max(1.0) as u64
    } else {
        0
    }
}

/// Creates an account (which starts in `general`) and logs it in.
pub fn register(cx: &mut Cx, user: &str, pw: &str) -> Handled {
    let user = validate::username(user)?;
    validate::password(pw)?;
    if cx.svc.admins.contains(&user) {
        // A configured admin name without an account: only an operator may
        // create it, or anyone could claim admin rights by registering it.
        cx.audit(Some(&user), "register_reserved", "");
        return Err(Refusal::new(
            ErrorCode::UserExists,
            format!("the name {user} is reserved"),
        ));
    }
    let hash = cx
        .svc
        .auth
        .hash(pw)
        .map_err(|e| Refusal::new(ErrorCode::ServerError, e.to_string()))?;
    let user_id = match cx.svc.store.create_user(&user, &hash) {
        Ok(id) => id,
        Err(crate::store::StoreError::UserExists) => {
            return Err(Refusal::new(
                ErrorCode::UserExists,
                format!("the name {user} is taken"),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    log::info!("registered {user} from {}", cx.peer);
    cx.svc.auth.remember(&user, cx.peer.ip());
    cx.audit(Some(&user), "register", "");
    // The new user is in `general` in the database; mirror it.
    cx.svc.hub.add_member("general", user_id, &user);
    let token = issue_token(cx, user_id);
    enter(cx, user_id, user, token)
}

/// Logs in with a password.
pub fn login(cx: &mut Cx, user: &str, pw: &str) -> Handled {
    let me = check_password(cx, user, pw)?;
    let token = issue_token(cx, me.id);
    enter(cx, me.id, me.name, token)
}

/// The first half of a password login: the throttle, the password, a ban;
/// audited as a login. The IRC front end checks SASL credentials with it
/// before the IRC registration is complete, and enters with
/// [`enter_checked`] once it is.
pub fn check_password(cx: &mut Cx, user: &str, pw: &str) -> Result<User, Refusal> {
    let name = user.to_ascii_lowercase();
    let attempt = admit_attempt(cx, &name, Proof::Password)?;
    let record = match validate::username(user) {
        Ok(name) => cx.svc.store.find_user(&name)?,
        Err(_) => None,
    };
    // Verified even for unknown users, under the hashing bound, so both cases
    // cost the same and a login storm cannot take every core.
    let ok = cx
        .svc
        .auth
        .verify(pw, record.as_ref().map(|r| r.password.as_str()));
    let Some(r) = record.filter(|_| ok) else {
        return Err(login_failed(
            cx,
            attempt,
            &name,
            "",
            ErrorCode::AuthFailed,
            "wrong user name or password",
        ));
    };
    attempt.succeeded();
    not_banned(cx, r.id, &r.name)?;
    if cx.svc.auth.needs_rehash(&r.password) {
        // The configured cost went up: upgrade the stored hash now that we
        // have the password.
        match cx.svc.auth.hash(pw) {
            Ok(h) => {
                if let Err(e) = cx.svc.store.set_password(r.id, &h) {
                    log::warn!("rehashing {}'s password failed: {e}", r.name);
                }
            }
            Err(e) => log::warn!("rehashing {}'s password failed: {e}", r.name),
        }
    }
    log::info!("login {} from {}", r.name, cx.peer);
    cx.audit(Some(&r.name), "login", "password");
    Ok(User {
        id: r.id,
        name: r.name,
    })
}

/// Completes a login [`check_password`] accepted, without a resume token
/// (an IRC session has no use for one).
pub fn enter_checked(cx: &mut Cx, me: User) -> Handled {
    enter(cx, me.id, me.name, None)
}

/// Logs in with a resume token: no password hashing.
pub fn resume(cx: &mut Cx, user: &str, token: &str) -> Handled {
    let name = user.to_ascii_lowercase();
    let attempt = admit_attempt(cx, &name, Proof::Token)?;
    let digest = cx.svc.auth.digest(token);
    let record = cx.svc.store.token_user(&digest)?.filter(|r| r.name == name);
    let Some(r) = record else {
        return Err(login_failed(
            cx,
            attempt,
            &name,
            "token",
            ErrorCode::InvalidToken,
            "the resume token is not valid; log in with your password",
        ));
    };
    attempt.succeeded();
    not_banned(cx, r.id, &r.name)?;
    cx.audit(Some(&r.name), "login", "token");
    cx.state.token_digest = Some(digest);
    enter(cx, r.id, r.name, None)
}

/// Revokes this session's resume token and ends the session.
pub fn logout(cx: &mut Cx) -> Handled {
    if let Some(digest) = cx.state.token_digest.take() {
        cx.svc.store.revoke_token(&digest)?;
    }
    Ok(Answer::ReplyAndEnd(ServerMsg::Ok))
}

/// Changes the password (the current one must be given), revokes every
/// resume token of the account, and answers with a new one.
pub fn change_password(cx: &mut Cx, me: &User, old: &str, new: &str) -> Handled {
    validate::password(new)?;
    let record = super::existing_user(cx.svc, &me.name)
        .map_err(|_| Refusal::new(ErrorCode::ServerError, "your account vanished"))?;
    let attempt = admit_attempt(cx, &me.name, Proof::Password)?;
    if !cx.svc.auth.verify(old, Some(&record.password)) {
        // The attempt stays counted: guessing the current password from a
        // logged-in session is throttled like guessing it at login.
        drop(attempt);
        return Err(Refusal::new(
            ErrorCode::AuthFailed,
            "the current password is wrong",
        ));
    }
    attempt.succeeded();
    let hash = cx
        .svc
        .auth
        .hash(new)
        .map_err(|e| Refusal::new(ErrorCode::ServerError, e.to_string()))?;
    cx.svc.store.set_password(me.id, &hash)?;
    let revoked = cx.svc.store.revoke_tokens(me.id)?;
    cx.audit(
        Some(&me.name),
        "password_change",
        &format!("{revoked} tokens revoked"),
    );
    // The user's other sessions were opened with the old password: they
    // end (a device that still knows it must log in again).
    let goodbye = crate::server::wire::Outgoing::event(ServerMsg::Closing {
        code: ErrorCode::AuthFailed,
        message: "your password was changed on another device; log in with the new one".into(),
    });
    cx.svc
        .hub
        .close_user_except(me.id, Some(cx.session), &goodbye);
    let token = issue_token(cx, me.id).unwrap_or_default();
    Ok(Answer::Reply(ServerMsg::Token { token }))
}

/// Sets (non-empty `message`) or clears the user's away message; the rooms
/// they are in are told.
pub fn away(cx: &mut Cx, me: &User, message: Option<String>) -> Handled {
    let message = message.filter(|m| !m.trim().is_empty());
    if let Some(m) = &message {
        validate::topic(m)?;
    }
    cx.svc.hub.set_away(me.id, &me.name, message);
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Admits (and counts) a login attempt, or refuses it while the account
/// or address is throttled.
fn admit_attempt<'a>(cx: &Cx<'a>, name: &str, proof: Proof) -> Result<Attempt<'a>, Refusal> {
    // With other nodes: their failures up to now count here too.
    cx.svc.catch_up();
    match cx.svc.auth.attempt(name, cx.peer.ip(), proof) {
        Ok(attempt) => Ok(attempt),
        Err(wait) => {
            cx.audit(Some(name), "login_throttled", "");
            Err(Refusal::new(
                ErrorCode::TooManyAttempts,
                format!(
                    "too many failed logins; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ))
        }
    }
}

/// Refuses a banned user, saying why and until when.
fn not_banned(cx: &Cx, user_id: UserId, name: &str) -> Result<(), Refusal> {
    let Some(ban) = cx.svc.store.ban_of(user_id)? else {
        return Ok(());
    };
    cx.audit(Some(name), "login_banned", &ban.reason);
    let until = ban.until.map_or_else(
        || "for good".to_owned(),
        |t| format!("for {} more minutes", ((t - now_ms()) / 60_000).max(1)),
    );
    Err(Refusal::new(
        ErrorCode::Banned,
        format!("you are banned {until} (by {}): {}", ban.by, ban.reason),
    ))
}

/// A failed password or token login: the attempt stays counted against
/// the name and the address (`Throttle`); audited with `how` as detail,
/// answered with `code`.
fn login_failed(
    cx: &Cx,
    attempt: Attempt,
    name: &str,
    how: &str,
    code: ErrorCode,
    message: &str,
) -> Refusal {
    drop(attempt);
    log::info!("failed login for {name:?} from {}", cx.peer);
    cx.audit(Some(name), "login_failed", how);
    Refusal::new(code, message)
}

/// A new resume token for this session (its digest is remembered so that
/// `logout` can revoke it).
fn issue_token(cx: &mut Cx, user_id: UserId) -> Option<String> {
    let (token, digest) = cx.svc.auth.new_token()?;
    let expires = now_ms() + cx.svc.limits.token_lifetime.as_millis() as i64;
    match cx.svc.store.add_token(user_id, &digest, expires) {
        Ok(()) => {
            cx.state.token_digest = Some(digest);
            Some(token)
        }
        Err(e) => {
            log::warn!("storing a resume token failed: {e}");
            None
        }
    }
}

/// Completes a login: registers the session with the hub as the user's,
/// and gathers the reply and the direct messages that arrived while the
/// user was away.
fn enter(cx: &mut Cx, user_id: UserId, user: String, token: Option<String>) -> Handled {
    // Register first, so a DM stored from now on is delivered live; one
    // stored in between may come twice (clients de-duplicate by id).
    // Rooms, members and presence changed on other nodes up to now
    // (again: the password check took a while).
    cx.svc.catch_up();
    let mut rooms = cx.svc.hub.login(cx.session, user_id, &user);
    // In the order the user joined them, so every session of theirs, on
    // any device, numbers its room windows alike (the hub lists them by
    // name; a room the database has not listed yet goes last).
    let order: std::collections::HashMap<String, usize> = cx
        .svc
        .store
        .rooms_in_join_order(user_id)?
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    rooms.sort_by_key(|r| order.get(&r.name).copied().unwrap_or(usize::MAX));
    let dms = cx.svc.store.undelivered_dms(user_id, OFFLINE_DM_REPLAY)?;
    let unread = cx.svc.store.unread(user_id, &user)?;
    if let Some(last) = dms.last().map(|m| m.id)
        && let Err(err) = cx.svc.store.advance_dm_cursor(user_id, last)
    {
        log::warn!("advancing DM cursor failed: {err}");
    }
    Ok(Answer::Entered(Entry {
        reply: ServerMsg::LoggedIn {
            user: user.clone(),
            rooms,
            offline_dms: dms.len() as u32,
            unread,
            token,
        },
        replay: dms
            .into_iter()
            .map(|m| ServerMsg::Message(Box::new(m)))
            .collect(),
        user: User {
            id: user_id,
            name: user,
        },
    }))
}
