//! The built-in accounts (issue 15): `POST /auth/signup`, `/auth/login`, `/auth/refresh` and
//! `/auth/logout`, for a chat that has no identity provider of its own.
//!
//! An account is a name and an argon2id password hash in the directory
//! ([`rtchat_core::Directory`]). Logging in answers two tokens of one session, both minted
//! with the server's own secret ([`super::Auth::mint`]) and sharing one random `jti` (the
//! session id):
//! - the **access token**, in the JSON answer, short-lived (`--token-ttl`), which clients
//!   send as `Authorization: Bearer` (or `?token=` on a WebSocket or `EventSource`);
//! - the **session token**, in the `rtchat_session` cookie (`HttpOnly; SameSite=Strict;
//!   Path=/`, `Secure` over HTTPS), long-lived (`--session-ttl`), which browsers send by
//!   themselves and which `POST /auth/refresh` trades for a fresh access token.
//!
//! Every token of a session carries `iat` = the login time, so a refresh never reaches past
//! `iat + --session-ttl`, whichever token asks for it. Logging out revokes the session id,
//! which refuses both tokens at once.
//!
//! Password checks are expensive on purpose (argon2id, 19 MiB, two passes): one runs at a
//! time, on a blocking thread, and at most `--login-queue` requests wait for it; the next get
//! `503` with `Retry-After: 1` at once, so a login storm costs one core and bounded memory
//! and never stalls the rest of the server. Login and signup attempts are also rate limited
//! per client address (`--login-rate-per-ip`) and login attempts per account name
//! (`--login-rate-per-user`). A wrong name and a wrong password get the same `401`, after the
//! same work (an unknown name is checked against a dummy hash).
//!
//! With `--auth off` there are no accounts: every `/auth/*` answers `404`.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rtchat_core::directory::{Account, DirectoryError};
use rtchat_core::StoreError;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::gate::{request_token, Unauthorized, COOKIE};
use super::keyring;
use super::token::{Claims, Identity};
use crate::api::{read_json_body, ApiError};
use crate::state::AppState;

/// The shortest password accepted at signup, in bytes.
pub const MIN_PASSWORD: usize = 8;
/// The longest password accepted, in bytes (longer ones are never hashed).
pub const MAX_PASSWORD: usize = 1024;
/// Prefix of the session ids (`jti`) logins make: `s-` and 32 hex digits.
pub const SESSION_PREFIX: &str = "s-";
/// Names and addresses a login limiter tracks at most; past this after a sweep it starts over.
const MAX_KEYS: usize = 65_536;
/// How often, at most, refilled rate-limit buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The one answer to a wrong name or a wrong password.
const BAD_CREDENTIALS: &str = "wrong user name or password";

/// An argon2id hash (with [`Argon2::default`]'s parameters) of a random password nobody
/// knows: what a login for a name that has no account is checked against, so that it costs
/// the same time as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$GHTN/lWQ8aERvJxAYoIqJg$+JnMDAPXSYjmrc4WmWB3gVJg7hZmC5vyvfA+d7IdfEY";

/// The settings of the built-in accounts (`rtchat serve --token-ttl ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// How long an access token is valid (`--token-ttl`).
    pub token_ttl: Duration,
    /// How long a login lasts: the session cookie's lifetime, past which no refresh reaches
    /// (`--session-ttl`).
    pub session_ttl: Duration,
    /// Requests that may wait for the password hasher while it works; more get `503`
    /// (`--login-queue`).
    pub login_queue: usize,
    /// Login and signup attempts one client address may make per minute, in a burst or
    /// spread (`--login-rate-per-ip`; 0: no limit).
    pub login_rate_per_ip: u32,
    /// Login attempts one account name may receive per minute, from anywhere
    /// (`--login-rate-per-user`; 0: no limit).
    pub login_rate_per_user: u32,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            login_queue: 64,
            login_rate_per_ip: 20,
            login_rate_per_user: 10,
        }
    }
}

