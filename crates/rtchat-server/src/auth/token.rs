//! Tokens: the claims rtchat reads, how a token is verified, and why one is refused.
//!
//! A token is a JWT signed either with one of the server's own HS256 secrets
//! ([`super::Keyring`]) or with an issuer's private key whose public half the server was
//! given (`--jwt-public-key [KID=]FILE`: RS256, ES256/ES384 or EdDSA, told apart by the PEM).
//! The header's `kid` picks the key; a token without one is accepted only when the server
//! knows exactly one key. The algorithm is the key's, never the header's choice (so an HS256
//! token cannot pose as signed by a public key). `exp` and `sub` are required; `nbf` is
//! honoured; [`LEEWAY`] absorbs clock skew between an issuer and rtchat.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keyring::{self, Keyring};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY: u64 = 5;

/// What a token says (the claims rtchat reads; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's stable id.
    pub sub: String,
    /// The display name; `sub` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Not before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's id, by which it can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The only rooms this token may use, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// An administrator's token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stable user id (`sub`).
    pub uid: String,
    /// The display name messages carry (`name`, else `sub`).
    pub name: String,
    /// May moderate and administer.
    pub admin: bool,
    /// The rooms allowed by the token, if it restricts them.
    pub rooms: Option<Vec<String>>,
    /// The token's id (`jti`), if it has one.
    pub jti: Option<String>,
    /// When the token expires (Unix seconds).
    pub expires: u64,
}

impl Identity {
    /// Whether the token's `rooms` claim (if it has one) lets it into `room`; `Err` says why
    /// not, for a `403` or an `error` frame.
    pub fn may_enter(&self, room: &str) -> Result<(), String> {
        match &self.rooms {
            Some(rooms) if !rooms.iter().any(|r| r == room) => Err(format!(
                "your token does not allow the room {room:?} (its rooms claim: {})",
                rooms.join(", ")
            )),
            _ => Ok(()),
        }
    }

    /// Who posts, as the hub records it on a message.
    pub fn poster(&self) -> rtchat_core::Poster {
        rtchat_core::Poster {
            uid: self.uid.clone(),
            name: self.name.clone(),
        }
    }
}

/// Why a token was refused. Every one is a 401 on HTTP; [`TokenError::code`] is the
/// machine-readable reason and the `Display` text the human one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token came with the request.
    #[error("no token: send one as `Authorization: Bearer TOKEN` (or log in)")]
    Missing,
    /// Not a JWT, or its header or claims do not parse.
    #[error("the token is not a valid JWT: {0}")]
    Malformed(String),
    /// Signed with a key id this server does not know.
    #[error("the token is signed with a key this server does not know (kid {0:?})")]
    UnknownKey(String),
    /// No `kid` in the header, and more than one key could have signed it.
    #[error("the token names no key (kid) and this server has several")]
    NoKeyId,
    /// The signature does not match, or the header's algorithm is not the key's.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before its `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is missing or a claim is unusable.
    #[error("the token's claims are not usable: {0}")]
    BadClaims(String),
    /// Its `jti` was revoked (logout, or an admin).
    #[error("the token has been revoked")]
    Revoked,
    /// Its user is banned (a `403`, not a `401`: another token would not help).
    #[error("you are banned{}: {reason}", until.map(|t| format!(" until {}", crate::auth::moderation::when(t))).unwrap_or_default())]
    Banned { reason: String, until: Option<u64> },
}

impl TokenError {
    /// The machine-readable reason, for JSON error bodies and close reasons.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::UnknownKey(_) | TokenError::NoKeyId => "token_unknown_key",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::BadClaims(_) => "token_bad_claims",
            TokenError::Revoked => "token_revoked",
            TokenError::Banned { .. } => "banned",
        }
    }
}

