//! Moderation requests, for administrators only: `kick`, `ban`, `unban`,
//! `mute`, `unmute`, `bans`, `stats`.
//!
//! Admin rights, bans and mutes are read from the database at each use, so
//! `confab-server admin` can change them while the server runs. Kicks and
//! bans end the user's sessions through the hub (their last words are a
//! `closing kicked` event); every action is audited.

use super::{Answer, Cx, Handled, Refusal, User, existing_room, existing_user};
use crate::protocol::{BanInfo, ErrorCode, ServerMsg};
use crate::server::wire::Outgoing;
use crate::store::{UserId, now_ms};

/// Ends every session of a user.
pub fn kick(cx: &mut Cx, me: &User, user: &str, reason: &str) -> Handled {
    require_admin(cx, me)?;
    crate::validate::topic(reason)?;
    let target = existing_user(cx.svc, user)?;
    let n = end_sessions(
        cx,
        target.id,
        ErrorCode::Kicked,
        &format!("kicked by {}: {reason}", me.name),
    );
    cx.audit(
        Some(&me.name),
        "kick",
        &format!("{} ({n} sessions): {reason}", target.name),
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Bans a user for `minutes` (or for good), revokes their resume tokens
/// and ends their sessions.
pub fn ban(cx: &mut Cx, me: &User, user: &str, reason: &str, minutes: Option<u64>) -> Handled {
    require_admin(cx, me)?;
    crate::validate::topic(reason)?;
    let target = existing_user(cx.svc, user)?;
    cx.svc
        .store
        .ban(target.id, reason, &me.name, minutes_from_now(minutes))?;
    cx.svc.store.revoke_tokens(target.id)?;
    end_sessions(
        cx,
        target.id,
        ErrorCode::Banned,
        &format!("banned by {}: {reason}", me.name),
    );
    let how_long = minutes.map_or_else(|| "for good".to_owned(), |m| format!("for {m} min"));
    cx.audit(
        Some(&me.name),
        "ban",
        &format!("{} {how_long}: {reason}", target.name),
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Lifts a ban.
pub fn unban(cx: &mut Cx, me: &User, user: &str) -> Handled {
    require_admin(cx, me)?;
    let target = existing_user(cx.svc, user)?;
    if !cx.svc.store.unban(target.id)? {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("{} is not banned", target.name),
        ));
    }
    cx.audit(Some(&me.name), "unban", &target.name);
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Mutes a user in a room for `minutes` (or until unmuted).
pub fn mute(cx: &mut Cx, me: &User, room: &str, user: &str, minutes: Option<u64>) -> Handled {
    require_admin(cx, me)?;
    let room = existing_room(cx.svc, room)?;
    let target = existing_user(cx.svc, user)?;
    cx.svc
        .store
        .mute(room.id, target.id, &me.name, minutes_from_now(minutes))?;
    cx.svc.muted(room.id, target.id, minutes_from_now(minutes));
    cx.audit(
        Some(&me.name),
        "mute",
        &format!("{} in #{}", target.name, room.name),
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Lifts a mute.
pub fn unmute(cx: &mut Cx, me: &User, room: &str, user: &str) -> Handled {
    require_admin(cx, me)?;
    let room = existing_room(cx.svc, room)?;
    let target = existing_user(cx.svc, user)?;
    cx.svc.store.unmute(room.id, target.id)?;
    cx.svc.unmuted(room.id, target.id);
    cx.audit(
        Some(&me.name),
        "unmute",
        &format!("{} in #{}", target.name, room.name),
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// The bans in force.
pub fn bans(cx: &mut Cx, me: &User) -> Handled {
    require_admin(cx, me)?;
    let bans = cx
        .svc
        .store
        .bans()?
        .into_iter()
        .map(|b| BanInfo {
            user: b.user,
            reason: b.reason,
            by: b.by,
            until: b.until,
        })
        .collect();
    Ok(Answer::Reply(ServerMsg::BanList { bans }))
}

/// The server's counters.
pub fn stats(cx: &mut Cx, me: &User) -> Handled {
    require_admin(cx, me)?;
    Ok(Answer::Reply(ServerMsg::Stats(cx.svc.stats())))
}

/// Whether the user may run admin requests: the database's flag, and
/// nothing else. (The `admins` setting sets that flag at start for accounts
/// that exist, and reserves the names of those that do not: rights never
/// come from winning a race to a name.)
fn require_admin(cx: &Cx, me: &User) -> Result<(), Refusal> {
    if cx.svc.store.is_admin(me.id)? {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            "this is for administrators",
        ))
    }
}

/// Ends every session of a user with `closing` `code`; returns how many.
fn end_sessions(cx: &Cx, user: UserId, code: ErrorCode, why: &str) -> usize {
    let goodbye = Outgoing::event(ServerMsg::Closing {
        code,
        message: why.to_owned(),
    });
    cx.svc.hub.close_user(user, &goodbye)
}

/// `minutes` from now, in ms since the epoch.
fn minutes_from_now(minutes: Option<u64>) -> Option<i64> {
    minutes.map(|m| now_ms() + (m as i64) * 60_000)
}
