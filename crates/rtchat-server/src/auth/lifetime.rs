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

use super::keyring;
use super::token::Identity;

/// Why a live connection's token no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialEnd {
    /// Expired, and not refreshed within the grace period.
    Expired,
    /// Its `jti` was revoked (logout, or an admin).
    Revoked,
}

impl CredentialEnd {
    /// The WebSocket close code and reason.
    pub fn close(self) -> (u16, &'static str) {
        match self {
            CredentialEnd::Expired => (4001, "token expired"),
            CredentialEnd::Revoked => (4005, "token revoked"),
        }
    }

    /// The name of the final SSE event, and (with `auth:`) of the Socket.IO event.
    pub fn event(self) -> &'static str {
        match self {
            CredentialEnd::Expired => "expired",
            CredentialEnd::Revoked => "revoked",
        }
    }
}

/// A live connection's token: [`Credential::ended`] resolves when it expired more than the
/// grace period ago or was revoked; [`Credential::refresh`] puts in a newer token of the same
/// user.
pub struct Credential {
    uid: String,
    jti: Option<String>,
    grace: Duration,
    deadline: Pin<Box<Sleep>>,
    revocations: broadcast::Receiver<Arc<str>>,
    /// Whether a revocation may have been missed (the receiver lagged): check the list.
    is_revoked: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("uid", &self.uid)
            .field("jti", &self.jti)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub(super) fn new(
        identity: &Identity,
        grace: Duration,
        revocations: broadcast::Receiver<Arc<str>>,
        is_revoked: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Credential {
        Credential {
            uid: identity.uid.clone(),
            jti: identity.jti.clone(),
            grace,
            deadline: Box::pin(tokio::time::sleep_until(end_of(identity.expires, grace))),
            revocations,
            is_revoked,
        }
    }

    /// The user the connection is.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Resolves when the token no longer holds. Cancel-safe: call it again in a loop.
    pub async fn ended(&mut self) -> CredentialEnd {
        loop {
            tokio::select! {
                () = self.deadline.as_mut() => return CredentialEnd::Expired,
                revoked = self.revocations.recv() => match revoked {
                    Ok(jti) if self.jti.as_deref() == Some(&*jti) => return CredentialEnd::Revoked,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self.jti.as_deref().is_some_and(|j| (self.is_revoked)(j)) {
                            return CredentialEnd::Revoked;
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
        if identity.uid != self.uid {
            return Err(format!(
                "a refresh must carry a token of the same user ({:?}), not of {:?}",
                self.uid, identity.uid
            ));
        }
        self.jti = identity.jti.clone();
        self.deadline
            .as_mut()
            .reset(end_of(identity.expires, self.grace));
        Ok(())
    }
}

/// The moment a token expiring at `exp` (Unix seconds) stops holding a live connection.
fn end_of(exp: u64, grace: Duration) -> Instant {
    let left = Duration::from_secs(exp.saturating_sub(keyring::now()));
    Instant::now() + left.min(Duration::from_secs(10 * 365 * 86_400)) + grace
}
