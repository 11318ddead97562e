//! Who is who (issue 15, first part): the JSON Web Tokens clients will present with
//! `--auth token`, and the keys that sign and verify them.
//!
//! - [`keyring`]: the server's own HS256 secrets, generated into the data directory on first
//!   use (mode 0600), rotated with a grace period (`rtchat secret rotate`), or one fixed secret
//!   from `--jwt-secret-file`.
//! - [`token`]: the claims rtchat reads (`sub`, `name`, `exp`, `nbf`, `jti`, `rooms`,
//!   `admin`), verification against the keyring and issuers' public keys (RS256, ES256,
//!   EdDSA, chosen by `kid`), each refusal with a precise reason, and minting.
//! - [`accounts`]: the built-in accounts: `/auth/signup`, `login`, `refresh`, `logout`.
//! - [`access`]: who may use which room: the `rooms` claim, private rooms, direct messages.
//! - [`moderation`]: bans, mutes, the audit log; [`admin_routes`]: the admin API.
//! - [`private_routes`]: room settings, members, direct messages over HTTP.
//! - [`cluster`]: keeping every node's mirrors in step (`--store redis://`).
//! - [`gate`]: `--auth off|token`, where a request's token is found (Bearer, the session
//!   cookie, `?token=`), the revoked token ids, and the 401 a refused client gets.

pub mod access;
pub mod accounts;
pub mod admin_overview;
pub mod admin_routes;
pub mod cluster;
pub mod deletion;
pub mod gate;
pub mod keyring;
pub mod lifetime;
pub mod moderation;
pub mod private_routes;
pub mod token;
pub mod user_deletion;

pub use gate::{Auth, Unauthorized};
pub use keyring::{Keyring, KeyringError};
pub use token::{Claims, Identity, PublicKey, TokenError, Verifier};
