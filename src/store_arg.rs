//! `--store` for every command: the values `rtchat serve --store` takes, and reaching a
//! cluster's Redis store from the commands that run beside a server (`rtchat user`, `token`,
//! `secret`, `backup`).

use std::future::Future;

use rtchat_core::{RedisStore, StoreError};

/// `--store`, with the values `rtchat serve --store` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreArg {
    Sqlite,
    Memory,
    /// A Redis URL (a cluster's shared store).
    Redis(String),
}

/// Parses `--store` as `rtchat serve` does.
pub(crate) fn parse_store(s: &str) -> Result<StoreArg, String> {
    match s {
        "sqlite" => Ok(StoreArg::Sqlite),
        "memory" => Ok(StoreArg::Memory),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Ok(StoreArg::Redis(url.to_owned()))
        }
        _ => Err("expected sqlite, memory or redis://HOST:PORT/DB".to_owned()),
    }
}

/// Runs `future` on a runtime of its own (the commands other than `serve` have none).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}

/// Connects to a cluster's Redis store, or says why not (the store's error and its causes).
pub(crate) async fn connect_redis(url: &str) -> Result<RedisStore, String> {
    RedisStore::connect(url, 100_000).await.map_err(|e| {
        format!(
            "cannot reach the Redis store {}: {} (is Redis running? give the --store rtchat serve uses)",
            redact(url),
            with_causes(&e)
        )
    })
}

/// A store error and its causes, on one line.
pub(crate) fn with_causes(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// A Redis URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    RedisStore::redact_url(url)
}