/// An issuer's public key, from `--jwt-public-key [KID=]FILE`.
#[derive(Clone)]
pub struct PublicKey {
    /// The key id tokens name it by (`KID`, else the file name without its extension).
    pub kid: String,
    /// The algorithm it verifies.
    pub algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Reads `[KID=]FILE`: a PEM public key, RSA (RS256), EC P-256 (ES256) or P-384
    /// (ES384), or Ed25519 (EdDSA).
    pub fn load(spec: &str) -> Result<PublicKey, String> {
        let (kid, file) = match spec.split_once('=') {
            Some((kid, file)) if !kid.is_empty() && !kid.contains('/') => {
                (kid.to_owned(), Path::new(file))
            }
            _ => {
                let file = Path::new(spec);
                let stem = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("--jwt-public-key {spec}: no file name to use as the key id (give KID=FILE)"))?;
                (stem.to_owned(), file)
            }
        };
        let pem = std::fs::read(file)
            .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", file.display()))?;
        PublicKey::from_pem(kid, &pem)
            .map_err(|e| format!("--jwt-public-key {}: {e}", file.display()))
    }

    /// A key from PEM text, with the given key id.
    pub fn from_pem(kid: String, pem: &[u8]) -> Result<PublicKey, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(PublicKey {
                kid,
                algorithm: Algorithm::RS256,
                key,
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            // The uncompressed point: 65 bytes on P-256, 97 on P-384.
            let point = match key.kind() {
                DecodingKeyKind::SecretOrDer(bytes) => bytes.len(),
                DecodingKeyKind::RsaModulusExponent { .. } => 0,
            };
            let algorithm = match point {
                65 => Algorithm::ES256,
                97 => Algorithm::ES384,
                n => {
                    return Err(format!(
                        "an EC key of an unsupported curve ({n}-byte point; P-256 or P-384 only)"
                    ))
                }
            };
            return Ok(PublicKey {
                kid,
                algorithm,
                key,
            });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(PublicKey {
                kid,
                algorithm: Algorithm::EdDSA,
                key,
            });
        }
        Err("not a PEM public key rtchat can use (RSA, EC P-256/P-384 or Ed25519, `-----BEGIN PUBLIC KEY-----`)".to_owned())
    }
}

/// A key that verifies tokens, and the one algorithm it verifies.
struct Key {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against the server's keyring and the issuers' public keys.
pub struct Verifier {
    keyring: RwLock<Keyring>,
    public: Vec<PublicKey>,
    /// The keyring file's modification time and length when last read: a change (a rotation
    /// by `rtchat secret rotate`) is read before the next verification.
    file_version: Mutex<Option<(std::time::SystemTime, u64)>>,
}

impl Verifier {
    /// A verifier of the keyring's tokens and the public keys' (whose `kid`s must differ).
    pub fn new(keyring: Keyring, public: Vec<PublicKey>) -> Result<Verifier, String> {
        let mut seen = std::collections::HashSet::new();
        for kid in public
            .iter()
            .map(|k| k.kid.as_str())
            .chain(keyring.secrets().iter().map(|s| s.kid.as_str()))
        {
            if !seen.insert(kid) {
                return Err(format!("two token keys have the key id {kid:?}"));
            }
        }
        Ok(Verifier {
            keyring: RwLock::new(keyring),
            public,
            file_version: Mutex::new(None),
        }
        .with_file_version())
    }

    /// Who `token` says the client is, or why it is refused (revocation is checked by the
    /// caller, which holds the revocation list).
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        self.reload_if_changed();
        identity(self.verify_with_keys(token, &header)?)
    }

    fn with_file_version(self) -> Verifier {
        let version = self.read_file_version();
        *self.file_version.lock().unwrap_or_else(|e| e.into_inner()) = version;
        self
    }

