//! `rtchat serve --auth token` on the client side: the credentials a client is given, its
//! current token (and who it says the client is), getting a fresh one before it expires
//! (`POST /auth/refresh`, or a new `POST /auth/login`), and handing it to the live connection
//! (the sessions watch [`Auth::subscribe`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::Url;
use serde_json::Value;
use tokio::sync::watch;

use crate::http::Http;
use crate::Error;

/// `POST` here to log in (`{"user","password"}`).
pub(crate) const LOGIN: &str = "/auth/login";
/// `POST` here with `Authorization: Bearer` for a fresh token.
pub(crate) const REFRESH: &str = "/auth/refresh";

/// How a [`Client`](crate::Client) proves who it is to a server run with
/// `rtchat serve --auth token` ([`Options::credentials`](crate::Options::credentials)).
///
/// Either way the client keeps its token fresh by itself: before it expires (at 80% of its
/// life) it asks `POST /auth/refresh` for a new one (with a login, it logs in again if that
/// fails), hands it to the live connection in band (rtchat.v1 `refresh`, Socket.IO
/// `auth:refresh`) and uses it for every later request and reconnection.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A token (JWT) got elsewhere: `rtchat token`, an identity provider, `/auth/login`.
    /// A token that `/auth/refresh` cannot extend (one not from a login) lasts until it
    /// expires; then the client fails with [`Error::TokenExpired`].
    Token(String),
    /// An account of the server's built-in accounts: the client calls `POST /auth/login`
    /// on the server it connects to (and again when its session ends or is revoked).
    Login {
        /// The account's name.
        user: String,
        /// Its password.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::Login { user, .. } => f
                .debug_struct("Login")
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

/// Who the client's current token says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stable user id (the token's `sub`; messages carry it as `uid`).
    pub uid: String,
    /// The name posts are made under (the token's `name`, else its `sub`).
    pub name: String,
    /// When the current token expires (Unix seconds), when it says.
    pub expires: Option<u64>,
}

/// A token and who it says the client is.
#[derive(Clone)]
pub(crate) struct Token {
    pub jwt: String,
    pub identity: Identity,
    /// When this client got it (Unix seconds).
    pub received: f64,
}

impl Token {
    /// A token given as it is: who it says and when it expires, read from its claims
    /// (not verified: the server does that).
    pub fn given(jwt: String) -> Token {
        let claims = claims(&jwt).unwrap_or(Value::Null);
        let uid = claims["sub"].as_str().unwrap_or_default().to_owned();
        let name = claims["name"]
            .as_str()
            .map_or_else(|| uid.clone(), str::to_owned);
        Token {
            identity: Identity {
                uid,
                name,
                expires: claims["exp"].as_u64(),
            },
            jwt,
            received: now(),
        }
    }

    /// The answer of `/auth/login`, `/auth/refresh` or `/auth/signup`:
    /// `{"token","expires","uid","name","admin"}`.
    fn from_answer(answer: &Value) -> Result<Token, Error> {
        let jwt = answer["token"]
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("expected a token, got {answer}")))?;
        let mut token = Token::given(jwt.to_owned());
        if let Some(uid) = answer["uid"].as_str() {
            token.identity.uid = uid.to_owned();
        }
        if let Some(name) = answer["name"].as_str() {
            token.identity.name = name.to_owned();
        }
        if let Some(expires) = answer["expires"].as_u64() {
            token.identity.expires = Some(expires);
        }
        Ok(token)
    }

    /// Whether it expired (by this machine's clock).
    pub fn expired(&self) -> bool {
        self.identity
            .expires
            .is_some_and(|exp| (exp as f64) <= now())
    }

    /// When to get a fresh one: at 80% of its life (counted from when it came), and at least
    /// a second before it expires when it lasts longer than that.
    fn refresh_in(&self) -> Option<Duration> {
        let exp = self.identity.expires? as f64;
        let life = (exp - self.received).max(0.0);
        let mut at = self.received + 0.8 * life;
        if life > 2.0 {
            at = at.min(exp - 1.0);
        }
        Some(Duration::from_secs_f64((at - now()).max(0.0)))
    }
}

/// The JWT's claims, decoded (not verified).
fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Unix time, in seconds.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A client's credentials and current token, shared by its connections and posts.
pub(crate) struct Auth {
    credentials: Credentials,
    http: Http,
    login_url: Url,
    refresh_url: Url,
    timeout: Duration,
    current: watch::Sender<Option<Token>>,
    /// One login or refresh at a time.
    renewing: tokio::sync::Mutex<()>,
    /// A revocation was answered with a new login, and no refresh has worked since: a
    /// second revocation is final.
    relogged: AtomicBool,
}

impl Auth {
    pub fn new(
        credentials: Credentials,
        http: Http,
        login_url: Url,
        refresh_url: Url,
        timeout: Duration,
    ) -> Auth {
        let current = match &credentials {
            Credentials::Token(jwt) => Some(Token::given(jwt.clone())),
            Credentials::Login { .. } => None,
        };
        Auth {
            credentials,
            http,
            login_url,
            refresh_url,
            timeout,
            current: watch::Sender::new(current),
            renewing: tokio::sync::Mutex::new(()),
            relogged: AtomicBool::new(false),
        }
    }

    /// The current token, logging in first when there is none yet.
    pub async fn start(&self) -> Result<Token, Error> {
        if let Some(token) = self.token() {
            return Ok(token);
        }
        self.login().await
    }

    /// The current token.
    pub fn token(&self) -> Option<Token> {
        self.current.borrow().clone()
    }

