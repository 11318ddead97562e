//! `DELETE /rooms/{room}/msgs/{id}` (`--auth token`): a message becomes a tombstone (the
//! core's [`rtchat_core::Hub::delete`]): it leaves every history, snapshot and resume without
//! a gap being reported, and the clients that hold it are told (rtchat.v1 `deleted`,
//! Socket.IO `msg:deleted`, SSE `deleted`; snapshot clients get the history without it).
//!
//! Who may: an admin or the room's owner, any message; its author, within `--edit-window`
//! (15 min) of posting. A deletion by someone else than the author goes to the audit log.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;
use axum::{Json, Router};
use serde::Serialize;

use crate::api::ApiError;
use crate::state::AppState;
use crate::transport::Who;

/// The route above (behind the transports' token check).
pub fn routes() -> Router<AppState> {
    Router::new().route("/rooms/{room}/msgs/{id}", delete(delete_message))
}

/// The answer: `{"status":"ok","room","id","audit"?}`.
#[derive(Debug, Serialize)]
struct Deleted {
    status: &'static str,
    room: String,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<u64>,
}

async fn delete_message(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    who: Who,
) -> Result<Json<Deleted>, ApiError> {
    let Some(who) = who.map(|w| w.0) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "deleting messages needs users: start rtchat with --auth token",
        )
        .with_code("auth_off"));
    };
    let (room, id) = params
        .map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    rtchat_core::check_room_name(&room)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a message id"),
        )
    })?;
    crate::transport::check_room(&state, Some(&who), &room)?;
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("room {room:?} has no message {id} (or it was deleted)"),
        )
        .with_code("no_such_message")
    };
    let message = state.hub.message(&room, id).await?.ok_or_else(gone)?;
    let is_author = message.uid.as_deref() == Some(who.uid.as_str());
    let is_owner = || async {
        let access = state.auth.directory().room_access(&room).await?;
        Ok::<_, ApiError>(access.owner.as_deref() == Some(who.uid.as_str()))
    };
    let window = state.config.edit_window;
    let age_ms = now_millis().saturating_sub(message.time);
    let in_window = age_ms <= window.as_millis() as i64;
    let allowed = who.admin || (is_author && in_window) || is_owner().await?;
    if !allowed {
        let why = if is_author {
            format!(
                "you may delete your own messages within {} of posting (--edit-window); ask an administrator or the room's owner",
                humantime::format_duration(window)
            )
        } else {
            "only an administrator, the room's owner or the message's author may delete it"
                .to_owned()
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, why).with_code("not_allowed"));
    }
    if !state.hub.delete(&room, id).await? {
        return Err(gone());
    }
    tracing::info!(by = %who.uid, %room, id, "message deleted");
    let audit = if is_author {
        None
    } else {
        let target = format!("{room}/{id}");
        let moderation = state.auth.moderation();
        Some(
            moderation
                .record(&who.uid, "delete", &target, Some(&room), None)
                .await?,
        )
    };
    Ok(Json(Deleted {
        status: "ok",
        room,
        id,
        audit,
    }))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
