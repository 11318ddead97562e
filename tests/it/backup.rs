//! `rtchat backup` and `rtchat restore` against real servers: a backup taken under load holds
//! every post acknowledged before it began, and restores into a server that serves them with
//! their ids; restore refuses while a server runs, over a database without `--force`, and
//! files that are not backups; a failed backup leaves nothing behind.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client, get_json, ids, post, rtchat, temp_dir, Server};
use serde_json::Value;

/// Every message of `general` after `since`, oldest first, read by paging `GET /poll?since=`.
async fn all_after(server: &Server, mut since: u64) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let body = get_json(server, &format!("/poll?since={since}&timeout=0")).await;
        let mut page: Vec<Value> = body["msg"].as_array().unwrap().clone();
        page.reverse();
        out.extend(page);
        since = body["last"].as_u64().unwrap();
        if body.get("more").is_none() {
            return out;
        }
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `rtchat ARGS...` to its end, off the async runtime (posters go on meanwhile).
async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rtchat(&args, &[]).output().unwrap()
    })
    .await
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit status 1 with a message containing every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {} stderr {err}",
        stdout(out)
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The number in "... N messages ..." of a backup's or restore's report.
fn messages_in(report: &str) -> u64 {
    let words: Vec<&str> = report.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "messages")
        .unwrap_or_else(|| panic!("no message count in {report:?}"));
    words[at - 1].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_message_acknowledged_before_it() {
    let dir = temp_dir("backup-live");
    let server = Arc::new(Server::start(&["--data-dir", s(&dir), "--post-rate", "0"]));
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    // Bounded: the posters stop at the end of the backup, or after 1,200 posts in all.
    const CAP: usize = 1200;
    let mut posters = Vec::new();
    for p in 0..4 {
        let (server, acked, stop, count_tx) = (
            server.clone(),
            acked.clone(),
            stop.clone(),
            count_tx.clone(),
        );
        posters.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) || acked.lock().unwrap().len() >= CAP {
                    return;
                }
                let text = format!("load {p}-{i}");
                let res = http
                    .post(server.url("/poll"))
                    .json(&serde_json::json!({"user": format!("p{p}"), "text": text}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
                let mut acked = acked.lock().unwrap();
                acked.push((id, text));
                count_tx.send_replace(acked.len());
            }
        }));
    }
    count_rx.wait_for(|n| *n >= 300).await.unwrap();

    let files = temp_dir("backup-live-file");
    let file = files.join("chat.backup");
    // Everything acknowledged so far was committed before the backup command started.
    let before: Vec<(u64, String)> = acked.lock().unwrap().clone();
    let out = run(&["backup", s(&file), "--data-dir", s(&dir)]).await;
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::SeqCst);
    for poster in posters {
        poster.await.unwrap();
    }
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("schema v"), "{report}");
    let in_backup = messages_in(&report);
    assert_eq!(
        names_in(&files),
        ["chat.backup"],
        "no temporary file is left"
    );
    let acked: Vec<(u64, String)> = acked.lock().unwrap().clone();
    eprintln!(
        "{} posts acknowledged before the backup, {during} during it, {} in it",
        before.len(),
        in_backup
    );

    let fresh = temp_dir("backup-live-fresh");
    let out = run(&["restore", s(&file), "--data-dir", s(&fresh)]).await;
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    assert_eq!(messages_in(&stdout(&out)), in_backup);
    let restored = Server::start(&["--data-dir", s(&fresh)]);
    let got = all_after(&restored, 0).await;
    let got_ids: Vec<u64> = got.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    // One snapshot of one writer's commits: ids 1..=N, nothing missing in between.
    assert_eq!(got_ids, (1..=in_backup).collect::<Vec<_>>());
    let text_of = |id: u64| got[id as usize - 1]["text"].as_str().unwrap().to_owned();
    for (id, text) in &before {
        assert!(
            *id <= in_backup,
            "message {id} was acknowledged before the backup began, but the backup ends at {in_backup}"
        );
        assert_eq!(&text_of(*id), text, "message {id}");
    }
    // Any later post that made it into the copy is there as it was acknowledged.
    for (id, text) in acked.iter().filter(|(id, _)| *id <= in_backup) {
        assert_eq!(&text_of(*id), text, "message {id}");
    }
}