    /// The current token's JWT.
    pub fn jwt(&self) -> Option<String> {
        self.current.borrow().as_ref().map(|t| t.jwt.clone())
    }

    /// Who the current token says the client is.
    pub fn identity(&self) -> Option<Identity> {
        self.current.borrow().as_ref().map(|t| t.identity.clone())
    }

    /// Tells of each new token.
    pub fn subscribe(&self) -> watch::Receiver<Option<Token>> {
        self.current.subscribe()
    }

    /// Whether the client logs in itself.
    pub fn can_log_in(&self) -> bool {
        matches!(self.credentials, Credentials::Login { .. })
    }

    /// `POST /auth/login`; the new token becomes the current one.
    pub async fn login(&self) -> Result<Token, Error> {
        let Credentials::Login { user, password } = &self.credentials else {
            return Err(Error::Unauthorized {
                code: None,
                message: "no account to log in with".into(),
            });
        };
        let _one = self.renewing.lock().await;
        let body = serde_json::json!({ "user": user, "password": password }).to_string();
        let answer =
            crate::http::auth_request(&self.http, &self.login_url, None, Some(body), self.timeout)
                .await?;
        let token = Token::from_answer(&answer)?;
        self.current.send_replace(Some(token.clone()));
        Ok(token)
    }

    /// A fresh token: `POST /auth/refresh` with the current one (with a login, a new login
    /// when that fails or cannot extend it). `Ok(None)`: the token cannot be extended (one
    /// not from a login lasts until it expires).
    pub async fn renew(&self) -> Result<Option<Token>, Error> {
        let refreshed = self.refresh().await;
        match refreshed {
            Ok(Some(token)) => {
                self.relogged.store(false, Ordering::SeqCst);
                return Ok(Some(token));
            }
            Ok(None) if !self.can_log_in() => return Ok(None),
            Err(e) if !self.can_log_in() => return Err(e),
            _ => {}
        }
        self.login().await.map(Some)
    }

    /// `POST /auth/refresh`; `None` when the answer expires no later than the token held.
    async fn refresh(&self) -> Result<Option<Token>, Error> {
        let _one = self.renewing.lock().await;
        let Some(old) = self.token() else {
            return Ok(None);
        };
        let answer = crate::http::auth_request(
            &self.http,
            &self.refresh_url,
            Some(&old.jwt),
            None,
            self.timeout,
        )
        .await?;
        let token = Token::from_answer(&answer)?;
        let extends = match (old.identity.expires, token.identity.expires) {
            (Some(old), Some(new)) => new > old,
            _ => false,
        };
        if !extends {
            return Ok(None);
        }
        self.current.send_replace(Some(token.clone()));
        Ok(Some(token))
    }

    /// The token was revoked: with a login, log in again, once (until a refresh works
    /// again); `Ok(false)` when that is not possible.
    pub async fn after_revocation(&self) -> Result<bool, Error> {
        if !self.can_log_in() || self.relogged.swap(true, Ordering::SeqCst) {
            return Ok(false);
        }
        self.login().await.map(|_| true)
    }
}

/// The task that keeps the token fresh: at 80% of each token's life, a new one.
pub(crate) async fn keep_fresh(auth: Arc<Auth>) {
    let mut tokens = auth.subscribe();
    loop {
        let due = tokens
            .borrow_and_update()
            .as_ref()
            .and_then(Token::refresh_in);
        let Some(due) = due else {
            // No expiry known: nothing to do until another token comes.
            if tokens.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = tokens.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep(due) => {}
        }
        let mut delay = Duration::from_millis(250);
        loop {
            match auth.renew().await {
                // Published: the loop above schedules the next one.
                Ok(Some(_)) => break,
                // It cannot be extended: it lasts until it expires.
                Ok(None) => {
                    if tokens.changed().await.is_err() {
                        return;
                    }
                    break;
                }
                Err(_) => {
                    let expired = auth.token().is_none_or(|t| t.expired());
                    if expired && !auth.can_log_in() {
                        // Too late: the connection ends, and says why.
                        if tokens.changed().await.is_err() {
                            return;
                        }
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{claims, Token};
    use base64::Engine as _;

    fn jwt(claims: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b64.encode(r#"{"alg":"HS256"}"#),
            b64.encode(claims)
        )
    }

    #[test]
    fn claims_are_read_without_verifying() {
        let t = Token::given(jwt(r#"{"sub":"u1","name":"Ann","exp":4000000000}"#));
        assert_eq!(
            (
                t.identity.uid.as_str(),
                t.identity.name.as_str(),
                t.identity.expires
            ),
            ("u1", "Ann", Some(4_000_000_000))
        );
        let t = Token::given(jwt(r#"{"sub":"u2","exp":1}"#));
        assert_eq!(t.identity.name, "u2");
        assert!(t.expired());
        assert!(claims("not a jwt").is_none());
        let t = Token::given("garbage".into());
        assert_eq!((t.identity.uid.as_str(), t.identity.expires), ("", None));
    }

    #[test]
    fn refresh_comes_at_80_percent_of_the_life() {
        let mut t = Token::given(jwt(r#"{"sub":"u1","exp":0}"#));
        let now = super::now();
        t.received = now;
        t.identity.expires = Some(now as u64 + 100);
        let due = t.refresh_in().unwrap().as_secs_f64();
        assert!((75.0..=80.5).contains(&due), "{due}");
        t.identity.expires = None;
        assert!(t.refresh_in().is_none());
    }
}