    fn read_file_version(&self) -> Option<(std::time::SystemTime, u64)> {
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        let meta = std::fs::metadata(ring.path()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Re-reads the keyring file if it changed since it was read (one `stat` per
    /// verification, which happens once per connection, never per message): a rotation's
    /// retirements take effect at once.
    fn reload_if_changed(&self) {
        let Some(version) = self.read_file_version() else {
            return;
        };
        let mut known = self.file_version.lock().unwrap_or_else(|e| e.into_inner());
        if *known == Some(version) {
            return;
        }
        let fresh = self
            .keyring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .reload();
        match fresh {
            Some(Ok(ring)) => {
                *self.keyring.write().unwrap_or_else(|e| e.into_inner()) = ring;
                *known = Some(version);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "cannot re-read the token secrets"),
            None => {}
        }
    }

    fn verify_with_keys(&self, token: &str, header: &Header) -> Result<Claims, TokenError> {
        let now = keyring::now();
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: HashMap<&str, Key> = ring
            .verifying(now)
            .filter_map(|s| {
                let key = DecodingKey::from_secret(&s.key).ok()?;
                Some((
                    s.kid.as_str(),
                    Key {
                        algorithm: Algorithm::HS256,
                        key,
                    },
                ))
            })
            .collect();
        for p in &self.public {
            keys.insert(
                p.kid.as_str(),
                Key {
                    algorithm: p.algorithm,
                    key: p.key.clone(),
                },
            );
        }
        let key = match header.kid.as_deref() {
            Some(kid) => keys
                .get(kid)
                .ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?,
            None if keys.len() == 1 => keys.values().next().expect("one key"),
            None => return Err(TokenError::NoKeyId),
        };
        if header.alg != key.algorithm {
            return Err(TokenError::BadSignature);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    TokenError::BadClaims(format!("the claim {c:?} is required"))
                }
                ErrorKind::Json(e) => TokenError::BadClaims(e.to_string()),
                _ => TokenError::Malformed(e.to_string()),
            })
    }

    /// Signs `claims` with the keyring's newest secret (HS256, its `kid` in the header).
    pub fn mint(&self, claims: &Claims) -> String {
        mint(
            &self.keyring.read().unwrap_or_else(|e| e.into_inner()),
            claims,
        )
    }
}

/// Signs `claims` with the keyring's newest secret (HS256, its `kid` in the header).
pub fn mint(keyring: &Keyring, claims: &Claims) -> String {
    let secret = keyring.signing();
    let header = Header {
        kid: Some(secret.kid.clone()),
        ..Header::new(Algorithm::HS256)
    };
    // The keyring holds only secrets of at least 32 bytes, which HS256 always accepts.
    let key = EncodingKey::from_secret(&secret.key).expect("a keyring secret is never empty");
    jsonwebtoken::encode(&header, claims, &key).expect("HS256 signing does not fail")
}

fn identity(claims: Claims) -> Result<Identity, TokenError> {
    if claims.sub.trim().is_empty() {
        return Err(TokenError::BadClaims("\"sub\" is empty".to_owned()));
    }
    let name = match claims.name {
        Some(n) if n.trim().is_empty() => {
            return Err(TokenError::BadClaims("\"name\" is empty".to_owned()))
        }
        Some(n) => n,
        None => claims.sub.clone(),
    };
    Ok(Identity {
        uid: claims.sub,
        name,
        admin: claims.admin,
        rooms: claims.rooms,
        jti: claims.jti,
        expires: claims.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keyring::tests::temp_dir;
    use std::time::Duration;

    fn claims(sub: &str, exp_in: i64) -> Claims {
        Claims {
            sub: sub.to_owned(),
            name: Some(format!("{sub} name")),
            exp: (keyring::now() as i64 + exp_in) as u64,
            nbf: None,
            iat: Some(keyring::now()),
            jti: Some("j1".to_owned()),
            rooms: None,
            admin: false,
        }
    }

    fn own(name: &str) -> (std::path::PathBuf, Verifier) {
        let dir = temp_dir(name);
        let ring = Keyring::open(&dir).unwrap();
        (dir, Verifier::new(ring, vec![]).unwrap())
    }

    #[test]
    fn a_minted_token_verifies_to_its_identity() {
        let (_, v) = own("mint");
        let mut c = claims("u-1", 60);
        c.admin = true;
        c.rooms = Some(vec!["a".to_owned()]);
        let id = v.verify(&v.mint(&c)).unwrap();
        assert_eq!(
            id,
            Identity {
                uid: "u-1".into(),
                name: "u-1 name".into(),
                admin: true,
                rooms: Some(vec!["a".into()]),
                jti: Some("j1".into()),
                expires: c.exp,
            }
        );
        c.name = None;
        assert_eq!(
            v.verify(&v.mint(&c)).unwrap().name,
            "u-1",
            "name defaults to sub"
        );
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let (_, v) = own("refuse");
        let (_, other) = own("refuse-other");
        assert_eq!(v.verify("  "), Err(TokenError::Missing));
        assert!(matches!(
            v.verify("not.a.jwt"),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            v.verify(&v.mint(&claims("u", -(LEEWAY as i64) - 10))),
            Err(TokenError::Expired)
        );
        let mut early = claims("u", 600);
        early.nbf = Some(keyring::now() + 300);
        assert_eq!(v.verify(&v.mint(&early)), Err(TokenError::NotYetValid));
        // Signed by another server's secret: its kid is unknown here.
        assert!(matches!(
            v.verify(&other.mint(&claims("u", 60))),
            Err(TokenError::UnknownKey(_))
        ));
        // The right kid, the wrong secret.
        let good = v.mint(&claims("u", 60));
        let (head, rest) = good.split_once('.').unwrap();
        let body = rest.split_once('.').unwrap().0;
        let forged_sig = other
            .mint(&claims("u", 60))
            .rsplit_once('.')
            .unwrap()
            .1
            .to_owned();
        assert_eq!(
            v.verify(&format!("{head}.{body}.{forged_sig}")),
            Err(TokenError::BadSignature)
        );
        let mut empty = claims(" ", 60);
        empty.name = None;
        assert!(matches!(
            v.verify(&v.mint(&empty)),
            Err(TokenError::BadClaims(_))
        ));
        // No exp: a raw token without it.
        let ring = v.keyring.read().unwrap().clone();
        let secret = ring.signing();
        let header = Header {
            kid: Some(secret.kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        let no_exp = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "u"}),
            &EncodingKey::from_secret(&secret.key).unwrap(),
        )
        .unwrap();
        assert!(
            matches!(v.verify(&no_exp), Err(TokenError::BadClaims(_))),
            "{:?}",
            v.verify(&no_exp)
        );
    }

    #[test]
    fn a_rotation_by_another_process_is_picked_up_and_old_tokens_last_the_grace() {
        let (dir, v) = own("rotate");
        let old = v.mint(&claims("u", 600));
        // `rtchat secret rotate` in another process: the verifier re-reads the file, which
        // changed.
        let rotated = Keyring::rotate(&dir, Duration::from_secs(3600)).unwrap();
        let new = mint(&rotated, &claims("u", 600));
        assert_eq!(v.verify(&new).unwrap().uid, "u");
        assert_eq!(v.verify(&old).unwrap().uid, "u", "within the grace");
        // A rotation with no grace: the old secret no longer verifies.
        let dir2 = temp_dir("rotate-nograce");
        let ring = Keyring::open(&dir2).unwrap();
        let old = mint(&ring, &claims("u", 600));
        let rotated = Keyring::rotate(&dir2, Duration::ZERO).unwrap();
        let v = Verifier::new(rotated, vec![]).unwrap();
        assert!(matches!(v.verify(&old), Err(TokenError::UnknownKey(_))));
    }

    fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        (pair.serialize_pem(), pair.public_key_pem())
    }

    fn sign(private_pem: &str, alg: Algorithm, kid: Option<&str>, c: &Claims) -> String {
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
        };
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(alg)
        };
        jsonwebtoken::encode(&header, c, &key).unwrap()
    }

