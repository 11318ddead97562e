//! `rtchat token` and `rtchat secret`: tokens from the command line, signed with the server's
//! own HS256 secret (the one `rtchat serve --auth token` verifies), and the secret's rotation.
//!
//! With `--store redis://HOST:PORT/DB` the secrets are a cluster's, shared through Redis
//! (`rtchat:jwt-secrets`): read, or made there if no node made them yet, exactly as `rtchat
//! serve --store redis://...` does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use rtchat_server::auth::token::{mint, Claims};
use rtchat_server::auth::{keyring, Keyring};

use crate::store_arg::{block_on, connect_redis, parse_store, redact, with_causes, StoreArg};

/// Where the server's secrets are: the data directory's keyring, a cluster's shared one
/// (`--store redis://...`) or `--jwt-secret-file`.
#[derive(Args, Debug)]
pub struct SecretSource {
    /// The server's data directory, which holds its token secrets (`jwt-secrets.json`)
    /// [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Sign with the secret in this file, as a server started with the same flag verifies.
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    jwt_secret_file: Option<PathBuf>,

    /// The store, as given to `rtchat serve`: with a cluster's `redis://HOST:PORT/DB`, sign
    /// with the secret the cluster shares there (--jwt-secret-file still wins).
    #[arg(long, value_name = "sqlite|memory|redis://HOST:PORT/DB", value_parser = parse_store)]
    store: Option<StoreArg>,
}

impl SecretSource {
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(rtchat_server::config::default_data_dir)
    }

    fn keyring(&self) -> Result<Keyring, String> {
        match (&self.jwt_secret_file, &self.store) {
            (Some(file), _) => Keyring::from_secret_file(file).map_err(|e| e.to_string()),
            (None, Some(StoreArg::Redis(url))) => block_on(shared_keyring(url))?,
            (None, _) => Keyring::open(&self.data_dir()).map_err(|e| e.to_string()),
        }
    }
}

/// A cluster's keyring, from its Redis store; made there first if no node made it yet (as
/// `rtchat serve --store redis://...` does, so the first of them to run makes it).
async fn shared_keyring(url: &str) -> Result<Keyring, String> {
    let store = connect_redis(url).await?;
    let fresh = Keyring::fresh_json().map_err(|e| e.to_string())?;
    let json = store
        .get_or_init("jwt-secrets", &fresh)
        .await
        .map_err(|e| {
            format!(
                "cannot read the shared token secret from {}: {}",
                redact(url),
                with_causes(&e)
            )
        })?;
    Keyring::from_json(&json).map_err(|e| e.to_string())
}

/// `rtchat token --user ID ...`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long, value_name = "ID")]
    user: String,

    /// The display name messages carry [default: the user id]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// How long the token is valid (e.g. 15min, 1h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,

    /// An administrator's token (`admin: true`).
    #[arg(long)]
    admin: bool,

    /// Restrict the token to these rooms (comma-separated; the `rooms` claim).
    #[arg(long, value_name = "ROOM,...", value_delimiter = ',')]
    rooms: Option<Vec<String>>,

    #[command(flatten)]
    secrets: SecretSource,
}

/// `rtchat secret ...`.
#[derive(Args, Debug)]
pub struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Subcommand, Debug)]
enum SecretCommand {
    /// Make a new signing secret (a new `kid`); tokens signed with the older ones keep
    /// verifying for --grace. A running server picks it up by itself.
    Rotate {
        /// How long tokens signed with the older secrets stay valid.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,

        /// The server's data directory [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,

        /// The store, as given to `rtchat serve` (a cluster's `redis://HOST:PORT/DB` is
        /// refused: its shared secret cannot be rotated yet).
        #[arg(long, value_name = "sqlite|memory|redis://HOST:PORT/DB", value_parser = parse_store)]
        store: Option<StoreArg>,
    },
    /// List the secrets' key ids, when each was made and until when it verifies.
    List {
        /// The server's data directory [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,

        /// The store, as given to `rtchat serve`: with a cluster's `redis://HOST:PORT/DB`,
        /// list the secrets it shares there.
        #[arg(long, value_name = "sqlite|memory|redis://HOST:PORT/DB", value_parser = parse_store)]
        store: Option<StoreArg>,
    },
}

/// Prints a token for `--user` on stdout.
pub fn token(args: TokenArgs) -> ExitCode {
    let keyring = match args.secrets.keyring() {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    if args.user.trim().is_empty() {
        return fail("--user must not be empty");
    }
    let now = keyring::now();
    let claims = Claims {
        sub: args.user,
        name: args.name,
        exp: now.saturating_add(args.ttl.as_secs().max(1)),
        nbf: None,
        iat: Some(now),
        jti: Some(random_id()),
        rooms: args.rooms,
        admin: args.admin,
    };
    println!("{}", mint(&keyring, &claims));
    ExitCode::SUCCESS
}

/// `rtchat secret rotate|list`.
pub fn secret(args: SecretArgs) -> ExitCode {
    let (ring, rotated) = match &args.command {
        SecretCommand::Rotate {
            store: Some(StoreArg::Redis(_)),
            ..
        } => {
            return fail(
                "with a Redis store, rotation of the shared secret is not supported yet; use --jwt-secret-file on every node to rotate by hand",
            )
        }
        SecretCommand::Rotate {
            grace, data_dir, ..
        } => {
            let dir = data_dir
                .clone()
                .unwrap_or_else(rtchat_server::config::default_data_dir);
            (Keyring::rotate(&dir, *grace).map_err(|e| e.to_string()), true)
        }
        SecretCommand::List {
            store: Some(StoreArg::Redis(url)),
            ..
        } => (block_on(shared_keyring(url)).and_then(|r| r), false),
        SecretCommand::List { data_dir, .. } => {
            let dir = data_dir
                .clone()
                .unwrap_or_else(rtchat_server::config::default_data_dir);
            (Keyring::open(&dir).map_err(|e| e.to_string()), false)
        }
    };
    let ring = match ring {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if rotated {
        println!(
            "new signing key {} in {}",
            ring.signing().kid,
            ring.path()
                .map_or_else(String::new, |p| p.display().to_string())
        );
    }
    for s in ring.secrets() {
        let until = s
            .retire_at
            .map_or_else(|| "no end".to_owned(), |t| format!("until {}", utc(t)));
        let signing = if s.kid == ring.signing().kid {
            " (signs new tokens)"
        } else {
            ""
        };
        println!(
            "{}  made {}  verifies {until}{signing}",
            s.kid,
            utc(s.created)
        );
    }
    ExitCode::SUCCESS
}

fn utc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A token id (`jti`): 16 random hex digits, so the token can be revoked.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness a fixed id would make every token revocable together: refuse.
    getrandom::fill(&mut bytes).expect("the system's random number generator works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fail(e: &str) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
