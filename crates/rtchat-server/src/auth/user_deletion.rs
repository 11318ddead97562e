//! Deleting a user (issue 16): `DELETE /admin/users/{uid}?messages=delete|keep`, admins only
//! (`403 admin_only`; `404 auth_off` with `--auth off`). Answers
//! `{"status":"ok","audit":ID,"messages":N}`.
//!
//! In order:
//!
//! 1. **They cannot come back.** The user is banned with the reason "account deleted" and no
//!    end, and every live connection of theirs ends at once (close 4003, `auth:banned`...).
//!    This is the existing ban mechanism on purpose: bans are kept in the database, so the
//!    user's old tokens (and any session cookie) stay refused after a restart too, at every
//!    door, with no second list of "deleted users" to check. The ban shows in
//!    `GET /admin/bans`; an admin who lifts it lets the old tokens in again (the account and
//!    messages stay gone).
//! 2. **Their messages**, as the admin chose (`messages` is required):
//!    - `delete`: every message they posted (the messages' `uid`) becomes a tombstone through
//!      [`rtchat_core::Hub::delete`], so live clients are told and histories rebuilt; the
//!      tombstones' rows then lose the name and `uid` too (their text stays in the database
//!      as every tombstone's does). `N` = messages tombstoned.
//!    - `keep`: they stay, shown under the name "deleted user", their `uid` cleared (so
//!      nothing links them to the user any more). `N` = messages renamed. The histories this
//!      node holds of those rooms are read again ([`rtchat_core::Hub::refresh`]); clients
//!      that already hold the messages keep the old name until they fetch a history again.
//! 3. **Their account and memberships**: the account goes (its name is free for a new
//!    signup, which gets a new user id); they are no member of any room any more (in the
//!    database and in the memory of private rooms). Direct messages keep their two users
//!    (the other one keeps the conversation, listed in `GET /me/rooms`), and rooms they own
//!    keep them as owner (an admin may still manage those).
//! 4. The audit log gets `delete-user`, its reason saying which messages choice.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::delete;
use axum::{Json, Router};
use rtchat_core::directory::Ban;
use rtchat_protocol::shapes::UserDeleted;
use serde::Deserialize;

use super::admin_routes::admin;
use super::lifetime::CredentialEnd;
use crate::api::ApiError;
use crate::state::AppState;
use crate::transport::Who;

/// The name a deleted user's kept messages are shown under.
pub const DELETED_USER: &str = "deleted user";

/// The ban reason that keeps a deleted user out.
pub const REASON: &str = "account deleted";

/// The route (behind the transports' token check, like the rest of the admin API).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/users/{uid}", delete(delete_user))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    messages: Option<String>,
}

/// What becomes of the user's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Messages {
    Delete,
    Keep,
}

const EXPECTED: &str = "messages=delete (tombstone every message of theirs) or messages=keep (keep them, shown under \"deleted user\")";

fn messages_choice(
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Messages, ApiError> {
    let Query(query) = query.map_err(|e| crate::transport::bad_query(e, EXPECTED))?;
    match query.messages.as_deref() {
        Some("delete") => Ok(Messages::Delete),
        Some("keep") => Ok(Messages::Keep),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown messages choice {other:?}: say {EXPECTED}"),
        )),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("say what becomes of the user's messages: {EXPECTED}"),
        )),
    }
}

async fn delete_user(
    State(state): State<AppState>,
    uid: Result<Path<String>, PathRejection>,
    who: Who,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<UserDeleted>, ApiError> {
    let who = admin(who)?;
    let uid = uid
        .map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let choice = messages_choice(query)?;
    if uid == who.uid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an administrator cannot delete themself",
        ));
    }
    let auth = &state.auth;
    let directory = auth.directory().clone();

    // 1. Out, now and after restarts: a ban without end.
    auth.moderation()
        .ban(Ban {
            uid: uid.clone(),
            until: None,
            reason: REASON.to_owned(),
            by: who.uid.clone(),
        })
        .await?;
    auth.end_user(&uid, CredentialEnd::Banned);

    // 2. Their messages.
    let messages = match choice {
        Messages::Delete => {
            let mut tombstoned = 0u64;
            for (channel, id) in directory.messages_of(&uid).await? {
                if state.hub.delete(&channel, id).await? {
                    tombstoned += 1;
                }
            }
            // Nothing links the tombstones to the user any more.
            directory.anonymize(&uid, DELETED_USER).await?;
            tombstoned
        }
        Messages::Keep => {
            let mut rooms: Vec<String> = directory
                .messages_of(&uid)
                .await?
                .into_iter()
                .map(|(channel, _)| channel)
                .collect();
            rooms.sort();
            rooms.dedup();
            let renamed = directory.anonymize(&uid, DELETED_USER).await? as u64;
            // This node's cached histories of those rooms, read again (renamed).
            for room in rooms {
                state.hub.refresh(&room).await?;
            }
            renamed
        }
    };

    // 3. The account and memberships.
    let had_account = directory.delete_account(&uid).await?;
    let memberships = directory.remove_memberships(&uid).await?;
    auth.access().forget_user(&uid);

    // 4. The audit log.
    let reason = match choice {
        Messages::Delete => format!("messages=delete: {messages} tombstoned"),
        Messages::Keep => format!("messages=keep: {messages} shown under {DELETED_USER:?}"),
    };
    let reason = format!(
        "{reason}; account {}; {memberships} room membership(s) removed",
        if had_account { "deleted" } else { "none" }
    );
    tracing::info!(admin = %who.uid, %uid, %reason, "deleted a user");
    let audit = auth
        .moderation()
        .record(&who.uid, "delete-user", &uid, None, Some(&reason))
        .await?;
    Ok(Json(UserDeleted {
        status: "ok".to_owned(),
        audit,
        messages,
    }))
}