    #[test]
    fn issuers_public_keys_are_chosen_by_kid_and_removing_one_refuses_its_tokens() {
        let dir = temp_dir("public");
        let (ec_private, ec_public) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (ed_private, ed_public) = keypair(&rcgen::PKCS_ED25519);
        std::fs::write(dir.join("ec.pem"), &ec_public).unwrap();
        std::fs::write(dir.join("ed.pem"), &ed_public).unwrap();
        let ec = PublicKey::load(dir.join("ec.pem").to_str().unwrap()).unwrap();
        assert_eq!((ec.kid.as_str(), ec.algorithm), ("ec", Algorithm::ES256));
        let ed = PublicKey::load(&format!("k2={}", dir.join("ed.pem").display())).unwrap();
        assert_eq!((ed.kid.as_str(), ed.algorithm), ("k2", Algorithm::EdDSA));
        let ring = Keyring::open(&dir).unwrap();
        let both = Verifier::new(ring.clone(), vec![ec.clone(), ed.clone()]).unwrap();
        let by_ec = sign(&ec_private, Algorithm::ES256, Some("ec"), &claims("a", 60));
        let by_ed = sign(&ed_private, Algorithm::EdDSA, Some("k2"), &claims("b", 60));
        assert_eq!(both.verify(&by_ec).unwrap().uid, "a");
        assert_eq!(both.verify(&by_ed).unwrap().uid, "b");
        // The Ed25519 token presented under the EC key's kid: refused.
        let swapped = sign(&ed_private, Algorithm::EdDSA, Some("ec"), &claims("b", 60));
        assert_eq!(both.verify(&swapped), Err(TokenError::BadSignature));
        // An HS256 token signed with the public key's text as its secret (the classic
        // algorithm confusion) under the EC kid: refused.
        let confused = jsonwebtoken::encode(
            &Header {
                kid: Some("ec".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims("evil", 60),
            &EncodingKey::from_secret(ec_public.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(both.verify(&confused), Err(TokenError::BadSignature));
        // No kid with several keys: refused.
        let anonymous = sign(&ec_private, Algorithm::ES256, None, &claims("a", 60));
        assert_eq!(both.verify(&anonymous), Err(TokenError::NoKeyId));
        // Without the EC key its tokens are refused; the other still verifies.
        let one = Verifier::new(ring, vec![ed]).unwrap();
        assert!(matches!(one.verify(&by_ec), Err(TokenError::UnknownKey(_))));
        assert_eq!(one.verify(&by_ed).unwrap().uid, "b");
        // Not a key at all.
        std::fs::write(dir.join("junk.pem"), b"hello").unwrap();
        let err = PublicKey::load(dir.join("junk.pem").to_str().unwrap()).unwrap_err();
        assert!(err.contains("not a PEM public key"), "{err}");
        // The same kid twice.
        let err = Verifier::new(Keyring::open(&dir).unwrap(), vec![ec.clone(), ec])
            .err()
            .unwrap();
        assert!(err.contains("\"ec\""), "{err}");
    }
}
