//! One set of expectations every [`Directory`] must meet, run against each store.

use std::sync::Arc;
use std::time::Duration;

use super::{Account, AuditEntry, Ban, Directory, DirectoryError, Mute, RoomAccess};
use crate::message::NewPost;
use crate::store::Append;

fn account(uid: &str, name: &str) -> Account {
    Account {
        uid: uid.to_owned(),
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt-of-{uid}$hash"),
        admin: false,
        created: 1_000,
    }
}

/// Accounts, revocations, room owners, privacy and members.
pub async fn exercise(d: &dyn Directory) {
    // Accounts: unique names and ids; found by either.
    d.create_account(account("u1", "ann")).await.unwrap();
    d.create_account(account("u2", "bob")).await.unwrap();
    assert!(matches!(
        d.create_account(account("u3", "ann")).await,
        Err(DirectoryError::NameTaken(n)) if n == "ann"
    ));
    assert!(matches!(
        d.create_account(account("u1", "cy")).await,
        Err(DirectoryError::UidTaken(u)) if u == "u1"
    ));
    assert_eq!(d.account("u1").await.unwrap(), Some(account("u1", "ann")));
    assert_eq!(d.account_by_name("bob").await.unwrap().unwrap().uid, "u2");
    assert_eq!(
        d.account_by_name("Bob").await.unwrap(),
        None,
        "names compare exactly"
    );
    assert_eq!(d.account("nobody").await.unwrap(), None);
    assert!(d.set_admin("u2", true).await.unwrap());
    assert!(d.account("u2").await.unwrap().unwrap().admin);
    assert!(!d.set_admin("nobody", true).await.unwrap());

    // Revocations last until the token would have expired anyway.
    d.revoke("j1", 100).await.unwrap();
    d.revoke("j2", 200).await.unwrap();
    d.revoke("j1", 50).await.unwrap(); // never shortened
    assert_eq!(
        d.revoked(10).await.unwrap(),
        [("j1".to_owned(), 100), ("j2".to_owned(), 200)]
    );
    assert_eq!(d.revoked(100).await.unwrap(), [("j2".to_owned(), 200)]);

    // Rooms: public and ownerless until someone claims or configures them.
    assert_eq!(d.room_access("a").await.unwrap(), RoomAccess::default());
    assert_eq!(d.claim_room("a", "u1").await.unwrap(), "u1");
    assert_eq!(
        d.claim_room("a", "u2").await.unwrap(),
        "u1",
        "the first owner stays"
    );
    d.set_private("a", true).await.unwrap();
    assert_eq!(
        d.room_access("a").await.unwrap(),
        RoomAccess {
            owner: Some("u1".into()),
            private: true
        }
    );
    d.set_private("b", true).await.unwrap();
    assert_eq!(
        d.room_access("b").await.unwrap(),
        RoomAccess {
            owner: None,
            private: true
        }
    );
    assert_eq!(d.claim_room("b", "u2").await.unwrap(), "u2");
    assert!(
        d.room_access("b").await.unwrap().private,
        "claiming keeps privacy"
    );

    // Members.
    assert!(d.add_member("a", "u2").await.unwrap());
    assert!(d.add_member("a", "u1").await.unwrap());
    assert!(!d.add_member("a", "u1").await.unwrap(), "already a member");
    assert!(d.add_member("b", "u1").await.unwrap());
    assert_eq!(d.members("a").await.unwrap(), ["u1", "u2"]);
    assert_eq!(d.rooms_of("u1").await.unwrap(), ["a", "b"]);
    assert!(d.is_member("a", "u2").await.unwrap());
    assert!(d.remove_member("a", "u2").await.unwrap());
    assert!(!d.remove_member("a", "u2").await.unwrap());
    assert!(!d.is_member("a", "u2").await.unwrap());
    assert_eq!(d.members("nowhere").await.unwrap(), Vec::<String>::new());

    // The private rooms, with their members (a private room without any too).
    d.set_private("c", true).await.unwrap();
    d.add_member("public", "u1").await.unwrap();
    let private = d.private_rooms().await.unwrap();
    let shown: Vec<(&str, Option<&str>, Vec<&str>)> = private
        .iter()
        .map(|p| {
            let members = p.members.iter().map(String::as_str).collect();
            (p.room.as_str(), p.owner.as_deref(), members)
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("a", Some("u1"), vec!["u1"]),
            ("b", Some("u2"), vec!["u1"]),
            ("c", None, vec![]),
        ]
    );
    d.remove_member("public", "u1").await.unwrap();

    // Bans: timed ones end, a second ban replaces the first, unban lifts.
    let ban = |uid: &str, until: Option<u64>| Ban {
        uid: uid.into(),
        until,
        reason: format!("spam by {uid}"),
        by: "root".into(),
    };
    d.ban(ban("u3", Some(150))).await.unwrap();
    d.ban(ban("u4", Some(150))).await.unwrap();
    d.ban(ban("u4", None)).await.unwrap();
    d.ban(ban("u5", None)).await.unwrap();
    assert_eq!(
        d.bans(100).await.unwrap(),
        [ban("u3", Some(150)), ban("u4", None), ban("u5", None)]
    );
    assert_eq!(
        d.bans(200).await.unwrap(),
        [ban("u4", None), ban("u5", None)]
    );
    assert!(d.unban("u5").await.unwrap());
    assert!(!d.unban("u5").await.unwrap());

    // Mutes, per room.
    let mute = |room: &str, uid: &str, until: Option<u64>| Mute {
        room: room.into(),
        uid: uid.into(),
        until,
        reason: "calm down".into(),
        by: "root".into(),
    };
    d.mute(mute("a", "u2", None)).await.unwrap();
    d.mute(mute("b", "u2", Some(150))).await.unwrap();
    assert_eq!(
        d.mutes(100).await.unwrap(),
        [mute("a", "u2", None), mute("b", "u2", Some(150))]
    );
    assert_eq!(d.mutes(200).await.unwrap(), [mute("a", "u2", None)]);
    assert!(d.unmute("a", "u2").await.unwrap());
    assert!(!d.unmute("a", "u2").await.unwrap());
    d.mute(mute("a", "u3", None)).await.unwrap();

    // The audit log: ids increase, newest first.
    let entry = |action: &str| AuditEntry {
        id: 0,
        at: 1_000,
        actor: "root".into(),
        action: action.into(),
        target: "u4".into(),
        room: None,
        reason: Some("why".into()),
    };
    let first = d.record(entry("ban")).await.unwrap();
    let second = d.record(entry("kick")).await.unwrap();
    assert!(second > first);
    let log = d.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].id, log[0].action.as_str()), (second, "kick"));
    assert_eq!(log[1].target, "u4");
    assert_eq!(d.audit_log(1).await.unwrap().len(), 1);

    deleting_a_user(d).await;
}

