//! `rtchat user`: administering the built-in accounts (`rtchat user grant-admin ID`,
//! `rtchat user revoke-admin ID`) in the SQLite database, also while a server runs on it.
//!
//! A running server holds `<db>.lock` (one server per database), so this command does not open
//! the store as a server does: it opens the database file alone, as a second SQLite
//! connection, which WAL mode lets write next to the server's (waiting up to 5 s for the
//! server's writer). It changes the same row `Directory::set_admin` does; the server reads
//! accounts at each login and refresh, so the change shows from the account's next one.
//!
//! With `--store redis://HOST:PORT/DB` (a cluster's shared store, as `rtchat serve --store`
//! takes it) it changes the account in Redis instead, through the store's own
//! `Directory::set_admin`; every node reads accounts from there at each login and refresh.
//!
//! The `--store` option and the Redis connection are shared with `rtchat token`, `rtchat
//! secret`, `rtchat backup` and `rtchat restore` ([`StoreArg`], [`parse_store`],
//! [`connect_redis`], [`block_on`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use rtchat_core::store::StoreError;
use rtchat_core::Directory;

use crate::store_arg::{block_on, connect_redis, parse_store, redact, with_causes, StoreArg};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// The schema version that made the accounts' table (see rtchat-core's `store/sqlite.rs`).
const ACCOUNTS_SCHEMA: i64 = 5;

/// Options of `rtchat user`.
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    action: UserAction,

    /// Folder of rtchat's files, as given to `rtchat serve` [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,

    /// The SQLite database, as given to `rtchat serve` [default: <data dir>/rtchat.db]
    #[arg(long, value_name = "FILE", global = true)]
    db: Option<PathBuf>,

    /// The store, as given to `rtchat serve`: `sqlite` (the database above), or a cluster's
    /// `redis://HOST:PORT/DB`.
    // An id of its own: a global option's value is also set on the parent command, whose
    // flattened `rtchat serve` options have a `store` of another type.
    #[arg(id = "user_store", long = "store", value_name = "sqlite|redis://HOST:PORT/DB", default_value = "sqlite", value_parser = parse_store, global = true)]
    store: StoreArg,
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Make an account an administrator (its tokens say so from its next login or refresh).
    GrantAdmin(Target),
    /// Take an account's administrator rights away (from its next login or refresh).
    RevokeAdmin(Target),
}

#[derive(Args, Debug)]
struct Target {
    /// The account's user id (`uid`, as /auth/login answers it: u-0123456789abcdef).
    id: String,
}

/// Runs `rtchat user ...`: prints what it did, or why it could not (exit status 1).
pub fn run(args: UserArgs) -> ExitCode {
    match act(&args) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("rtchat user: {why}");
            ExitCode::FAILURE
        }
    }
}

fn act(args: &UserArgs) -> Result<String, String> {
    let (target, admin) = match &args.action {
        UserAction::GrantAdmin(t) => (t, true),
        UserAction::RevokeAdmin(t) => (t, false),
    };
    match &args.store {
        StoreArg::Sqlite => {}
        StoreArg::Memory => {
            return Err(
                "a memory store lives in its server's process: no command can reach its accounts"
                    .to_owned(),
            )
        }
        StoreArg::Redis(url) => {
            if args.db.is_some() {
                return Err(
                    "--db only applies to --store sqlite (a Redis store keeps the accounts)"
                        .to_owned(),
                );
            }
            return block_on(act_redis(url, &target.id, admin))?;
        }
    }
    let path = args.db.clone().unwrap_or_else(|| {
        args.data_dir
            .clone()
            .unwrap_or_else(rtchat_server::config::default_data_dir)
            .join("rtchat.db")
    });
    if !path.is_file() {
        return Err(format!(
            "no database at {} (give the --data-dir or --db rtchat serve uses)",
            path.display()
        ));
    }
    let fail = |e: rusqlite::Error| format!("cannot use the database {}: {e}", path.display());
    // Never create a database: only the server makes and migrates one.
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if version < ACCOUNTS_SCHEMA {
        return Err(format!(
            "the database {} has no accounts yet (schema v{version}): start this rtchat's server on it once",
            path.display()
        ));
    }
    let id = target.id.as_str();
    let found: Option<(String, bool)> = conn
        .query_row(
            "SELECT name, admin FROM accounts WHERE uid = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(fail)?;
    let Some((name, was_admin)) = found else {
        // A name given for an id: say which id it has.
        let by_name: Option<String> = conn
            .query_row(
                "SELECT uid FROM accounts WHERE name = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        let hint = by_name
            .map(|uid| format!(" (the account named {id:?} has the user id {uid})"))
            .unwrap_or_default();
        return Err(format!(
            "no account has the user id {id:?} in {}{hint}",
            path.display()
        ));
    };
    if was_admin == admin {
        return Ok(unchanged(id, &name, admin));
    }
    // What `Directory::set_admin` does on SQLite.
    conn.execute(
        "UPDATE accounts SET admin = ?2 WHERE uid = ?1",
        params![id, admin],
    )
    .map_err(fail)?;
    Ok(changed(id, &name, admin))
}

/// `act` on a cluster's Redis store, through its `Directory`.
async fn act_redis(url: &str, id: &str, admin: bool) -> Result<String, String> {
    let store = connect_redis(url).await?;
    let shown = redact(url);
    let fail = |e: StoreError| format!("cannot use the Redis store {shown}: {}", with_causes(&e));
    let missing = |hint: String| {
        format!("no account has the user id {id:?} in the Redis store {shown}{hint}")
    };
    let Some(account) = store.account(id).await.map_err(fail)? else {
        // A name given for an id: say which id it has.
        let hint = store
            .account_by_name(id)
            .await
            .map_err(fail)?
            .map(|a| format!(" (the account named {id:?} has the user id {})", a.uid))
            .unwrap_or_default();
        return Err(missing(hint));
    };
    if account.admin == admin {
        return Ok(unchanged(id, &account.name, admin));
    }
    if !store.set_admin(id, admin).await.map_err(fail)? {
        // Deleted in between.
        return Err(missing(String::new()));
    }
    Ok(changed(id, &account.name, admin))
}

fn unchanged(id: &str, name: &str, admin: bool) -> String {
    format!(
        "{id} ({name:?}) {} an administrator already: nothing changed",
        if admin { "is" } else { "is not" }
    )
}

fn changed(id: &str, name: &str, admin: bool) -> String {
    if admin {
        format!("{id} ({name:?}) is now an administrator, from its next login or token refresh")
    } else {
        format!(
            "{id} ({name:?}) is no longer an administrator, from its next login or token refresh"
        )
    }
}
