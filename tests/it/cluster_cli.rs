//! The command-line tools against a cluster's shared store (`--store redis://HOST:PORT/DB`):
//! `rtchat user grant-admin`, `rtchat token`, `rtchat secret`, and `rtchat backup` /
//! `rtchat restore` refusing it. A real `redis-server` (scripts/setup installs it) and real
//! rtchat processes.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{client, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// A `redis-server` of the test's own: a free port, its own folder, no persistence; killed
/// when dropped.
struct Redis {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Redis {
    /// Starts one and returns once it accepts connections.
    fn start() -> Redis {
        let port = free_port();
        let dir = common::temp_dir("redis-cli");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (scripts/setup installs it)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ready = false;
        for line in out.by_ref() {
            if line
                .expect("redis-server's output")
                .contains("Ready to accept connections")
            {
                ready = true;
                break;
            }
        }
        assert!(ready, "redis-server exited before it was ready");
        // Its later log lines are drained, so it never blocks on a full pipe.
        std::thread::spawn(move || out.for_each(drop));
        Redis { child, dir, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node of a cluster on `redis`, with accounts and tokens.
fn node(redis: &Redis) -> Server {
    let url = redis.url();
    Server::start(&["--no-tls", "--store", &url, "--auth", "token"])
}

/// Runs `rtchat ARGS...`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = common::rtchat(args, &[]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `POST /auth/{what}` (`signup`, `login`): the answer's status and body.
async fn account(server: &Server, what: &str, user: &str) -> (u16, Value) {
    let res = client()
        .post(server.url(&format!("/auth/{what}")))
        .json(&json!({ "user": user, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// `GET path` with `token` as Bearer: the answer's status.
async fn get_with(server: &Server, path: &str, token: &str) -> u16 {
    client()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn user_grant_admin_changes_the_account_in_redis() {
    let redis = Redis::start();
    let url = redis.url();
    let server = node(&redis);
    let (status, made) = account(&server, "signup", "kim").await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["admin"], false, "{made}");
    let uid = made["uid"].as_str().unwrap().to_owned();
    let token = made["token"].as_str().unwrap();
    assert_eq!(get_with(&server, "/admin/bans", token).await, 403);

    let (code, out, err) = run(&["user", "grant-admin", &uid, "--store", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&uid) && out.contains("is now an administrator"),
        "{out}"
    );
    let (status, body) = account(&server, "login", "kim").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["admin"], true, "{body}");
    let admin_token = body["token"].as_str().unwrap();
    assert_eq!(get_with(&server, "/admin/bans", admin_token).await, 200);

    // Again: nothing to change. `--store` before the action works too.
    let (code, out, _) = run(&["user", "--store", &url, "grant-admin", &uid]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");

    let (code, out, err) = run(&["user", "revoke-admin", &uid, "--store", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no longer an administrator"), "{out}");
    let (_, body) = account(&server, "login", "kim").await;
    assert_eq!(body["admin"], false, "{body}");

    // An unknown id: exit 1 and why; a name given for an id: which id it has.
    let (code, out, err) = run(&["user", "grant-admin", "u-0000000000000000", "--store", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no account has the user id \"u-0000000000000000\""),
        "{err}"
    );
    let (code, _, err) = run(&["user", "grant-admin", "kim", "--store", &url]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("has the user id {uid}")), "{err}");
}

#[test]
fn user_says_when_redis_is_unreachable() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let (code, out, err) = run(&["user", "grant-admin", "u-0000000000000000", "--store", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("rtchat user: cannot reach the Redis store") && err.contains(&url),
        "{err}"
    );
    // A memory store cannot be reached from outside its server.
    let (code, _, err) = run(&["user", "grant-admin", "u-1", "--store", "memory"]);
    assert_eq!(code, 1);
    assert!(err.contains("memory store"), "{err}");
    // So does `rtchat token`.
    let (code, out, err) = run(&["token", "--user", "u1", "--store", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot reach the Redis store"), "{err}");
    assert!(out.is_empty(), "{out}");
}

#[tokio::test]
async fn token_signs_with_the_secret_the_cluster_shares() {
    let redis = Redis::start();
    let url = redis.url();
    // The token first: it makes the shared secret, which the node then reads.
    let (code, first, err) = run(&["token", "--user", "u1", "--store", &url]);
    assert_eq!(code, 0, "{err}");
    let first = first.trim().to_owned();
    assert_eq!(first.split('.').count(), 3, "{first}");

    let server = node(&redis);
    assert_eq!(get_with(&server, "/me/rooms", &first).await, 200);
    // One minted once the node runs, as an admin.
    let (code, admin, err) = run(&["token", "--user", "u2", "--admin", "--store", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(get_with(&server, "/me/rooms", admin.trim()).await, 200);
    assert_eq!(get_with(&server, "/admin/bans", admin.trim()).await, 200);

    // A data directory's own secret is not the cluster's.
    let dir = common::temp_dir("token-cli");
    let (code, other, err) = run(&["token", "--user", "u1", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(get_with(&server, "/me/rooms", other.trim()).await, 401);
    // --jwt-secret-file wins over --store.
    let file = dir.join("secret");
    std::fs::write(
        &file,
        "a secret of at least thirty-two bytes, for the test\n",
    )
    .unwrap();
    let (code, filed, err) = run(&[
        "token",
        "--user",
        "u1",
        "--store",
        &url,
        "--jwt-secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(get_with(&server, "/me/rooms", filed.trim()).await, 401);

    // `rtchat secret list` shows the shared secret; `rotate` refuses.
    let (code, listed, err) = run(&["secret", "list", "--store", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("(signs new tokens)"), "{listed}");
    let (code, out, err) = run(&["secret", "rotate", "--store", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("rotation of the shared secret is not supported yet; use --jwt-secret-file on every node to rotate by hand"),
        "{err}"
    );
}

#[test]
fn backup_and_restore_refuse_a_redis_store() {
    let dir = common::temp_dir("backup-cli");
    let file = dir.join("x.db");
    // No Redis needed: the refusal comes first.
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    for cmd in ["backup", "restore"] {
        let (code, out, err) = run(&[cmd, file.to_str().unwrap(), "--store", &url]);
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(
            err.contains(
                "with a Redis store, backups are Redis's own (BGSAVE / the AOF file; see README \"Running a cluster\")"
            ),
            "{cmd}: {err}"
        );
        assert!(!file.exists(), "{cmd}");
    }
}