/// An admin deleting a user: the account and memberships go, the name is free again; the
/// user's messages are found by `uid`, tombstoned or shown under another name.
async fn deleting_a_user(d: &dyn Directory) {
    d.create_account(account("u7", "dee")).await.unwrap();
    d.add_member("a", "u7").await.unwrap();
    d.add_member("z", "u7").await.unwrap();
    d.add_member("z", "u8").await.unwrap();
    let dm = "dm:0123456789abcdef";
    d.add_member(dm, "u7").await.unwrap();
    d.add_member(dm, "u8").await.unwrap();
    assert!(d.delete_account("u7").await.unwrap());
    assert!(!d.delete_account("u7").await.unwrap(), "already gone");
    assert_eq!(d.account("u7").await.unwrap(), None);
    assert_eq!(d.account_by_name("dee").await.unwrap(), None);
    assert_eq!(d.remove_memberships("u7").await.unwrap(), 2);
    assert_eq!(d.remove_memberships("u7").await.unwrap(), 0);
    assert_eq!(
        d.rooms_of("u7").await.unwrap(),
        [dm],
        "a direct message keeps its two users"
    );
    assert_eq!(d.members("z").await.unwrap(), ["u8"], "others stay");
    assert_eq!(d.members("a").await.unwrap(), ["u1"]);
    d.create_account(account("u9", "dee"))
        .await
        .expect("the name is free again");
    assert_eq!(d.account_by_name("dee").await.unwrap().unwrap().uid, "u9");

    // Messages, by uid (not by name: u8 posts under the same name).
    let by = |channel: &str, user: &str, uid: &str, text: &str| Append {
        channel: Arc::from(channel),
        post: NewPost {
            user: user.into(),
            text: text.into(),
            key: None,
            uid: Some(uid.into()),
        },
    };
    let window = Duration::from_secs(120);
    d.append(
        &[
            by("x", "dee", "u7", "one"),
            by("y", "dee", "u7", "two"),
            by("x", "dee", "u8", "not mine"),
            by("x", "dee", "u7", "three"),
            by("y", "dee", "u7", "four"),
        ],
        5_000,
        window,
    )
    .await
    .unwrap();
    assert_eq!(
        d.messages_of("u7").await.unwrap(),
        [
            ("x".to_owned(), 1),
            ("x".to_owned(), 3),
            ("y".to_owned(), 1),
            ("y".to_owned(), 2)
        ]
    );
    assert!(d.delete("x", 1).await.unwrap());
    assert_eq!(
        d.messages_of("u7").await.unwrap().len(),
        3,
        "tombstones left out"
    );
    assert_eq!(d.messages_of("nobody").await.unwrap(), []);
    assert_eq!(d.anonymize("u7", "deleted user").await.unwrap(), 3);
    assert_eq!(d.messages_of("u7").await.unwrap(), []);
    assert_eq!(d.anonymize("u7", "deleted user").await.unwrap(), 0);
    let shown = |messages: Vec<crate::message::Message>| -> Vec<(String, Option<String>)> {
        messages.into_iter().map(|m| (m.user, m.uid)).collect()
    };
    assert_eq!(
        shown(d.recent("x", 10).await.unwrap()),
        [
            ("deleted user".to_owned(), None),
            ("dee".to_owned(), Some("u8".to_owned()))
        ]
    );
    assert_eq!(
        shown(d.recent("y", 10).await.unwrap()),
        [
            ("deleted user".to_owned(), None),
            ("deleted user".to_owned(), None)
        ]
    );
}

