//! The door of `--auth token`: which token a request carries, whether it is good, and the
//! refusal a client gets when it is not.
//!
//! With `--auth off` (the default, the course's anonymous chat) [`Auth::identify`] lets
//! everyone in as nobody. With `--auth token` every connection and every post must carry a
//! token: `Authorization: Bearer`, the session cookie ([`COOKIE`]), or `?token=` on a `GET`
//! (the WebSocket upgrade and `EventSource`, which cannot set headers). A token is checked
//! once per connection (and once per HTTP request), never per message.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rtchat_core::directory::Directory;
use rtchat_core::{Poster, StoreError};
use rtchat_protocol::ErrorBody;

use super::access::{Access, Denied};
use super::cluster::{Announcer, Notice};
use super::keyring;
use super::lifetime::{Credential, CredentialEnd, Ending};
use super::moderation::Moderation;
use super::token::{Claims, Identity, TokenError, Verifier};
use crate::metrics::PostRefusal;
use crate::state::AppState;
use tokio::sync::broadcast;

/// The session cookie the built-in accounts set at login: a token like any other.
pub const COOKIE: &str = "rtchat_session";

/// Token checks for every transport: the verifier, and the revoked token ids.
pub struct Auth {
    /// `None` with `--auth off`.
    verifier: Option<Verifier>,
    directory: Arc<dyn Directory>,
    /// Revoked `jti`s and when they would have expired anyway (Unix seconds), mirrored from
    /// the directory so a check costs no store access.
    revoked: RwLock<HashMap<String, u64>>,
    /// How long a live connection whose token expired may take to refresh it
    /// (`--token-grace`).
    pub grace: Duration,
    /// Each revoked `jti`, banned or kicked user, told to the live connections'
    /// [`Credential`]s.
    endings: broadcast::Sender<Ending>,
    /// Who may use which room: the `rooms` claim, private rooms, direct messages.
    access: Access,
    /// Bans, mutes, the audit log.
    moderation: Moderation,
}

impl Auth {
    /// `--auth off`: nobody is asked for anything.
    pub fn off(directory: Arc<dyn Directory>) -> Auth {
        let access = Access::off(directory.clone());
        let mut moderation = Moderation::off(directory.clone());
        moderation.announcer = access.announcer.clone();
        Auth {
            verifier: None,
            access,
            moderation,
            directory,
            revoked: RwLock::default(),
            grace: Duration::from_secs(30),
            endings: broadcast::channel(64).0,
        }
    }

    /// `--auth token` with this verifier; reads the revoked tokens and the private rooms
    /// (at most `max_private_rooms` of them, `--max-private-rooms`) from the directory.
    pub async fn token(
        verifier: Verifier,
        directory: Arc<dyn Directory>,
        grace: Duration,
        max_private_rooms: usize,
    ) -> Result<Auth, StoreError> {
        let revoked = directory.revoked(keyring::now()).await?;
        let access = Access::load(directory.clone(), max_private_rooms).await?;
        let mut moderation = Moderation::load(directory.clone()).await?;
        moderation.announcer = access.announcer.clone();
        Ok(Auth {
            access,
            moderation,
            verifier: Some(verifier),
            directory,
            revoked: RwLock::new(revoked.into_iter().collect()),
            grace,
            endings: broadcast::channel(64).0,
        })
    }

    /// Whether tokens are required (`--auth token`).
    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// Who may use which room (see [`Access`]).
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Whether `who` may post in `room`: [`Access::enter`], and not muted there.
    pub fn may_post(&self, who: Option<&Identity>, room: &str) -> Result<(), Denied> {
        self.access.enter(who, room)?;
        if let Some(mute) = who.and_then(|w| self.moderation.mute_of(room, &w.uid)) {
            return Err(Denied::Muted {
                room: room.to_owned(),
                reason: mute.reason,
                until: mute.until,
            });
        }
        Ok(())
    }

