//! The admin API (`--auth token`, a token with `admin: true`; JSON in and out). Every action
//! is written to the audit log; each answers `{"status":"ok","audit":ID}`.
//!
//! * `POST /admin/users/{uid}/ban` `{"reason"?, "until"? | "for"?}` — refused at every door
//!   (`403 banned`, logins too) and every live connection closed at once (close 4003).
//! * `DELETE /admin/users/{uid}/ban` — lifts it.
//! * `POST /admin/users/{uid}/kick` `{"reason"?}` — closes every live connection now (close
//!   4004); the user may connect again.
//! * `POST|DELETE /admin/rooms/{room}/mutes/{uid}` — may read, not post (`403 muted`).
//! * `POST /admin/tokens/{jti}/revoke` `{"reason"?, "until"?}` — refused until `until`
//!   (default: 30 days), its connections closed (close 4005).
//! * `GET /admin/bans`, `GET /admin/mutes`, `GET /admin/audit?limit=N` (100; at most 1000).
//!
//! Non-admins get `403 admin_only`; with `--auth off`, `404 auth_off`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rtchat_core::directory::{Ban, Mute};
use rtchat_protocol::shapes::{
    AdminDone, AuditLog, AuditRecord, Sanction, SanctionInfo, SanctionList,
};
use serde::Deserialize;

use super::keyring;
use super::lifetime::CredentialEnd;
use super::token::Identity;
use crate::api::{read_json_body, ApiError};
use crate::state::AppState;
use crate::transport::Who;

/// How long an admin's revocation of a token id lasts when it names no `until`.
const REVOCATION: Duration = Duration::from_secs(30 * 86_400);

/// The admin API's routes (behind the transports' token check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{uid}/ban", post(ban).delete(unban))
        .route("/admin/users/{uid}/kick", post(kick))
        .route("/admin/rooms/{room}/mutes/{uid}", post(mute).delete(unmute))
        .route("/admin/tokens/{jti}/revoke", post(revoke))
        .route("/admin/bans", get(bans))
        .route("/admin/mutes", get(mutes))
        .route("/admin/audit", get(audit))
}

/// The caller, who must be an admin.
pub(super) fn admin(who: Who) -> Result<Arc<Identity>, ApiError> {
    let who = who.map(|w| w.0).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "moderation needs users: start rtchat with --auth token",
        )
        .with_code("auth_off")
    })?;
    if !who.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an administrator may do this (rtchat user grant-admin, or admin: true in a token)",
        )
        .with_code("admin_only"));
    }
    Ok(who)
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// The request's [`Sanction`] (an empty body is an empty one), and its end in Unix seconds.
async fn sanction(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Sanction, Option<u64>), ApiError> {
    let config = &state.config;
    let bytes = read_json_body(headers, body, config.max_body, config.timeouts.body).await;
    let bytes = match bytes {
        Ok(bytes) => bytes,
        // No body (and no content type) at all: no reason, no end.
        Err(_)
            if headers
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|v| v == "0") =>
        {
            return Ok((Sanction::default(), None))
        }
        Err(e) => return Err(e),
    };
    let sanction: Sanction = if bytes.is_empty() {
        Sanction::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"reason\"?, \"until\"? (Unix seconds) or \"for\"? (e.g. \"2h\")}}: {e}"),
            )
        })?
    };
    if sanction
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a reason is at most 500 characters",
        ));
    }
    let until = match (&sanction.until, &sanction.lasting) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give \"until\" or \"for\", not both",
            ))
        }
        (Some(until), None) if *until <= keyring::now() => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"until\" is in the past",
            ))
        }
        (Some(until), None) => Some(*until),
        (None, Some(lasting)) => {
            let d = humantime::parse_duration(lasting).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("\"for\": {e} (e.g. \"90s\", \"2h\", \"7d\")"),
                )
            })?;
            Some(keyring::now().saturating_add(d.as_secs().max(1)))
        }
        (None, None) => None,
    };
    Ok((sanction, until))
}

fn done(audit: u64) -> Json<AdminDone> {
    Json(AdminDone {
        status: "ok".to_owned(),
        audit,
    })
}

const NO_REASON: &str = "no reason given";

async fn ban(
    State(state): State<AppState>,
    uid: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let uid = path(uid)?;
    if uid == who.uid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an administrator cannot ban themself",
        ));
    }
    let (sanction, until) = sanction(&state, &headers, body).await?;
    let reason = sanction.reason.unwrap_or_else(|| NO_REASON.to_owned());
    let moderation = state.auth.moderation();
    moderation
        .ban(Ban {
            uid: uid.clone(),
            until,
            reason: reason.clone(),
            by: who.uid.clone(),
        })
        .await?;
    state.auth.end_user(&uid, CredentialEnd::Banned);
    tracing::info!(admin = %who.uid, %uid, ?until, %reason, "banned");
    let id = moderation
        .record(&who.uid, "ban", &uid, None, Some(&reason))
        .await?;
    Ok(done(id))
}

