//! Keeping every node's mirrors in step (`--store redis://`, README "Running a cluster").
//!
//! Each node mirrors bans, mutes, revoked tokens and private rooms in memory so that a check
//! costs no store access. When an admin or a room's owner changes one on some node, that node
//! writes the directory (shared in Redis), updates its own mirror, and announces a
//! [`Notice`]; every other node re-reads what changed from the directory and ends or narrows
//! its own live connections as the first node did. With one process there is nobody to tell.

use std::sync::{Arc, OnceLock};

use rtchat_core::Hub;
use serde::{Deserialize, Serialize};

use super::gate::Auth;
use super::lifetime::CredentialEnd;

/// What another node must act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Notice {
    /// A token id was revoked: refuse it, close its connections.
    Revoked { jti: String, until: u64 },
    /// A user was banned: read the bans again, close their connections.
    Banned { uid: String },
    /// A ban was lifted.
    Unbanned { uid: String },
    /// A user was kicked: close their connections.
    Kicked { uid: String },
    /// Mutes changed: read them again.
    Mutes,
    /// A room's access changed (private, members, a direct message opened): read it again,
    /// and connections in it check whether they may stay.
    Room { room: String },
    /// Memberships of many rooms changed (a user deleted): read every private room again.
    Rooms,
}

/// Sends [`Notice`]s once the node has joined its cluster (cheap to clone; before
/// [`join`], or with one process, sending does nothing).
#[derive(Clone, Default)]
pub struct Announcer(Arc<OnceLock<Hub>>);

impl Announcer {
    /// Tells the other nodes, in the background.
    pub fn send(&self, notice: Notice) {
        let Some(hub) = self.0.get().cloned() else {
            return;
        };
        let bytes = serde_json::to_vec(&notice).expect("notices serialize");
        tokio::spawn(async move { hub.announce(bytes.into()).await });
    }
}

/// Connects `auth` to the cluster `hub` belongs to: its changes are announced, and the other
/// nodes' are applied here, until the hub goes.
pub fn join(auth: &Arc<Auth>, hub: &Hub) {
    let _ = auth.announcer().0.set(hub.clone());
    let mut notices = hub.notices();
    let auth = Arc::downgrade(auth);
    tokio::spawn(async move {
        loop {
            let notice = match notices.recv().await {
                Ok(notice) => notice,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "missed notices from other nodes; reading everything again"
                    );
                    let Some(auth) = auth.upgrade() else { return };
                    auth.reload_all().await;
                    continue;
                }
                Err(_) => return,
            };
            let Some(auth) = auth.upgrade() else { return };
            match serde_json::from_slice::<Notice>(&notice) {
                Ok(notice) => apply(&auth, notice).await,
                Err(e) => tracing::warn!(error = %e, "an unreadable notice from another node"),
            }
        }
    });
}

/// Does here what the announcing node did there.
async fn apply(auth: &Auth, notice: Notice) {
    tracing::debug!(?notice, "a notice from another node");
    let result = match notice {
        Notice::Revoked { jti, until } => {
            auth.revoked_elsewhere(&jti, until);
            Ok(())
        }
        Notice::Banned { uid } => {
            let loaded = auth.moderation().reload_bans().await;
            auth.end_user(&uid, CredentialEnd::Banned);
            loaded
        }
        Notice::Unbanned { .. } => auth.moderation().reload_bans().await,
        Notice::Kicked { uid } => {
            auth.end_user(&uid, CredentialEnd::Kicked);
            Ok(())
        }
        Notice::Mutes => auth.moderation().reload_mutes().await,
        Notice::Room { room } => auth.access().reload_room(&room).await,
        Notice::Rooms => auth.access().reload_all().await,
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not apply another node's change");
    }
}
