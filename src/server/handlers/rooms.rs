//! Room requests: `rooms`, `create_room`, `join`, `leave`, `topic`, `who`.
//!
//! Each writes the database first, then the hub (which tells the room), so
//! the hub never shows a room or a membership the database lacks.

use super::{Answer, Cx, Handled, Refusal, User, existing_room, member_room};
use crate::protocol::{ErrorCode, JOIN_MEMBERS, JOIN_REPLAY, ServerMsg, WHO_PAGE, WHO_PAGE_MAX};
use crate::store::{Page, StoreError};
use crate::validate;

/// Every room, by name.
pub fn list(cx: &mut Cx) -> Handled {
    Ok(Answer::Reply(ServerMsg::RoomList {
        rooms: cx.svc.hub.room_list(),
    }))
}

/// Creates a room with the caller as its first member.
pub fn create(cx: &mut Cx, me: &User, room: &str, topic: &str) -> Handled {
    room_allowance(cx, me)?;
    creation_allowance(cx, me)?;
    let room = validate::room(room)?;
    validate::topic(topic)?;
    let id = match cx.svc.store.create_room(&room, topic, me.id) {
        Ok(id) => id,
        Err(StoreError::RoomExists) => {
            return Err(Refusal::new(
                ErrorCode::RoomExists,
                format!("#{room} exists; join it instead"),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    cx.svc.hub.add_room(id, &room, topic, (me.id, &me.name));
    let answer = joined(cx, me, &room)?;
    tell_other_sessions(
        cx,
        me,
        ServerMsg::YouJoined {
            room,
            user: me.name.clone(),
        },
    );
    Ok(answer)
}

/// Joins a room (or, for a member, fetches it again).
pub fn join(cx: &mut Cx, me: &User, room: &str) -> Handled {
    let room = existing_room(cx.svc, room)?;
    let was_member = cx.svc.hub.is_member(&room.name, me.id);
    if !was_member {
        room_allowance(cx, me)?;
    }
    cx.svc.store.add_member(room.id, me.id)?;
    if !was_member {
        // History from before joining is not "unread".
        cx.svc.store.mark_room_read_to_latest(me.id, room.id)?;
    }
    let answer = joined(cx, me, &room.name)?;
    if !was_member {
        tell_other_sessions(
            cx,
            me,
            ServerMsg::YouJoined {
                room: room.name,
                user: me.name.clone(),
            },
        );
    }
    Ok(answer)
}

/// Leaves a room.
pub fn leave(cx: &mut Cx, me: &User, room: &str, reason: Option<&str>) -> Handled {
    let room = member_room(cx.svc, room, me.id)?;
    // The same rules as an away message: one line, at most 256 characters.
    if let Some(r) = reason {
        validate::topic(r)?;
    }
    cx.svc.store.remove_member(room.id, me.id)?;
    cx.svc.hub.leave(&room.name, me.id, &me.name, reason);
    tell_other_sessions(
        cx,
        me,
        ServerMsg::YouLeft {
            room: room.name,
            user: me.name.clone(),
        },
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Tells the caller's other sessions (on every node) that they joined or
/// left a room, so each shows the same rooms (and numbers its windows
/// alike).
fn tell_other_sessions(cx: &mut Cx, me: &User, event: ServerMsg) {
    let event = crate::server::wire::Outgoing::event(event);
    cx.svc.hub.send_to_user(me.id, &event, Some(cx.session));
}

/// Sets a room's topic; its members are told.
pub fn topic(cx: &mut Cx, me: &User, room: &str, topic: &str) -> Handled {
    let room = member_room(cx.svc, room, me.id)?;
    validate::topic(topic)?;
    cx.svc.store.set_topic(room.id, topic)?;
    cx.svc.hub.set_topic(&room.name, topic, &me.name);
    // Kept in history as a message of kind `topic`, stored and delivered
    // by the writer like any other; its ack answers the request.
    let target = crate::server::writer::Target::Room {
        id: room.id,
        name: room.name.clone(),
    };
    super::messages::submit_draft(
        cx,
        me,
        super::messages::Draft {
            kind: crate::protocol::MessageKind::Topic,
            ..super::messages::Draft::chat(target, topic.to_owned())
        },
    )
}

/// Deletes a room with its history and files: for administrators, and for
/// its creator while nobody else is in it (so nobody else's messages
/// vanish); never `general`.
pub fn delete(cx: &mut Cx, me: &User, room: &str) -> Handled {
    let room = existing_room(cx.svc, room)?;
    if room.name == "general" {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "#general cannot be deleted",
        ));
    }
    let admin = cx.svc.store.is_admin(me.id)?;
    let members = cx.svc.hub.member_count(&room.name).unwrap_or(0);
    let alone_creator = cx.svc.store.room_creator(room.id)? == Some(me.id)
        && (members == 0 || (members == 1 && cx.svc.hub.is_member(&room.name, me.id)));
    if !admin && !alone_creator {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "only an administrator, or its creator while nobody else is in it, may delete #{}",
                room.name
            ),
        ));
    }
    let unused = cx.svc.store.delete_room(room.id)?;
    for sha in unused {
        cx.svc.forget_content(&sha);
    }
    cx.svc.hub.delete_room(&room.name, &me.name);
    log::info!("{} deleted #{}", me.name, room.name);
    cx.audit(Some(&me.name), "delete_room", &room.name);
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// A page of a room's members by name, and whether each is online or
/// away.
pub fn who(cx: &mut Cx, room: &str, after: Option<&str>, limit: Option<u32>) -> Handled {
    let room = existing_room(cx.svc, room)?;
    let limit = limit.unwrap_or(WHO_PAGE).clamp(1, WHO_PAGE_MAX) as usize;
    let page = cx
        .svc
        .hub
        .members(&room.name, after, limit)
        .ok_or_else(|| Refusal::new(ErrorCode::NoSuchRoom, format!("no room #{}", room.name)))?;
    Ok(Answer::Reply(ServerMsg::Users {
        room: room.name,
        members: page.members,
        more: page.more,
        online: page.online,
    }))
}

/// Adds the caller to the hub's room (telling its members) and answers
/// with the room, its members and its latest history.
fn joined(cx: &mut Cx, me: &User, room: &str) -> Handled {
    let Some((info, page, live_presence)) = cx.svc.hub.join(room, me.id, &me.name, JOIN_MEMBERS)
    else {
        return Err(Refusal::new(
            ErrorCode::NoSuchRoom,
            format!("no room #{room}"),
        ));
    };
    let history = match cx.svc.hub.room(room).map(|r| r.id) {
        Some(id) => {
            cx.svc
                .store
                .room_history(id, Page::Before(None), JOIN_REPLAY, me.id)?
                .0
        }
        None => Vec::new(),
    };
    Ok(Answer::Reply(ServerMsg::Joined {
        room: info,
        members: page.members,
        history,
        online: page.online,
        more_members: page.more,
        live_presence,
    }))
}

/// Refuses a new room to a user who created as many (still existing) as
/// allowed; administrators have no such bound. Leaving a room does not
/// give the allowance back, deleting it does.
fn creation_allowance(cx: &Cx, me: &User) -> Result<(), Refusal> {
    let n = cx.svc.store.rooms_created_by(me.id)?;
    let max = cx.svc.limits.max_rooms_created;
    if n >= max && !cx.svc.store.is_admin(me.id)? {
        return Err(Refusal::new(
            ErrorCode::TooManyRooms,
            format!("you created {n} rooms, the most allowed here; delete one first"),
        ));
    }
    Ok(())
}

/// Refuses to add a room to a user who is in as many as allowed.
fn room_allowance(cx: &Cx, me: &User) -> Result<(), Refusal> {
    let n = cx.svc.store.room_count(me.id)?;
    if n >= cx.svc.limits.max_rooms_per_user {
        return Err(Refusal::new(
            ErrorCode::TooManyRooms,
            format!("you are in {n} rooms, the most allowed here; leave one first"),
        ));
    }
    Ok(())
}