    /// Bans, mutes and the audit log (see [`Moderation`]).
    pub fn moderation(&self) -> &Moderation {
        &self.moderation
    }

    /// Ends every live connection of `uid` now, telling it why (an admin's ban or kick), on
    /// every node (a ban is announced by [`Moderation::ban`]).
    pub fn end_user(&self, uid: &str, end: CredentialEnd) {
        if end == CredentialEnd::Kicked {
            self.announcer().send(Notice::Kicked {
                uid: uid.to_owned(),
            });
        }
        self.end_here(uid, end);
    }

    /// Ends `uid`'s live connections on this node only.
    pub(super) fn end_here(&self, uid: &str, end: CredentialEnd) {
        // No receiver: no live connection to close.
        let _ = self.endings.send(Ending::User(Arc::from(uid), end));
    }

    /// Where accounts, revocations and room access are kept.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Who `token` says the client is: `Ok(None)` with `--auth off` (whatever was sent);
    /// with `--auth token`, the identity or why the token (or its absence) is refused.
    pub fn identify(&self, token: Option<&str>) -> Result<Option<Identity>, TokenError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let identity = verifier.verify(token.ok_or(TokenError::Missing)?)?;
        if let Some(jti) = &identity.jti {
            if self.is_revoked(jti) {
                return Err(TokenError::Revoked);
            }
        }
        if let Some(ban) = self.moderation.ban_of(&identity.uid) {
            return Err(TokenError::Banned {
                reason: ban.reason,
                until: ban.until,
            });
        }
        Ok(Some(identity))
    }

    /// Whether the token id `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(jti)
    }

    /// Refuses the token id `jti` from now until `until` (Unix seconds), here and in the
    /// directory (so a restart remembers).
    pub async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        self.directory.revoke(jti, until).await?;
        let now = keyring::now();
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, exp| *exp + super::token::LEEWAY >= now);
        revoked.insert(jti.to_owned(), until);
        drop(revoked);
        // No receiver: no live connection to close.
        let _ = self.endings.send(Ending::Token(Arc::from(jti)));
        self.announcer().send(Notice::Revoked {
            jti: jti.to_owned(),
            until,
        });
        Ok(())
    }

    /// Another node revoked `jti`: refuse it here too and close its connections here.
    pub(super) fn revoked_elsewhere(&self, jti: &str, until: u64) {
        self.revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.to_owned(), until);
        let _ = self.endings.send(Ending::Token(Arc::from(jti)));
    }

    /// Reads every mirror again (notices from other nodes were missed).
    pub(super) async fn reload_all(&self) {
        let results = [
            self.moderation.reload_bans().await,
            self.moderation.reload_mutes().await,
            self.access.reload_all().await,
        ];
        match self.directory.revoked(keyring::now()).await {
            Ok(revoked) => {
                *self.revoked.write().unwrap_or_else(|e| e.into_inner()) =
                    revoked.into_iter().collect()
            }
            Err(e) => tracing::warn!(error = %e, "could not read the revoked tokens again"),
        }
        for e in results.into_iter().filter_map(Result::err) {
            tracing::warn!(error = %e, "could not read the moderation and room rules again");
        }
    }

    /// What tells the other nodes of a cluster (shared by the moderation and room rules).
    pub(super) fn announcer(&self) -> &Announcer {
        &self.access.announcer
    }

    /// Connects to the cluster `hub` belongs to (see [`super::cluster`]).
    pub fn join_cluster(self: &Arc<Self>, hub: &rtchat_core::Hub) {
        super::cluster::join(self, hub);
    }

    /// What ends a live connection authenticated as `identity` (see [`Credential`]).
    pub fn credential(self: &Arc<Self>, identity: &Identity) -> Credential {
        Credential::new(
            self.clone(),
            identity,
            self.endings.subscribe(),
            self.access.narrowed(),
        )
    }

    /// A token signed with the server's own newest secret, or `None` with `--auth off`.
    pub fn mint(&self, claims: &Claims) -> Option<String> {
        self.verifier.as_ref().map(|v| v.mint(claims))
    }
}