async fn unban(
    State(state): State<AppState>,
    uid: Result<Path<String>, PathRejection>,
    who: Who,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let uid = path(uid)?;
    let moderation = state.auth.moderation();
    if !moderation.unban(&uid).await? {
        return Err(
            ApiError::new(StatusCode::NOT_FOUND, format!("{uid:?} is not banned"))
                .with_code("not_banned"),
        );
    }
    let id = moderation
        .record(&who.uid, "unban", &uid, None, None)
        .await?;
    Ok(done(id))
}

async fn kick(
    State(state): State<AppState>,
    uid: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let uid = path(uid)?;
    let (sanction, _) = sanction(&state, &headers, body).await?;
    state.auth.end_user(&uid, CredentialEnd::Kicked);
    tracing::info!(admin = %who.uid, %uid, "kicked");
    let reason = sanction.reason.as_deref();
    let id = state
        .auth
        .moderation()
        .record(&who.uid, "kick", &uid, None, reason)
        .await?;
    Ok(done(id))
}

async fn mute(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let (room, uid) = path(params)?;
    rtchat_core::check_room_name(&room)?;
    let (sanction, until) = sanction(&state, &headers, body).await?;
    let reason = sanction.reason.unwrap_or_else(|| NO_REASON.to_owned());
    let moderation = state.auth.moderation();
    moderation
        .mute(Mute {
            room: room.clone(),
            uid: uid.clone(),
            until,
            reason: reason.clone(),
            by: who.uid.clone(),
        })
        .await?;
    let id = moderation
        .record(&who.uid, "mute", &uid, Some(&room), Some(&reason))
        .await?;
    Ok(done(id))
}

async fn unmute(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    who: Who,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let (room, uid) = path(params)?;
    let moderation = state.auth.moderation();
    if !moderation.unmute(&room, &uid).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{uid:?} is not muted in {room:?}"),
        )
        .with_code("not_muted"));
    }
    let id = moderation
        .record(&who.uid, "unmute", &uid, Some(&room), None)
        .await?;
    Ok(done(id))
}

async fn revoke(
    State(state): State<AppState>,
    jti: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AdminDone>, ApiError> {
    let who = admin(who)?;
    let jti = path(jti)?;
    let (sanction, until) = sanction(&state, &headers, body).await?;
    let until = until.unwrap_or_else(|| keyring::now() + REVOCATION.as_secs());
    state.auth.revoke(&jti, until).await?;
    let reason = sanction.reason.as_deref();
    let id = state
        .auth
        .moderation()
        .record(&who.uid, "revoke", &jti, None, reason)
        .await?;
    Ok(done(id))
}

async fn bans(State(state): State<AppState>, who: Who) -> Result<Json<SanctionList>, ApiError> {
    admin(who)?;
    let sanctions = state
        .auth
        .moderation()
        .bans()
        .into_iter()
        .map(ban_info)
        .collect();
    Ok(Json(SanctionList { sanctions }))
}

async fn mutes(State(state): State<AppState>, who: Who) -> Result<Json<SanctionList>, ApiError> {
    admin(who)?;
    let sanctions = state
        .auth
        .moderation()
        .mutes()
        .into_iter()
        .map(mute_info)
        .collect();
    Ok(Json(SanctionList { sanctions }))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(state): State<AppState>,
    who: Who,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditLog>, ApiError> {
    admin(who)?;
    let Query(query) = query.map_err(|e| crate::transport::bad_query(e, "limit=<1..1000>"))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .auth
        .moderation()
        .audit_log(limit)
        .await?
        .into_iter()
        .map(audit_record)
        .collect();
    Ok(Json(AuditLog { entries }))
}

/// A ban as the API shows it.
pub(super) fn ban_info(b: Ban) -> SanctionInfo {
    SanctionInfo {
        uid: b.uid,
        room: None,
        until: b.until,
        reason: b.reason,
        by: b.by,
    }
}

/// A mute as the API shows it.
pub(super) fn mute_info(m: Mute) -> SanctionInfo {
    SanctionInfo {
        uid: m.uid,
        room: Some(m.room),
        until: m.until,
        reason: m.reason,
        by: m.by,
    }
}

/// An audit entry as the API shows it.
pub(super) fn audit_record(e: rtchat_core::directory::AuditEntry) -> AuditRecord {
    AuditRecord {
        id: e.id,
        at: e.at,
        actor: e.actor,
        action: e.action,
        target: e.target,
        room: e.room,
        reason: e.reason,
    }
}