#[tokio::test]
async fn restore_and_backup_refuse_what_they_must_and_leave_nothing_behind() {
    let dir = temp_dir("backup-refusals");
    let mut server = Server::start(&["--data-dir", s(&dir)]);
    for i in 1..=3 {
        assert_eq!(post(&server, "ann", &format!("m{i}")).await.status(), 200);
    }
    let epoch = get_json(&server, "/poll").await["epoch"].clone();
    let files = temp_dir("backup-refusals-files");
    let file = files.join("one.db");
    let out = run(&["backup", s(&file), "--data-dir", s(&dir)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(messages_in(&stdout(&out)), 3);
    let bytes = std::fs::read(&file).unwrap();

    // backup: FILE exists.
    let out = run(&["backup", s(&file), "--data-dir", s(&dir)]).await;
    assert_refused(&out, &["already exists", "--force", s(&file)]);
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "FILE untouched");
    assert_eq!(names_in(&files), ["one.db"]);
    // backup: FILE's folder missing.
    let missing = files.join("missing").join("x.db");
    let out = run(&["backup", s(&missing), "--data-dir", s(&dir)]).await;
    assert_refused(&out, &["does not exist", s(&files.join("missing"))]);
    // backup: no database there.
    let empty = temp_dir("backup-refusals-empty");
    let out = run(&["backup", s(&files.join("two.db")), "--data-dir", s(&empty)]).await;
    assert_refused(&out, &["no database at", s(&empty.join("rtchat.db"))]);
    assert_eq!(names_in(&files), ["one.db"]);
    // backup: fails after the copy was made (FILE is a folder that cannot be replaced): the
    // temporary copy is removed.
    let folder = files.join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("keep"), "x").unwrap();
    let out = run(&["backup", s(&folder), "--data-dir", s(&dir), "--force"]).await;
    assert_refused(&out, &["cannot put the backup in place", s(&folder)]);
    assert_eq!(names_in(&files), ["folder", "one.db"], "no temporary file");

    // restore: a server runs on the database.
    let out = run(&["restore", s(&file), "--data-dir", s(&dir), "--force"]).await;
    assert_refused(
        &out,
        &["a server is running", "stop it", &server.pid().to_string()],
    );
    let res = post(&server, "ann", "m4").await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["id"],
        4,
        "the server went on"
    );
    server.terminate(Duration::from_secs(5)).expect("stops");

    // restore: a database is there.
    let out = run(&["restore", s(&file), "--data-dir", s(&dir)]).await;
    assert_refused(&out, &["already a database", "--force"]);
    // restore: not backups.
    let text = files.join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, but it is long enough to look at ".repeat(20),
    )
    .unwrap();
    let out = run(&["restore", s(&text), "--data-dir", s(&dir), "--force"]).await;
    assert_refused(&out, &["is not an rtchat backup", s(&text)]);
    let other = files.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let out = run(&["restore", s(&other), "--data-dir", s(&dir), "--force"]).await;
    assert_refused(&out, &["is not an rtchat backup", "no rtchat schema"]);
    let out = run(&["restore", s(&files.join("nope.db")), "--data-dir", s(&dir)]).await;
    assert_refused(&out, &["no backup file at"]);
    // restore: fails after the copy was made (the target is a folder): nothing left behind.
    let target: PathBuf = empty.join("db");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), "x").unwrap();
    let out = run(&["restore", s(&file), "--db", s(&target), "--force"]).await;
    assert_refused(&out, &["cannot put the backup in place"]);
    assert_eq!(names_in(&empty), ["db", "db.lock"], "no temporary file");

    // restore --force: the backup's three messages, the fourth gone, a new epoch.
    let out = run(&["restore", s(&file), "--data-dir", s(&dir), "--force"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(messages_in(&stdout(&out)), 3);
    let server = Server::start(&["--data-dir", s(&dir)]);
    let body = get_json(&server, "/poll").await;
    assert_eq!(ids(&body), [3, 2, 1]);
    assert_ne!(body["epoch"], epoch, "a restored history is a new epoch");
    let res = post(&server, "bob", "after").await;
    assert_eq!(res.json::<Value>().await.unwrap()["id"], 4);
}
