//! The server's own HS256 secrets: what signs the tokens rtchat mints (logins, `rtchat token`)
//! and verifies them when they come back.
//!
//! Kept in `<data dir>/jwt-secrets.json` (mode 0600), generated on first use: 32 random bytes
//! from the operating system, named by a key id (`kid`) that every token carries in its
//! header. `rtchat secret rotate` adds a new secret, which signs from then on, and gives the
//! older ones a retirement time (now + the grace period): until then the tokens they signed
//! still verify, after it they are refused and the next rotation forgets them. A running
//! server re-reads the file when it changed (see [`super::Verifier`]), so rotating needs no
//! restart.
//!
//! `--jwt-secret-file FILE` replaces all this with one fixed secret (at least 32 bytes; the
//! same file on every node of a cluster): rotation is then replacing the file and restarting.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The file name, in the data directory.
pub const FILE_NAME: &str = "jwt-secrets.json";

/// The shortest secret accepted (HS256's key should be at least as long as its hash).
pub const MIN_SECRET_BYTES: usize = 32;

/// The `kid` of a secret given with `--jwt-secret-file`.
pub const FILE_KID: &str = "secret-file";

/// Why the secrets could not be read, made or written; the text is for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyringError(String);

/// One secret and its key id.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secret {
    /// The key id tokens carry in their header (`kid`).
    pub kid: String,
    /// The secret itself, base64url in the file.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// From when it no longer verifies (Unix seconds); `None` while it is the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.debug_struct("Secret")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    secrets: Vec<Secret>,
}

/// The server's HS256 secrets: the newest signs, every one not yet retired verifies.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Where they were read from: the keyring file (re-read when it changes) or `None`
    /// for `--jwt-secret-file`.
    path: Option<PathBuf>,
    secrets: Vec<Secret>,
}

impl Keyring {
    /// Reads `<data_dir>/jwt-secrets.json`, making it (and the folder) with one new secret if
    /// it does not exist.
    pub fn open(data_dir: &Path) -> Result<Keyring, KeyringError> {
        let path = data_dir.join(FILE_NAME);
        match read(&path)? {
            Some(secrets) => Ok(Keyring {
                path: Some(path),
                secrets,
            }),
            None => {
                let secrets = vec![new_secret(now())?];
                write(&path, &secrets)?;
                tracing::info!(path = %path.display(), "made a new token signing secret");
                Ok(Keyring {
                    path: Some(path),
                    secrets,
                })
            }
        }
    }

    /// A new keyring of one secret, as JSON: what a cluster's first node stores in Redis for
    /// every node ([`Keyring::from_json`]).
    pub fn fresh_json() -> Result<Vec<u8>, KeyringError> {
        let file = File {
            secrets: vec![new_secret(now())?],
        };
        Ok(serde_json::to_vec(&file).expect("secrets serialize"))
    }

    /// The keyring a cluster shares (stored in Redis by its first node).
    pub fn from_json(json: &[u8]) -> Result<Keyring, KeyringError> {
        let file: File = serde_json::from_slice(json)
            .map_err(|e| KeyringError(format!("the shared token secrets cannot be read: {e}")))?;
        if file.secrets.is_empty() {
            return Err(KeyringError(
                "the shared token secrets are empty".to_owned(),
            ));
        }
        Ok(Keyring {
            path: None,
            secrets: file.secrets,
        })
    }

    /// One fixed secret from `--jwt-secret-file` (its bytes, a trailing newline ignored).
    pub fn from_secret_file(path: &Path) -> Result<Keyring, KeyringError> {
        let mut key = std::fs::read(path).map_err(|e| {
            KeyringError(format!(
                "cannot read --jwt-secret-file {}: {e}",
                path.display()
            ))
        })?;
        while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            key.pop();
        }
        if key.len() < MIN_SECRET_BYTES {
            return Err(KeyringError(format!(
                "--jwt-secret-file {} holds {} bytes; a token secret needs at least {MIN_SECRET_BYTES} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
                path.display(),
                key.len()
            )));
        }
        Ok(Keyring {
            path: None,
            secrets: vec![Secret {
                kid: FILE_KID.to_owned(),
                key,
                created: 0,
                retire_at: None,
            }],
        })
    }

    /// Adds a new signing secret to the file in `data_dir` (made if missing) and retires
    /// the others `grace` from now; forgets those already retired. Returns the new keyring.
    pub fn rotate(data_dir: &Path, grace: Duration) -> Result<Keyring, KeyringError> {
        Keyring::rotate_at(data_dir, grace, now())
    }

    fn rotate_at(data_dir: &Path, grace: Duration, now: u64) -> Result<Keyring, KeyringError> {
        let path = data_dir.join(FILE_NAME);
        let mut secrets = read(&path)?.unwrap_or_default();
        secrets.retain(|s| s.retire_at.is_none_or(|t| t > now));
        let retire = now.saturating_add(grace.as_secs());
        for s in &mut secrets {
            s.retire_at = Some(s.retire_at.map_or(retire, |t| t.min(retire)));
        }
        secrets.push(new_secret(now)?);
        write(&path, &secrets)?;
        Ok(Keyring {
            path: Some(path),
            secrets,
        })
    }

    /// Reads the file again (after a rotation by another process); `None` for a fixed
    /// secret, which never changes while the server runs.
    pub fn reload(&self) -> Option<Result<Keyring, KeyringError>> {
        let path = self.path.as_ref()?;
        Some(match read(path) {
            Ok(Some(secrets)) => Ok(Keyring {
                path: Some(path.clone()),
                secrets,
            }),
            Ok(None) => Err(KeyringError(format!("{} disappeared", path.display()))),
            Err(e) => Err(e),
        })
    }

    /// The secret that signs new tokens: the newest.
    pub fn signing(&self) -> &Secret {
        self.secrets
            .iter()
            .max_by_key(|s| (s.retire_at.is_none(), s.created))
            .expect("a keyring always holds a secret")
    }

    /// The secrets that still verify at `now` (Unix seconds).
    pub fn verifying(&self, now: u64) -> impl Iterator<Item = &Secret> {
        self.secrets
            .iter()
            .filter(move |s| s.retire_at.is_none_or(|t| now < t))
    }

    /// Every secret held, retired ones included (for `rtchat secret`'s report).
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// The file the secrets live in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_secret(now: u64) -> Result<Secret, KeyringError> {
    let mut key = vec![0u8; MIN_SECRET_BYTES];
    getrandom::fill(&mut key)
        .map_err(|e| KeyringError(format!("cannot get random bytes for a secret: {e}")))?;
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag)
        .map_err(|e| KeyringError(format!("cannot get random bytes for a key id: {e}")))?;
    let date = time::OffsetDateTime::from_unix_timestamp(now as i64)
        .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default();
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret {
        kid: format!("rtchat-{date}-{tag}"),
        key,
        created: now,
        retire_at: None,
    })
}