/// `/auth/signup`, `/auth/login`, `/auth/refresh`, `/auth/logout` (and a JSON `404` for any
/// other `/auth/*`).
pub fn routes() -> Router<AppState> {
    // Made on the first request, from the settings in the state; shared by every listener
    // (they serve clones of one router).
    let accounts: Arc<OnceLock<Accounts>> = Arc::default();
    let route = |endpoint: Endpoint| {
        let accounts = accounts.clone();
        any(move |State(state): State<AppState>, req: Request| {
            let accounts = accounts.clone();
            async move { serve(endpoint, state, &accounts, req).await }
        })
    };
    Router::new()
        .route("/auth/signup", route(Endpoint::Signup))
        .route("/auth/login", route(Endpoint::Login))
        .route("/auth/refresh", route(Endpoint::Refresh))
        .route("/auth/logout", route(Endpoint::Logout))
        .route("/auth/{*rest}", route(Endpoint::Unknown))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Signup,
    Login,
    Refresh,
    Logout,
    Unknown,
}

async fn serve(
    endpoint: Endpoint,
    state: AppState,
    accounts: &OnceLock<Accounts>,
    req: Request,
) -> Response {
    if !state.auth.enabled() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "accounts need rtchat serve --auth token",
        )
        .into_response();
    }
    if endpoint == Endpoint::Unknown {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {} (the accounts' are /auth/signup, /auth/login, /auth/refresh and /auth/logout)",
                req.uri().path()
            ),
        )
        .into_response();
    }
    if req.method() != Method::POST {
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {}", req.method(), req.uri().path()),
        )
        .into_response();
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let accounts = accounts.get_or_init(|| Accounts::new(state.config.accounts));
    let answer = match endpoint {
        Endpoint::Signup => signup(&state, accounts, req).await,
        Endpoint::Login => login(&state, accounts, req).await,
        Endpoint::Refresh => refresh(&state, accounts, req).await,
        Endpoint::Logout => logout(&state, accounts, req).await,
        Endpoint::Unknown => unreachable!("answered above"),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// What a login, a signup and a refresh answer.
#[derive(Debug, Serialize)]
struct LoggedIn {
    /// The access token.
    token: String,
    /// When it expires (Unix seconds).
    expires: u64,
    uid: String,
    name: String,
    admin: bool,
}

/// The accounts' state: the settings, the hasher's queue and the login limiters.
struct Accounts {
    settings: AccountSettings,
    hasher: HashQueue,
    per_ip: Option<Limiter<IpAddr>>,
    per_user: Option<Limiter<String>>,
}

impl Accounts {
    fn new(settings: AccountSettings) -> Accounts {
        Accounts {
            settings,
            hasher: HashQueue::new(settings.login_queue),
            per_ip: Limiter::per_minute(settings.login_rate_per_ip),
            per_user: Limiter::per_minute(settings.login_rate_per_user),
        }
    }

    /// Takes one attempt from the bucket of the client's address.
    fn check_address(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.per_ip, client) else {
            return Ok(());
        };
        limiter.check(&address_key(ip)).map_err(|wait| {
            rate_limited(
                format!(
                    "too many login and signup attempts from your address: at most {} a minute (--login-rate-per-ip)",
                    limiter.per_minute
                ),
                wait,
            )
        })
    }

    /// Takes one attempt from the bucket of the account name.
    fn check_name(&self, name: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_user else {
            return Ok(());
        };
        limiter.check(&name.to_owned()).map_err(|wait| {
            rate_limited(
                format!(
                    "too many login attempts for this user name: at most {} a minute (--login-rate-per-user)",
                    limiter.per_minute
                ),
                wait,
            )
        })
    }

    /// When the session that started at `iat` ends (Unix seconds).
    fn session_end(&self, iat: u64) -> u64 {
        iat.saturating_add(self.settings.session_ttl.as_secs())
    }
}

/// A `429` with `Retry-After` (whole seconds, rounded up) and `"retry_after_ms"`.
fn rate_limited(what: String, wait: Duration) -> ApiError {
    let ms = (wait.as_nanos().div_ceil(1_000_000) as u64).max(1);
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!("{what}; try again in {:.3} s", ms as f64 / 1000.0),
        retry_after_ms: Some(ms),
        code: Some("login_rate_limited"),
    }
}

