//! Rooms through the hub's door: names, the room cap and what stops counting, presence
//! (coalesced, per name, polling windows) and typing.

use std::sync::Arc;
use std::time::Duration;

use rtchat_core::{
    Delivery, Hub, HubConfig, MemoryStore, NewPost, PostError, RoomError, Signal, SignalKind,
    Subscription, GENERAL, TYPING_INTERVAL, TYPING_PER_ROOM,
};

async fn hub_with(config: HubConfig) -> Hub {
    Hub::open(Arc::new(MemoryStore::new(1_000)), config)
        .await
        .unwrap()
}

/// The names of the hub's rooms, as it lists them.
async fn room_names(hub: &Hub) -> Vec<String> {
    hub.rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// The next signal of `sub` (messages in between are skipped), within 5 s.
async fn next_signal(sub: &mut Subscription) -> Arc<Signal> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Delivery::Signal(signal) = sub.recv().await.expect("the hub is open") {
                return signal;
            }
        }
    })
    .await
    .expect("a signal within 5 s")
}

fn presence(signal: &Arc<Signal>) -> (Vec<String>, Vec<String>) {
    match &signal.kind {
        SignalKind::Presence { joined, left } => (
            joined.iter().map(|u| u.to_string()).collect(),
            left.iter().map(|u| u.to_string()).collect(),
        ),
        other => panic!("expected presence, got {other:?}"),
    }
}

#[tokio::test]
async fn rooms_have_their_own_ids_and_a_read_creates_nothing() {
    let hub = hub_with(HubConfig::default()).await;
    assert!(hub.channel("elsewhere").await.unwrap().is_none());
    let a = hub.post("a", NewPost::new("ann", "in a")).await.unwrap();
    let b = hub.post("b", NewPost::new("bob", "in b")).await.unwrap();
    let g = hub
        .post(GENERAL, NewPost::new("cy", "in general"))
        .await
        .unwrap();
    assert_eq!((a.message.id, b.message.id, g.message.id), (1, 1, 1));
    let names = room_names(&hub).await;
    assert_eq!(names, ["a", "b", "general"]);
    assert!(hub.channel("elsewhere").await.unwrap().is_none());
}

#[tokio::test]
async fn bad_names_are_refused_everywhere() {
    let hub = hub_with(HubConfig::default()).await;
    let bad = "Not A Room";
    assert!(matches!(
        hub.subscribe(bad, None).await,
        Err(RoomError::BadName(_))
    ));
    assert!(matches!(hub.channel(bad).await, Err(RoomError::BadName(_))));
    assert!(matches!(
        hub.post(bad, NewPost::new("u", "t")).await,
        Err(PostError::Room(RoomError::BadName(_)))
    ));
    assert!(matches!(
        hub.typing(bad, "u").await,
        Err(RoomError::BadName(_))
    ));
}

#[tokio::test]
async fn the_room_cap_refuses_one_more_until_a_room_empties() {
    let hub = hub_with(HubConfig {
        max_rooms: 3,
        ..HubConfig::default()
    })
    .await;
    // general counts: two more fit.
    hub.post("a", NewPost::new("u", "t")).await.unwrap();
    let joined = hub.subscribe("b", None).await.unwrap();
    let refused = hub.post("c", NewPost::new("u", "t")).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "this server already holds its maximum of 3 rooms (--max-rooms); join or post in an existing room"
    );
    assert!(matches!(
        hub.subscribe("c", None).await,
        Err(RoomError::TooMany { max: 3 })
    ));
    // Existing rooms still take posts and joins.
    hub.post("b", NewPost::new("u", "t")).await.unwrap();
    drop(joined);
    // `b` now has a message: it keeps counting after everyone left.
    assert!(hub.subscribe("c", None).await.is_err());
    // A joined room without messages stops counting once nobody is in it.
    let hub = hub_with(HubConfig {
        max_rooms: 2,
        ..HubConfig::default()
    })
    .await;
    let visitor = hub.subscribe("empty", None).await.unwrap();
    assert!(hub.subscribe("other", None).await.is_err());
    drop(visitor);
    hub.subscribe("other", None).await.unwrap();
    let names = room_names(&hub).await;
    assert_eq!(names, ["general", "other"]);
}