/// The middleware in front of every transport's routes: with `--auth token`, a request
/// without a good token is answered `401` (preflights pass: they carry no credentials), and a
/// good one's [`Identity`] goes into the request's extensions (as `Arc<Identity>`) for the
/// handler. With `--auth off` it does nothing.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: Next,
) -> Response {
    match authenticate(&state, &mut req) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

/// [`require_token`]'s check, for a handler outside the transports' routes (the WebSocket
/// upgrade at `/`): `Some` is the `401` to answer.
pub fn authenticate(state: &AppState, req: &mut axum::extract::Request) -> Option<Response> {
    if !state.auth.enabled() || req.method() == Method::OPTIONS {
        return None;
    }
    let (mut parts, body) = std::mem::take(req).into_parts();
    let result = state.auth.identify(request_token(&parts).as_deref());
    let refused = match result {
        Ok(identity) => {
            if let Some(identity) = identity {
                parts.extensions.insert(Arc::new(identity));
            }
            None
        }
        Err(e) => {
            tracing::info!(
                code = e.code(),
                path = parts.uri.path(),
                "request refused: {e}"
            );
            if parts.method == Method::POST {
                state.metrics.post_refused(PostRefusal::Unauthorized);
            }
            Some(Unauthorized(e).into_response())
        }
    };
    *req = axum::extract::Request::from_parts(parts, body);
    refused
}

/// The identity [`require_token`] found for a request (`None` with `--auth off`), as the
/// poster of what it posts.
pub fn poster_of(extensions: &axum::http::Extensions) -> Option<Poster> {
    extensions.get::<Arc<Identity>>().map(|i| i.poster())
}

/// The token a request carries: `Authorization: Bearer`, else the session cookie, else (on a
/// `GET`) `?token=`.
pub fn request_token(parts: &Parts) -> Option<String> {
    bearer(&parts.headers)
        .or_else(|| cookie(&parts.headers))
        .or_else(|| {
            (parts.method == Method::GET)
                .then(|| query_token(parts.uri.query()?))
                .flatten()
        })
}

/// `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The session cookie's value.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

/// `token=` in a query string (percent-decoded).
pub fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// A request refused for its token: `401` with `{"error", "code"}` and
/// `WWW-Authenticate: Bearer`.
#[derive(Debug)]
pub struct Unauthorized(pub TokenError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut body = ErrorBody::new(self.0.to_string());
        body.code = Some(self.0.code().to_owned());
        let challenge = match self.0 {
            TokenError::Missing => "Bearer realm=\"rtchat\"".to_owned(),
            _ => format!(
                "Bearer realm=\"rtchat\", error=\"invalid_token\", error_description=\"{}\"",
                self.0.code()
            ),
        };
        let status = match self.0 {
            TokenError::Banned { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        let mut res = (status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(req: Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn the_token_comes_from_the_header_the_cookie_or_the_query() {
        let p = parts(
            Request::get("/ws?token=q")
                .header("authorization", "Bearer  h ")
                .header("cookie", "rtchat_session=c")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_token(&p).as_deref(), Some("h"));
        let p = parts(
            Request::get("/ws?token=q")
                .header("cookie", "a=b; rtchat_session=c; d=e")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_token(&p).as_deref(), Some("c"));
        let p = parts(Request::get("/ws?x=1&token=a%2Bb").body(()).unwrap());
        assert_eq!(request_token(&p).as_deref(), Some("a+b"));
        // A token in the query of a state-changing request is not taken (it would sit in
        // logs and histories for nothing: posts can set headers).
        let p = parts(Request::post("/msgs?token=q").body(()).unwrap());
        assert_eq!(request_token(&p), None);
        let p = parts(
            Request::get("/")
                .header("authorization", "Basic x")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_token(&p), None);
    }
}
