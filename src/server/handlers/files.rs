//! File requests: `upload` and its data frames, `upload_end`,
//! `upload_cancel`, `download`, `files`.
//!
//! An upload is checked as its bytes arrive (`transfer::Upload`) and, once
//! verified and recorded, announced by a message that goes through the
//! message writer like any other. A download is opened here; the session
//! loop pumps it a chunk at a time.

use super::messages::submit;
use super::{Answer, Conversation, Cx, Handled, Refusal, User, conversation};
use crate::protocol::{self, ErrorCode, ServerMsg};
use crate::server::transfer::{Download, Upload};
use crate::server::writer::Target;
use crate::store::{Destination, NewFile};

/// Most files listed by `files`.
const FILE_LIST_MAX: u32 = 50;

/// Starts an upload to a room the caller is in or to another user.
pub fn upload(
    cx: &mut Cx,
    me: &User,
    room: Option<String>,
    to: Option<String>,
    name: &str,
    size: u64,
) -> Handled {
    if cx.state.upload.is_some() {
        return Err(Refusal::new(
            ErrorCode::Busy,
            "another upload is in progress",
        ));
    }
    let target = match conversation(cx.svc, me, room, to, "upload", "to")? {
        Conversation::Room(room) => Target::Room {
            id: room.id,
            name: room.name,
        },
        Conversation::Direct(peer) => Target::User {
            id: peer.id,
            name: peer.name,
        },
    };
    let id = cx.state.next_stream();
    let up = Upload::begin(id, target, name, size, &cx.svc.file_rules, &cx.svc.files)?;
    cx.state.upload = Some(up);
    Ok(Answer::Reply(ServerMsg::UploadReady {
        upload: id,
        // Data frames must fit the request limit with their header and
        // stream id.
        chunk_size: protocol::DATA_CHUNK.min(cx.svc.limits.max_request_len.saturating_sub(16)),
    }))
}

/// One data frame of the upload in progress. Returns the event to send if
/// it broke a rule (the upload is then dropped, which deletes what was
/// written).
pub fn data(cx: &mut Cx, user: Option<&str>, id: u32, bytes: &[u8]) -> Option<ServerMsg> {
    let Some(up) = cx.state.upload.as_mut().filter(|up| up.id == id) else {
        // Data of a refused or cancelled upload still in flight.
        log::debug!("session {}: ignoring data for stream {id}", cx.session);
        return None;
    };
    let (code, message) = up.feed(&cx.svc.file_rules, bytes).err()?;
    cx.state.upload = None;
    cx.state.rejected_upload = Some((id, Refusal::new(code, message.clone())));
    log::info!("session {}: upload {id} refused: {message}", cx.session);
    if code == ErrorCode::FileRejected {
        cx.audit(user, "file_rejected", &message);
    }
    Some(ServerMsg::UploadRejected {
        upload: id,
        code,
        message,
    })
}

/// Completes an upload: checks size, type and SHA-256, stores the content,
/// records the file and announces it with a message (acked by the writer).
pub fn upload_end(cx: &mut Cx, me: &User, upload: u32, sha256: &str) -> Handled {
    let up = match cx.state.upload.take() {
        Some(up) if up.id == upload => up,
        other => {
            cx.state.upload = other;
            return Err(match &cx.state.rejected_upload {
                Some((id, refusal)) if *id == upload => refusal.clone(),
                _ => Refusal::new(
                    ErrorCode::BadRequest,
                    format!("no upload {upload} in progress"),
                ),
            });
        }
    };
    let (name, size, target) = (up.name.clone(), up.size, up.target.clone());
    let session = cx.session;
    let verified = up.finish(sha256, &cx.svc.files).inspect_err(|(_, m)| {
        log::info!("session {session}: upload {upload} refused at the end: {m}");
    })?;
    let to = match &target {
        Target::Room { id, .. } => Destination::Room(*id),
        Target::User { id, .. } => Destination::User(*id),
    };
    // With other nodes: the content goes where they can read it, before the
    // record that lets anyone ask for it.
    cx.svc.share_content(&verified.sha256)?;
    let mime = verified.kind.mime().to_owned();
    let file_id = cx.svc.store.insert_file(&NewFile {
        sha256: verified.sha256.clone(),
        name: name.clone(),
        mime: mime.clone(),
        size,
        uploader: me.id,
        to,
    })?;
    log::info!(
        "{} shared {name} ({size} bytes, {mime}) as file {file_id}",
        me.name
    );
    let body = format!(
        "shared {name} ({}, {})",
        crate::file_rules::human_size(size),
        verified.kind.label()
    );
    let info = protocol::FileInfo {
        id: file_id,
        name,
        mime,
        size,
        sha256: verified.sha256,
    };
    submit(cx, me, target, body, Some(info), None)
}

/// Abandons the upload in progress (deleting what was written).
pub fn upload_cancel(cx: &mut Cx, upload: u32) -> Handled {
    if cx.state.upload.as_ref().is_some_and(|u| u.id == upload) {
        cx.state.upload = None;
    }
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Starts sending a file the caller may see: one shared in a room they are
/// in, or in a direct conversation of theirs. Anything else gets the same
/// answer as a missing file, so file ids leak nothing.
pub fn download(cx: &mut Cx, me: &User, file: i64) -> Handled {
    if cx.state.download.is_some() {
        return Err(Refusal::new(
            ErrorCode::Busy,
            "another download is in progress",
        ));
    }
    let none = || Refusal::new(ErrorCode::NoSuchFile, format!("no file {file}"));
    let record = cx.svc.store.find_file(file)?.ok_or_else(none)?;
    let allowed = match record.to {
        Destination::Room(room) => cx.svc.store.is_member(room, me.id)?,
        Destination::User(to) => to == me.id || record.uploader == me.id,
    };
    if !allowed {
        return Err(none());
    }
    let content = cx.svc.open_content(&record.info.sha256).map_err(|e| {
        log::error!("stored file {file} cannot be opened: {e}");
        Refusal::new(
            ErrorCode::ServerError,
            "the file's content is missing on the server",
        )
    })?;
    let id = cx.state.next_stream();
    cx.state.download = Some(Download::new(
        id,
        content,
        record.info.size,
        record.info.sha256.clone(),
    ));
    Ok(Answer::Reply(ServerMsg::DownloadStart {
        download: id,
        file: record.info,
    }))
}

/// The latest files of a room the caller is in, or of a direct
/// conversation.
pub fn list(cx: &mut Cx, me: &User, room: Option<String>, with: Option<String>) -> Handled {
    let files = match conversation(cx.svc, me, room, with, "files", "with")? {
        Conversation::Room(room) => cx.svc.store.room_files(room.id, FILE_LIST_MAX)?,
        Conversation::Direct(peer) => cx.svc.store.dm_files(me.id, peer.id, FILE_LIST_MAX)?,
    };
    Ok(Answer::Reply(ServerMsg::FileList { files }))
}