#[tokio::test]
async fn presence_is_per_name_and_coalesced() {
    let hub = hub_with(HubConfig::default()).await;
    let room = hub.open_channel("a").await.unwrap();
    let mut watcher = hub.subscribe("a", None).await.unwrap().subscription;
    watcher.with_signals();
    let _me = hub.present(&room, Some("watcher"));
    assert_eq!(
        presence(&next_signal(&mut watcher).await),
        (vec!["watcher".into()], vec![])
    );

    // 1,000 named clients join within one presence interval, then leave: a handful of events,
    // each with many names, and every name reported once each way.
    let guards: Vec<_> = (0..1000)
        .map(|i| hub.present(&room, Some(&format!("u{i}"))))
        .collect();
    let mut joined = Vec::new();
    let mut events = 0;
    while joined.len() < 1000 {
        let (j, l) = presence(&next_signal(&mut watcher).await);
        assert!(l.is_empty());
        joined.extend(j);
        events += 1;
    }
    assert!(
        events <= 2,
        "{events} presence events for one burst of joins"
    );
    assert_eq!(room.online(), 1001);
    drop(guards);
    let mut left = 0;
    while left < 1000 {
        left += presence(&next_signal(&mut watcher).await).1.len();
    }
    assert_eq!(room.online(), 1);

    // One user on two connections counts once, and leaves with the last one.
    let first = hub.present(&room, Some("ann"));
    let second = hub.present(&room, Some("ann"));
    assert_eq!(
        presence(&next_signal(&mut watcher).await),
        (vec!["ann".into()], vec![])
    );
    assert_eq!(room.online(), 2);
    drop(first);
    assert_eq!(room.online(), 2, "ann still has a connection");
    drop(second);
    assert_eq!(
        presence(&next_signal(&mut watcher).await),
        (vec![], vec!["ann".into()])
    );
    // An unnamed client counts, unlisted.
    let _anon = hub.present(&room, None);
    assert_eq!(room.online(), 2);
    let users: Vec<String> = room.members().iter().map(|m| m.user.to_string()).collect();
    assert_eq!(users, ["watcher"]);
}

#[tokio::test]
async fn a_polling_user_leaves_after_the_window() {
    let hub = hub_with(HubConfig {
        presence_window: Duration::from_millis(300),
        ..HubConfig::default()
    })
    .await;
    let room = hub.open_channel("a").await.unwrap();
    let mut watcher = hub.subscribe("a", None).await.unwrap().subscription;
    watcher.with_signals();
    hub.polled(&room, "poller");
    assert_eq!(
        presence(&next_signal(&mut watcher).await),
        (vec!["poller".into()], vec![])
    );
    assert_eq!(room.members()[0].user.as_ref(), "poller");
    // The hub's ticker (once a second) notices the window has passed.
    assert_eq!(
        presence(&next_signal(&mut watcher).await),
        (vec![], vec!["poller".into()])
    );
    assert!(room.members().is_empty());
}

#[tokio::test]
async fn typing_is_rate_limited_and_never_stored() {
    let hub = hub_with(HubConfig::default()).await;
    hub.post("a", NewPost::new("ann", "hello")).await.unwrap();
    let mut watcher = hub.subscribe("a", None).await.unwrap().subscription;
    watcher.with_signals();
    assert!(hub.typing("a", "ann").await.unwrap());
    assert!(
        !hub.typing("a", "ann").await.unwrap(),
        "a second one within a second is dropped"
    );
    assert!(hub.typing("a", "bob").await.unwrap());
    let first = next_signal(&mut watcher).await;
    assert_eq!(first.typing_user(), Some("ann"));
    assert_eq!(
        &first.frame[..],
        br#"{"type":"typing","room":"a","user":"ann"}"#
    );
    assert_eq!(&first.json[..], br#"{"room":"a","user":"ann"}"#);
    assert_eq!(next_signal(&mut watcher).await.typing_user(), Some("bob"));
    let room = hub.channel("a").await.unwrap().unwrap();
    assert_eq!(room.snapshot().last_id, 1, "typing stores nothing");
    // Unknown rooms: nothing to tell, nothing created.
    assert!(!hub.typing("nowhere", "ann").await.unwrap());
    assert!(hub.channel("nowhere").await.unwrap().is_none());
}

// Paused time: the interval cannot pass while the test runs, however slow the machine.
#[tokio::test(start_paused = true)]
async fn typing_is_capped_per_room_whatever_the_names() {
    let hub = hub_with(HubConfig::default()).await;
    hub.post("a", NewPost::new("ann", "hello")).await.unwrap();
    let mut told = 0;
    for i in 0..(TYPING_PER_ROOM * 2) {
        if hub.typing("a", &format!("name-{i}")).await.unwrap() {
            told += 1;
        }
    }
    assert_eq!(
        told, TYPING_PER_ROOM,
        "a new name for each signal gets no further"
    );
    tokio::time::advance(TYPING_INTERVAL).await;
    assert!(
        hub.typing("a", "late").await.unwrap(),
        "the next interval carries more"
    );
}

#[tokio::test]
async fn subscriptions_that_did_not_ask_get_no_signals() {
    let hub = hub_with(HubConfig::default()).await;
    let room = hub.open_channel("a").await.unwrap();
    let mut plain = hub.subscribe("a", None).await.unwrap().subscription;
    let _ann = hub.present(&room, Some("ann"));
    hub.typing("a", "ann").await.unwrap();
    hub.post("a", NewPost::new("ann", "hi")).await.unwrap();
    match plain.recv().await {
        Some(Delivery::Event(e)) => assert_eq!(e.entry.message.text, "hi"),
        other => panic!("expected the message, got {other:?}"),
    }
}
