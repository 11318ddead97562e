//! `rtchat admin`: the admin API of a running server (`--auth token`) from the command line —
//! ban, unban, kick, mute, unmute, revoke, delete a user, and the lists and audit log. Each
//! action is one HTTP request with an admin's token (`--token` or `$RTCHAT_TOKEN`, e.g. from
//! `rtchat token --user root --admin`); the server's JSON answer is printed, and a refusal
//! exits 1 with the server's words.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Options of `rtchat admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    action: AdminAction,

    /// The server, e.g. http://127.0.0.1:8080 or https://chat.example.com.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,

    /// An administrator's token (`admin: true`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RTCHAT_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,

    /// Accept any HTTPS certificate (development only).
    #[arg(long, global = true)]
    insecure: bool,
}

/// How long a ban, mute or revocation lasts (neither: until lifted).
#[derive(Args, Debug)]
struct Lasting {
    /// For this long, e.g. 90s, 2h, 7d.
    #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
    lasting: Option<String>,
    /// Until this moment (Unix seconds).
    #[arg(long, value_name = "UNIX_SECONDS")]
    until: Option<u64>,
    /// Why (shown to the user and kept in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AdminAction {
    /// Ban a user: refused everywhere, every live connection closed (4003).
    Ban {
        uid: String,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Lift a user's ban.
    Unban { uid: String },
    /// Close every live connection of a user now (4004); they may come back.
    Kick {
        uid: String,
        /// Why (kept in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Mute a user in a room: they may read it, not post in it.
    Mute {
        room: String,
        uid: String,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Lift a mute.
    Unmute { room: String, uid: String },
    /// Revoke a token by its id (`jti`): refused from now on, its connections closed (4005).
    Revoke {
        jti: String,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Delete a user: banned for good (every live connection closed, 4003), account and
    /// room memberships removed, their messages tombstoned or kept as "deleted user".
    DeleteUser {
        uid: String,
        /// What becomes of their messages: delete (tombstoned) or keep (shown under
        /// "deleted user").
        #[arg(long, value_name = "delete|keep", value_parser = ["delete", "keep"])]
        messages: String,
    },
    /// The bans in force.
    Bans,
    /// The mutes in force.
    Mutes,
    /// The newest entries of the audit log.
    Audit {
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn sanction(lasting: &Lasting) -> Value {
    let mut body = json!({});
    if let Some(reason) = &lasting.reason {
        body["reason"] = json!(reason);
    }
    if let Some(d) = &lasting.lasting {
        body["for"] = json!(d);
    }
    if let Some(t) = lasting.until {
        body["until"] = json!(t);
    }
    body
}

/// A path segment, percent-encoded (user ids may hold any character).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one admin action; exits 0 when the server took it.
pub fn run(args: AdminArgs) -> ExitCode {
    let Some(token) = args.token.filter(|t| !t.trim().is_empty()) else {
        eprintln!("error: rtchat admin needs an administrator's token: --token or RTCHAT_TOKEN (e.g. from `rtchat token --user root --admin`)");
        return ExitCode::FAILURE;
    };
    let (method, path, body) = match &args.action {
        AdminAction::Ban { uid, lasting } => (
            "POST",
            format!("/admin/users/{}/ban", segment(uid)),
            Some(sanction(lasting)),
        ),
        AdminAction::Unban { uid } => {
            ("DELETE", format!("/admin/users/{}/ban", segment(uid)), None)
        }
        AdminAction::Kick { uid, reason } => (
            "POST",
            format!("/admin/users/{}/kick", segment(uid)),
            Some(
                reason
                    .as_ref()
                    .map_or_else(|| json!({}), |r| json!({ "reason": r })),
            ),
        ),
        AdminAction::Mute { room, uid, lasting } => (
            "POST",
            format!("/admin/rooms/{}/mutes/{}", segment(room), segment(uid)),
            Some(sanction(lasting)),
        ),
        AdminAction::Unmute { room, uid } => (
            "DELETE",
            format!("/admin/rooms/{}/mutes/{}", segment(room), segment(uid)),
            None,
        ),
        AdminAction::Revoke { jti, lasting } => (
            "POST",
            format!("/admin/tokens/{}/revoke", segment(jti)),
            Some(sanction(lasting)),
        ),
        AdminAction::DeleteUser { uid, messages } => (
            "DELETE",
            format!(
                "/admin/users/{}?messages={}",
                segment(uid),
                segment(messages)
            ),
            None,
        ),
        AdminAction::Bans => ("GET", "/admin/bans".to_owned(), None),
        AdminAction::Mutes => ("GET", "/admin/mutes".to_owned(), None),
        AdminAction::Audit { limit } => ("GET", format!("/admin/audit?limit={limit}"), None),
    };
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(args.insecure)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut req = match method {
            "GET" => http.get(&url),
            "DELETE" => http.delete(&url),
            _ => http.post(&url),
        };
        if let Some(body) = &body {
            req = req.json(body);
        }
        let res = req.bearer_auth(token.trim()).send().await?;
        let status = res.status();
        let text = res.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    });
    match result {
        Ok((status, text)) if status.is_success() => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            let said = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            eprintln!("error: {method} {path}: {status}: {said}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {method} {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
