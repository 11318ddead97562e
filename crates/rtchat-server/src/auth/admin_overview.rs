//! `GET /admin/overview` (`--auth token`, admins only): what the admin page (`/admin`) shows,
//! in one answer — who is asking, live clients per transport (the figures of `/metrics`'
//! `rtchat_clients`), every room with how many are in it and who (presence), the bans and
//! mutes in force, and the 20 newest audit entries.
//!
//! Non-admins get `403 admin_only`; with `--auth off`, `404 auth_off` (the admin API's
//! refusals).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use rtchat_protocol::shapes::{
    AdminOverview, AdminSelf, PresentUser, RoomOverview, TransportClients,
};

use super::admin_routes::admin;
use crate::api::ApiError;
use crate::state::AppState;
use crate::transport::Who;

/// How many audit entries the overview carries.
const AUDIT_ENTRIES: usize = 20;

/// `GET /admin/overview` (behind the transports' token check).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/overview", get(overview))
}

async fn overview(
    State(state): State<AppState>,
    who: Who,
) -> Result<Json<AdminOverview>, ApiError> {
    let who = admin(who)?;
    let transports = state
        .metrics
        .clients_by_transport()
        .into_iter()
        .map(|(transport, clients)| TransportClients {
            transport: transport.to_owned(),
            clients,
        })
        .collect();

    let mut rooms = Vec::new();
    for room in state.hub.rooms().await? {
        // Only a room with someone in it is held here (and has members): asking for an empty
        // one would load it.
        let users = if room.online > 0 {
            match state.hub.channel(&room.name).await {
                Ok(Some(channel)) => state
                    .hub
                    .members(&channel)
                    .await
                    .into_iter()
                    .map(|m| PresentUser {
                        user: m.user.to_string(),
                        uid: m.uid.as_deref().map(str::to_owned),
                        since: m.since,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        rooms.push(RoomOverview {
            online: (room.online as u64).max(users.len() as u64),
            name: room.name,
            last: room.last,
            users,
        });
    }

    let moderation = state.auth.moderation();
    let bans = moderation
        .bans()
        .into_iter()
        .map(super::admin_routes::ban_info)
        .collect();
    let mutes = moderation
        .mutes()
        .into_iter()
        .map(super::admin_routes::mute_info)
        .collect();
    let audit = moderation
        .audit_log(AUDIT_ENTRIES)
        .await?
        .into_iter()
        .map(super::admin_routes::audit_record)
        .collect();
    Ok(Json(AdminOverview {
        you: AdminSelf {
            uid: who.uid.clone(),
            name: who.name.clone(),
        },
        transports,
        rooms,
        bans,
        mutes,
        audit,
    }))
}