/// `POST /auth/signup` `{"user", "password"}`: makes the account, then logs in (`201`).
async fn signup(state: &AppState, accounts: &Accounts, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    accounts.check_address(client_ip(state, &parts))?;
    let (user, password) = credentials(state, &parts, body).await?;
    let name = crate::transport::check_user(Some(&user), &state.hub.config().limits)
        .map_err(|e| ApiError::from(e).with_code("bad_user"))?;
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long; it is {} bytes",
                password.len()
            ),
        )
        .with_code("bad_password"));
    }
    let directory = state.auth.directory();
    if directory
        .account_by_name(&name)
        .await
        .map_err(store_failed)?
        .is_some()
    {
        return Err(name_taken(&name));
    }
    let password_hash = accounts
        .hasher
        .run(move || hash_password(password.as_bytes()))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot hash the password",
            )
        })?;
    let mut account = Account {
        uid: new_uid().map_err(no_randomness)?,
        name,
        password_hash,
        admin: false,
        created: now_ms(),
    };
    // A clash of 64 random bits is next to impossible; one more try all the same.
    let mut tries = 0;
    loop {
        match directory.create_account(account.clone()).await {
            Ok(()) => break,
            Err(DirectoryError::UidTaken(_)) if tries == 0 => {
                tries += 1;
                account.uid = new_uid().map_err(no_randomness)?;
            }
            Err(DirectoryError::NameTaken(name)) => return Err(name_taken(&name)),
            Err(DirectoryError::UidTaken(uid)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the new user id {uid:?} is taken twice in a row; try again"),
                ))
            }
            Err(DirectoryError::Store(e)) => return Err(store_failed(e)),
        }
    }
    tracing::info!(uid = %account.uid, name = %account.name, "account made");
    log_in(state, accounts, &account, &parts, StatusCode::CREATED)
}

/// `POST /auth/login` `{"user", "password"}`.
async fn login(state: &AppState, accounts: &Accounts, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    accounts.check_address(client_ip(state, &parts))?;
    let (user, password) = credentials(state, &parts, body).await?;
    // A name no account can have (too long, control characters...) is a wrong name.
    let Ok(name) = crate::transport::check_user(Some(&user), &state.hub.config().limits) else {
        return Err(bad_credentials());
    };
    accounts.check_name(&name)?;
    if password.len() > MAX_PASSWORD {
        return Err(bad_credentials());
    }
    let account = state
        .auth
        .directory()
        .account_by_name(&name)
        .await
        .map_err(store_failed)?;
    let hash = account
        .as_ref()
        .map_or_else(|| DUMMY_HASH.to_owned(), |a| a.password_hash.clone());
    let matches = accounts
        .hasher
        .run(move || verify_password(password.as_bytes(), &hash))
        .await?;
    match account {
        Some(account) if matches => {
            // A banned user cannot log in (told why: the password was right).
            if let Some(ban) = state.auth.moderation().ban_of(&account.uid) {
                let refusal = super::TokenError::Banned {
                    reason: ban.reason,
                    until: ban.until,
                };
                return Ok(super::Unauthorized(refusal).into_response());
            }
            log_in(state, accounts, &account, &parts, StatusCode::OK)
        }
        _ => {
            tracing::info!(name = %name, "login refused: wrong user name or password");
            Err(bad_credentials())
        }
    }
}

