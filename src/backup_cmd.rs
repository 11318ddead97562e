//! `rtchat backup FILE` and `rtchat restore FILE`: a consistent copy of the SQLite database
//! taken while a server runs on it, and putting one back while none does. The SQLite part
//! (`VACUUM INTO`, the checks, the server's lock) is rtchat-core's `store::backup`; this is
//! the command line around it.
//!
//! A cluster's store (`--store redis://...`) is not SQLite: its backups are Redis's own
//! (BGSAVE, the AOF file), so these commands refuse it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rtchat_core::store::backup;

use crate::store_arg::{parse_store, StoreArg};

/// Why `rtchat backup` and `rtchat restore` refuse a Redis store.
const REDIS_BACKUPS: &str = "with a Redis store, backups are Redis's own (BGSAVE / the AOF file; see README \"Running a cluster\")";

/// Where the database is, as `rtchat serve` is told.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// Folder of rtchat's files, as given to `rtchat serve` [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The SQLite database, as given to `rtchat serve` [default: <data dir>/rtchat.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,

    /// The store, as given to `rtchat serve` (only `sqlite` has backups of rtchat's own).
    #[arg(long, value_name = "sqlite|memory|redis://HOST:PORT/DB", default_value = "sqlite", value_parser = parse_store)]
    store: StoreArg,
}

impl DbArgs {
    /// Refuses the stores that have no database file.
    fn check(&self) -> Result<(), &'static str> {
        match self.store {
            StoreArg::Sqlite => Ok(()),
            StoreArg::Redis(_) => Err(REDIS_BACKUPS),
            StoreArg::Memory => Err(
                "a memory store keeps nothing on disk: there is no database to back up or restore",
            ),
        }
    }

    fn path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(|| {
            self.data_dir
                .clone()
                .unwrap_or_else(rtchat_server::config::default_data_dir)
                .join("rtchat.db")
        })
    }
}

/// Options of `rtchat backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The backup file to write (its folder must exist).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    #[command(flatten)]
    db: DbArgs,

    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// Options of `rtchat restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file to put back (made by `rtchat backup`).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    #[command(flatten)]
    db: DbArgs,

    /// Replace the database if there is one.
    #[arg(long)]
    force: bool,
}

/// Runs `rtchat backup FILE`: prints what was copied, or why not (exit status 1).
pub fn backup(args: BackupArgs) -> ExitCode {
    if let Err(why) = args.db.check() {
        eprintln!("rtchat backup: {why}");
        return ExitCode::FAILURE;
    }
    let db = args.db.path();
    match backup::backup(&db, &args.file, args.force) {
        Ok(summary) => {
            println!(
                "backed up {} to {}: {summary}",
                db.display(),
                args.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("rtchat backup: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `rtchat restore FILE`: prints what was restored, or why not (exit status 1).
pub fn restore(args: RestoreArgs) -> ExitCode {
    if let Err(why) = args.db.check() {
        eprintln!("rtchat restore: {why}");
        return ExitCode::FAILURE;
    }
    let db = args.db.path();
    match backup::restore(&args.file, &db, args.force) {
        Ok(summary) => {
            println!(
                "restored {} to {}: {summary}; every room has a new epoch, so clients start over from this history",
                args.file.display(),
                db.display()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("rtchat restore: {why}");
            ExitCode::FAILURE
        }
    }
}
