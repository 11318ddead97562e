//! One set of expectations every [`Directory`] must meet, run against each store.

use super::{Account, Directory, DirectoryError, RoomAccess};

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
}