fn read(path: &Path) -> Result<Option<Vec<Secret>>, KeyringError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(KeyringError(format!(
                "cannot read the token secrets {}: {e}",
                path.display()
            )))
        }
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        KeyringError(format!(
            "the token secrets file {} is not valid: {e} (move it away to make a new one; tokens it signed stop verifying)",
            path.display()
        ))
    })?;
    if file.secrets.is_empty() {
        return Err(KeyringError(format!(
            "the token secrets file {} holds no secret",
            path.display()
        )));
    }
    if let Some(s) = file.secrets.iter().find(|s| s.key.len() < MIN_SECRET_BYTES) {
        return Err(KeyringError(format!(
            "the token secret {} in {} is shorter than {MIN_SECRET_BYTES} bytes",
            s.kid,
            path.display()
        )));
    }
    Ok(Some(file.secrets))
}

/// Writes the secrets next to `path` with mode 0600 and renames it into place, so a reader
/// never sees half a file.
fn write(path: &Path, secrets: &[Secret]) -> Result<(), KeyringError> {
    let fail = |what: &str, e: std::io::Error| {
        KeyringError(format!(
            "cannot {what} the token secrets {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("make the folder of", e))?;
    }
    let json = serde_json::to_vec_pretty(&File {
        secrets: secrets.to_vec(),
    })
    .expect("secrets serialize");
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| fail("write", e))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))
}

mod b64 {
    use super::{Engine, URL_SAFE_NO_PAD};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rtchat-keyring-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_open_makes_a_private_secret_and_the_next_reads_it() {
        let dir = temp_dir("open");
        let first = Keyring::open(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read the secrets");
        assert_eq!(first.signing().key.len(), MIN_SECRET_BYTES);
        assert!(first.signing().kid.starts_with("rtchat-"));
        let again = Keyring::open(&dir).unwrap();
        assert_eq!(again.signing().kid, first.signing().kid);
        assert_eq!(again.signing().key, first.signing().key);
        assert!(!format!("{:?}", first).contains(&URL_SAFE_NO_PAD.encode(&first.signing().key)));
    }

    #[test]
    fn rotation_signs_with_the_new_secret_and_retires_the_old_after_the_grace() {
        let dir = temp_dir("rotate");
        let old = Keyring::open(&dir).unwrap();
        let t = now();
        let rotated = Keyring::rotate_at(&dir, Duration::from_secs(100), t).unwrap();
        assert_ne!(rotated.signing().kid, old.signing().kid);
        let verifying = |at: u64| -> Vec<String> {
            let mut kids: Vec<String> = rotated.verifying(at).map(|s| s.kid.clone()).collect();
            kids.sort();
            kids
        };
        let mut both = vec![old.signing().kid.clone(), rotated.signing().kid.clone()];
        both.sort();
        assert_eq!(verifying(t + 99), both, "within the grace both verify");
        assert_eq!(
            verifying(t + 100),
            [rotated.signing().kid.clone()],
            "after it only the new one"
        );
        // A second rotation after the grace forgets the retired secret.
        let again = Keyring::rotate_at(&dir, Duration::from_secs(100), t + 200).unwrap();
        assert_eq!(again.secrets().len(), 2);
        assert!(again.secrets().iter().all(|s| s.kid != old.signing().kid));
        // What the file says is what a reload sees.
        let reloaded = old.reload().unwrap().unwrap();
        assert_eq!(reloaded.signing().kid, again.signing().kid);
    }

    #[test]
    fn a_secret_file_must_be_long_enough() {
        let dir = temp_dir("file");
        let short = dir.join("short");
        std::fs::write(&short, b"too short\n").unwrap();
        let err = Keyring::from_secret_file(&short).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        let good = dir.join("good");
        std::fs::write(&good, [b'x'; 40]).unwrap();
        let ring = Keyring::from_secret_file(&good).unwrap();
        assert_eq!(ring.signing().kid, FILE_KID);
        assert!(ring.reload().is_none());
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = temp_dir("damaged");
        std::fs::write(dir.join(FILE_NAME), b"{not json").unwrap();
        let err = Keyring::open(&dir).unwrap_err().to_string();
        assert!(err.contains("is not valid"), "{err}");
    }
}
