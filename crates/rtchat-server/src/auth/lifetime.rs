//! How long a live connection's token lasts: until it expires (plus `--token-grace`, for a
//! refresh in band) or is revoked. Each streaming transport holds a [`Credential`] per
//! authenticated connection and closes the connection with the documented reason when
//! [`Credential::ended`] resolves: WebSocket close 4001 "token expired" / 4005 "token
//! revoked", Socket.IO `auth:expired` / `auth:revoked` then a disconnect, SSE a final
//! `expired` / `revoked` event.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::{Instant, Sleep};

use super::access::Denied;
use super::keyring;
use super::token::Identity;
use super::Auth;

/// Why a live connection's token no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialEnd {
    /// Expired, and not refreshed within the grace period.
    Expired,
    /// Its `jti` was revoked (logout, or an admin).
    Revoked,
    /// Its user was banned by an admin.
    Banned,
    /// Its user was kicked by an admin (they may connect again).
    Kicked,
}

impl CredentialEnd {
    /// The WebSocket close code and reason.
    pub fn close(self) -> (u16, &'static str) {
        match self {
            CredentialEnd::Expired => (4001, "token expired"),
            CredentialEnd::Revoked => (4005, "token revoked"),
            CredentialEnd::Banned => (4003, "banned"),
            CredentialEnd::Kicked => (4004, "kicked"),
        }
    }

    /// The name of the final SSE event, and (with `auth:`) of the Socket.IO event.
    pub fn event(self) -> &'static str {
        match self {
            CredentialEnd::Expired => "expired",
            CredentialEnd::Revoked => "revoked",
            CredentialEnd::Banned => "banned",
            CredentialEnd::Kicked => "kicked",
        }
    }
}

/// What ends live connections, as [`super::Auth`] tells every [`Credential`].
#[derive(Debug, Clone)]
pub enum Ending {
    /// This token id was revoked.
    Token(Arc<str>),
    /// This user was banned or kicked.
    User(Arc<str>, CredentialEnd),
}

/// What a live connection's [`Credential`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The token no longer holds: close the connection.
    Ended(CredentialEnd),
    /// This room's access narrowed (it turned private, a member was removed): if the
    /// connection is in it, check whether it may stay ([`super::access::Access::check`]).
    /// `None`: some were missed (the connection lagged); check every room it is in.
    Narrowed(Option<Arc<str>>),
}

/// A live connection's token: [`Credential::next`] says when it expired more than the grace
/// period ago or was revoked, and when a room's access narrowed; [`Credential::refresh`] puts
/// in a newer token of the same user.
pub struct Credential {
    identity: Identity,
    auth: Arc<Auth>,
    deadline: Pin<Box<Sleep>>,
    endings: broadcast::Receiver<Ending>,
    narrowings: broadcast::Receiver<Arc<str>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("uid", &self.identity.uid)
            .field("jti", &self.identity.jti)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub(super) fn new(
        auth: Arc<Auth>,
        identity: &Identity,
        endings: broadcast::Receiver<Ending>,
        narrowings: broadcast::Receiver<Arc<str>>,
    ) -> Credential {
        Credential {
            deadline: Box::pin(tokio::time::sleep_until(end_of(
                identity.expires,
                auth.grace,
            ))),
            identity: identity.clone(),
            auth,
            endings,
            narrowings,
        }
    }

    /// The user the connection is.
    pub fn uid(&self) -> &str {
        &self.identity.uid
    }

    /// Whether the connection may stay in `room` (after [`Heard::Narrowed`]): `Err` says why
    /// not.
    pub fn may_stay(&self, room: &str) -> Result<(), Denied> {
        self.auth.access().check(Some(&self.identity), room)
    }

    /// Resolves when the token no longer holds, or a room's access narrowed. Cancel-safe:
    /// call it again in a loop.
    pub async fn next(&mut self) -> Heard {
        loop {
            tokio::select! {
                () = self.deadline.as_mut() => return Heard::Ended(CredentialEnd::Expired),
                narrowed = self.narrowings.recv() => match narrowed {
                    Ok(room) => return Heard::Narrowed(Some(room)),
                    Err(broadcast::error::RecvError::Lagged(_)) => return Heard::Narrowed(None),
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                },
                ended = self.endings.recv() => match ended {
                    Ok(Ending::Token(jti)) if self.identity.jti.as_deref() == Some(&*jti) => {
                        return Heard::Ended(CredentialEnd::Revoked)
                    }
                    Ok(Ending::User(uid, end)) if *uid == *self.identity.uid => {
                        return Heard::Ended(end)
                    }
                    Ok(_) => {}
                    // Some were missed: ask the lists.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self.identity.jti.as_deref().is_some_and(|j| self.auth.is_revoked(j)) {
                            return Heard::Ended(CredentialEnd::Revoked);
                        }
                        if self.auth.moderation().ban_of(&self.identity.uid).is_some() {
                            return Heard::Ended(CredentialEnd::Banned);
                        }
                    }
                    // The server is going away; its shutdown closes the connection.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                },
            }
        }
    }

    /// Takes a newer token (already verified) of the same user: the connection lasts until
    /// it expires. Another user's token is refused.
    pub fn refresh(&mut self, identity: &Identity) -> Result<(), String> {
        if identity.uid != self.identity.uid {
            return Err(format!(
                "a refresh must carry a token of the same user ({:?}), not of {:?}",
                self.identity.uid, identity.uid
            ));
        }
        self.deadline
            .as_mut()
            .reset(end_of(identity.expires, self.auth.grace));
        self.identity = identity.clone();
        Ok(())
    }
}

/// The moment a token expiring at `exp` (Unix seconds) stops holding a live connection.
fn end_of(exp: u64, grace: Duration) -> Instant {
    let left = Duration::from_secs(exp.saturating_sub(keyring::now()));
    Instant::now() + left.min(Duration::from_secs(10 * 365 * 86_400)) + grace
}