/// What [`exercise`] left, read by a store opened again on the same data.
pub async fn kept_after_reopen(d: &dyn Directory) {
    assert_eq!(d.account_by_name("ann").await.unwrap().unwrap().uid, "u1");
    assert!(d.account("u2").await.unwrap().unwrap().admin);
    assert_eq!(d.revoked(100).await.unwrap(), [("j2".to_owned(), 200)]);
    assert_eq!(
        d.room_access("a").await.unwrap(),
        RoomAccess {
            owner: Some("u1".into()),
            private: true
        }
    );
    assert_eq!(d.members("a").await.unwrap(), ["u1"]);
    assert_eq!(d.rooms_of("u1").await.unwrap(), ["a", "b"]);
    let bans: Vec<String> = d
        .bans(100)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.uid)
        .collect();
    // u3's ban ended (and was forgotten at 200); u5's was lifted.
    assert_eq!(bans, ["u4"]);
    assert_eq!(d.mutes(100).await.unwrap().len(), 1);
    assert_eq!(d.audit_log(10).await.unwrap().len(), 2);
    // The deleted user's account stays gone, their messages renamed.
    assert_eq!(d.account("u7").await.unwrap(), None);
    assert_eq!(d.account_by_name("dee").await.unwrap().unwrap().uid, "u9");
    assert_eq!(d.rooms_of("u7").await.unwrap(), ["dm:0123456789abcdef"]);
    let users: Vec<String> = d
        .recent("y", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(users, ["deleted user", "deleted user"]);
    assert_eq!(d.messages_of("u7").await.unwrap(), []);
}