/// `POST /auth/refresh`: a new access token for the session of the token the request
/// carries (the session cookie, or an access token as `Authorization: Bearer`).
async fn refresh(
    state: &AppState,
    accounts: &Accounts,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _body) = req.into_parts();
    let (token, identity) = match identify(state, &parts) {
        Ok(found) => found,
        Err(refused) => return Ok(refused.into_response()),
    };
    let now = keyring::now();
    // How far this session may go: a login's tokens carry the session's start as `iat`;
    // a token from elsewhere (an issuer's, `rtchat token`) is never extended past its own
    // expiry.
    let until = match (&identity.jti, issued_at(&token)) {
        (Some(jti), Some(iat)) if jti.starts_with(SESSION_PREFIX) => accounts.session_end(iat),
        _ => identity.expires,
    };
    if until <= now {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the session has ended: log in again",
        )
        .with_code("session_expired"));
    }
    // The account's current name and rights (an admin grant shows from the next refresh on).
    let (name, admin) = match state
        .auth
        .directory()
        .account(&identity.uid)
        .await
        .map_err(store_failed)?
    {
        Some(account) => (account.name, account.admin),
        None => (identity.name.clone(), identity.admin),
    };
    let claims = Claims {
        sub: identity.uid.clone(),
        name: Some(name.clone()),
        exp: now
            .saturating_add(accounts.settings.token_ttl.as_secs())
            .min(until),
        nbf: None,
        iat: issued_at(&token).or(Some(now)),
        jti: identity.jti.clone(),
        rooms: identity.rooms.clone(),
        admin,
    };
    let access = mint(state, &claims)?;
    let mut res = Json(LoggedIn {
        token: access,
        expires: claims.exp,
        uid: identity.uid,
        name,
        admin,
    })
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /auth/logout`: revokes the session (both its tokens) and clears the cookie.
async fn logout(state: &AppState, accounts: &Accounts, req: Request) -> Result<Response, ApiError> {
    let (parts, _body) = req.into_parts();
    let secure = over_https(state, &parts);
    let (token, identity) = match identify(state, &parts) {
        Ok(found) => found,
        Err(refused) => {
            // Whatever was wrong with it, the browser forgets the cookie.
            let mut res = refused.into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, session_cookie("", 0, secure));
            return Ok(res);
        }
    };
    let revoked = match &identity.jti {
        Some(jti) => {
            // The access token and the session cookie share the id: refuse it until the
            // later of the two would have expired.
            let until = match issued_at(&token) {
                Some(iat) if jti.starts_with(SESSION_PREFIX) => {
                    accounts.session_end(iat).max(identity.expires)
                }
                _ => identity.expires,
            };
            state.auth.revoke(jti, until).await.map_err(store_failed)?;
            tracing::info!(uid = %identity.uid, jti = %jti, "logged out");
            true
        }
        None => false,
    };
    let mut res = Json(serde_json::json!({ "status": "ok", "revoked": revoked })).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0, secure));
    Ok(res)
}

/// The answer to a good login (or a signup): the access token in the body, the session
/// token in the cookie.
fn log_in(
    state: &AppState,
    accounts: &Accounts,
    account: &Account,
    parts: &Parts,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let settings = &accounts.settings;
    let now = keyring::now();
    let session_exp = accounts.session_end(now);
    let session = Claims {
        sub: account.uid.clone(),
        name: Some(account.name.clone()),
        exp: session_exp,
        nbf: None,
        iat: Some(now),
        jti: Some(new_session_id().map_err(no_randomness)?),
        rooms: None,
        admin: account.admin,
    };
    let access = Claims {
        exp: now
            .saturating_add(settings.token_ttl.as_secs())
            .min(session_exp),
        ..session.clone()
    };
    let cookie = session_cookie(
        &mint(state, &session)?,
        settings.session_ttl.as_secs(),
        over_https(state, parts),
    );
    let mut res = (
        status,
        Json(LoggedIn {
            token: mint(state, &access)?,
            expires: access.exp,
            uid: account.uid.clone(),
            name: account.name.clone(),
            admin: account.admin,
        }),
    )
        .into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `rtchat_session=VALUE; HttpOnly; SameSite=Strict; Path=/; Max-Age=N`, and `; Secure` when
/// the client came over HTTPS.
pub fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("a token is a valid header value")
}

fn mint(state: &AppState, claims: &Claims) -> Result<String, ApiError> {
    state.auth.mint(claims).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "accounts need rtchat serve --auth token",
        )
    })
}

/// The token the request carries and who it says the client is, or the `401`.
fn identify(state: &AppState, parts: &Parts) -> Result<(String, Identity), Unauthorized> {
    let token = request_token(parts);
    let identity = state
        .auth
        .identify(token.as_deref())
        .map_err(Unauthorized)?
        .ok_or(Unauthorized(super::TokenError::Missing))?;
    Ok((token.unwrap_or_default(), identity))
}

/// The `iat` of a token already verified (its payload read again: [`Identity`] does not keep
/// it).
fn issued_at(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok()?.iat
}

fn client_ip(state: &AppState, parts: &Parts) -> Option<IpAddr> {
    state
        .proxies
        .client_of(&parts.extensions, &parts.headers)
        .map(|c| c.ip)
}

/// Whether the client used HTTPS (the TLS or HTTP/3 listener, or a trusted proxy's
/// `X-Forwarded-Proto: https`).
fn over_https(state: &AppState, parts: &Parts) -> bool {
    state
        .proxies
        .client_of(&parts.extensions, &parts.headers)
        .is_some_and(|c| c.https)
}

/// `{"user": ..., "password": "..."}`: the user as sent (checked by the caller) and the
/// password.
async fn credentials(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<(serde_json::Value, String), ApiError> {
    let bytes = read_json_body(
        &parts.headers,
        body,
        state.config.max_body,
        state.config.timeouts.body,
    )
    .await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    let shape = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be a JSON object {\"user\": string, \"password\": string}",
        )
        .with_code("bad_request")
    };
    let serde_json::Value::Object(mut fields) = value else {
        return Err(shape());
    };
    let user = match fields.remove("user") {
        Some(user @ serde_json::Value::String(_)) => user,
        _ => return Err(shape()),
    };
    let Some(serde_json::Value::String(password)) = fields.remove("password") else {
        return Err(shape());
    };
    Ok((user, password))
}

fn bad_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS).with_code("bad_credentials")
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("the name {name:?} is taken; choose another"),
    )
    .with_code("name_taken")
}

fn store_failed(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "the account directory failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the account directory does not answer: {e}"),
    )
}

fn no_randomness(e: getrandom::Error) -> ApiError {
    tracing::error!(error = %e, "no random bytes");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "cannot get random bytes from the system",
    )
}

/// `u-` and 16 random hex digits.
fn new_uid() -> Result<String, getrandom::Error> {
    Ok(format!("u-{}", random_hex::<8>()?))
}

/// `s-` and 32 random hex digits: the `jti` of a login's tokens.
fn new_session_id() -> Result<String, getrandom::Error> {
    Ok(format!("{SESSION_PREFIX}{}", random_hex::<16>()?))
}

fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An argon2id hash of `password` with a fresh random salt, in PHC string form.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random bytes for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `phc` (an argon2 PHC string) was made from; false for a
/// string that is not one.
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}

/// The password hasher: one hash at a time on a blocking thread, at most `cap` requests
/// waiting for it.
struct HashQueue {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    cap: usize,
}

/// Why a hash did not run.
#[derive(Debug, PartialEq, Eq)]
enum HashRefused {
    /// `cap` requests are waiting already.
    Busy { cap: usize },
    /// The hashing thread panicked.
    Failed,
}

impl From<HashRefused> for ApiError {
    fn from(e: HashRefused) -> ApiError {
        match e {
            HashRefused::Busy { cap } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "too many logins at once: {cap} are waiting for the password check (--login-queue); try again in a second"
                ),
                retry_after_ms: Some(1000),
                code: Some("login_busy"),
            },
            HashRefused::Failed => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the password check failed",
            ),
        }
    }
}

/// Counts one waiting request while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashQueue {
    fn new(cap: usize) -> HashQueue {
        HashQueue {
            running: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            cap,
        }
    }

    /// Runs `work` when the hasher is free, unless `cap` requests are waiting already. The
    /// hasher stays taken until `work` returns, even if the request is dropped meanwhile.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashRefused> {
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.cap).then_some(n + 1)
                    })
                    .map_err(|_| HashRefused::Busy { cap: self.cap })?;
                let _waiting = Waiting(&self.waiting);
                self.running
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| HashRefused::Failed)?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| HashRefused::Failed)
    }
}

/// A keyed per-minute rate limit whose memory is bounded (as in [`crate::rate_limit`]).
struct Limiter<K: Hash + Eq + Clone> {
    per_minute: u32,
    quota: Quota,
    buckets: RwLock<Arc<DefaultKeyedRateLimiter<K>>>,
    last_sweep: Mutex<Instant>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `n` attempts a minute, all at once or spread; `None` for 0 (no limit).
    fn per_minute(n: u32) -> Option<Limiter<K>> {
        let quota = Quota::per_minute(NonZeroU32::new(n)?);
        Some(Limiter {
            per_minute: n,
            quota,
            buckets: RwLock::new(Arc::new(RateLimiter::keyed(quota))),
            last_sweep: Mutex::new(Instant::now()),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one attempt from `key`'s bucket, or says how long until one is taken again.
    fn check(&self, key: &K) -> Result<(), Duration> {
        self.sweep();
        let buckets = self
            .buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        buckets
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops refilled buckets at most once per [`SWEEP_EVERY`]; starts over when that
    /// leaves more than [`MAX_KEYS`] (limits then restart full: failing open for a moment
    /// rather than growing without bound).
    fn sweep(&self) {
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() < SWEEP_EVERY {
            return;
        }
        *last = Instant::now();
        let buckets = self
            .buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        buckets.retain_recent();
        if buckets.len() > MAX_KEYS {
            tracing::warn!(
                keys = buckets.len(),
                "login rate limit: too many names or addresses tracked; starting over"
            );
            *self.buckets.write().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(RateLimiter::keyed(self.quota));
        }
        buckets.shrink_to_fit();
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's prefix).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_and_the_dummy_is_like_a_real_hash() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(b"correct horse", &hash));
        assert!(!verify_password(b"correct horsE", &hash));
        assert!(!verify_password(b"correct horse", "not a hash"));
        // Two hashes of one password differ (salted).
        assert_ne!(hash, hash_password(b"correct horse").unwrap());
        // The dummy costs what a real check costs: same algorithm and parameters.
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = PasswordHash::new(&hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.version, real.version);
        assert!(!verify_password(b"", DUMMY_HASH));
    }

    #[test]
    fn the_cookie_has_its_attributes() {
        assert_eq!(
            session_cookie("abc", 60, false),
            "rtchat_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        assert_eq!(
            session_cookie("", 0, true),
            "rtchat_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
    }

    #[test]
    fn ids_are_random_hex() {
        let uid = new_uid().unwrap();
        assert_eq!(uid.len(), 2 + 16);
        assert!(uid.starts_with("u-"));
        assert!(uid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        let sid = new_session_id().unwrap();
        assert_eq!(sid.len(), 2 + 32);
        assert!(sid.starts_with(SESSION_PREFIX));
        assert_ne!(new_uid().unwrap(), uid);
    }

    #[test]
    fn issued_at_reads_a_tokens_payload() {
        let claims = Claims {
            sub: "u".into(),
            name: None,
            exp: 10,
            nbf: None,
            iat: Some(7),
            jti: None,
            rooms: None,
            admin: false,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(issued_at(&format!("h.{payload}.s")), Some(7));
        assert_eq!(issued_at("nonsense"), None);
    }

    #[test]
    fn limiters_count_per_key_and_zero_is_off() {
        assert!(Limiter::<String>::per_minute(0).is_none());
        let limiter = Limiter::<String>::per_minute(2).unwrap();
        limiter.check(&"ann".to_owned()).unwrap();
        limiter.check(&"ann".to_owned()).unwrap();
        let wait = limiter.check(&"ann".to_owned()).unwrap_err();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        limiter.check(&"bob".to_owned()).unwrap();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hasher_runs_one_at_a_time_and_refuses_beyond_its_queue() {
        let queue = Arc::new(HashQueue::new(1));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // The first takes the hasher and holds it until released.
        let first = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue
                    .run(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        1
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        // The second waits (the queue holds one)...
        let second = tokio::spawn({
            let queue = queue.clone();
            async move { queue.run(|| 2).await }
        });
        while queue.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the third is refused at once.
        assert_eq!(queue.run(|| 3).await, Err(HashRefused::Busy { cap: 1 }));
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
        assert_eq!(queue.waiting.load(Ordering::Acquire), 0);
        // A queue of 0: only when the hasher is free.
        let none = HashQueue::new(0);
        assert_eq!(none.run(|| 4).await, Ok(4));
    }
}
