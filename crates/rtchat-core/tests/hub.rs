//! The hub through its public door: channels, the broker seam, epochs, idempotent posts,
//! tombstones, slow consumers.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rtchat_core::{
    Broker, BrokerError, Deliver, Delivery, Entry, Hub, HubConfig, LocalBroker, MemoryStore,
    Message, NewPost, Position, PostError, Publication, Retention, SqliteStore, Start, Store,
    GENERAL,
};

async fn hub(history: usize, queue: usize) -> Hub {
    let config = HubConfig {
        history,
        queue,
        ..HubConfig::default()
    };
    Hub::open(Arc::new(MemoryStore::new(10_000)), config)
        .await
        .unwrap()
}

fn post(i: usize) -> NewPost {
    NewPost::new("u", format!("m{i}"))
}

fn keyed(user: &str, text: &str, key: &str) -> NewPost {
    NewPost {
        user: user.into(),
        text: text.into(),
        key: Some(key.into()),
        uid: None,
    }
}

fn ids(entries: &[Arc<Entry>]) -> Vec<u64> {
    entries.iter().map(|e| e.message.id).collect()
}

/// The next delivery's message id, without waiting (`None` if nothing is queued).
fn next_id(sub: &mut rtchat_core::Subscription) -> Option<u64> {
    match sub.try_recv()? {
        Delivery::Event(e) => Some(e.entry.message.id),
        Delivery::Lagged { .. } => panic!("lagged"),
        Delivery::Signal(s) => panic!("a signal nobody asked for: {s:?}"),
        Delivery::Deleted(d) => panic!("a deletion nobody made: {d:?}"),
        Delivery::Reset(s) => panic!("a new epoch nobody made: {}", s.epoch),
    }
}

#[tokio::test]
async fn snapshot_is_capped_newest_first_and_carries_the_epoch() {
    let hub = hub(3, 16).await;
    for i in 0..5 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let snap = hub.general().snapshot();
    assert_eq!(ids(&snap.entries), [5, 4, 3]);
    let parsed: serde_json::Value = serde_json::from_slice(&snap.json).unwrap();
    assert_eq!(parsed["msg"].as_array().unwrap().len(), 3);
    assert_eq!(parsed["msg"][0]["text"], "m4");
    assert_eq!(parsed["last"], 5);
    assert_eq!(parsed["epoch"], &*snap.epoch);
    assert_eq!(snap.epoch.len(), 8);
}

#[tokio::test]
async fn channels_have_their_own_ids_histories_and_subscribers() {
    let hub = hub(50, 64).await;
    let mut a = hub.subscribe("a", None).await.unwrap().subscription;
    let mut b = hub.subscribe("b", None).await.unwrap().subscription;
    hub.post("a", post(1)).await.unwrap();
    hub.post("b", post(2)).await.unwrap();
    hub.post("a", post(3)).await.unwrap();
    assert_eq!(next_id(&mut a), Some(1));
    assert_eq!(next_id(&mut a), Some(2), "a's second message is a's id 2");
    assert_eq!(next_id(&mut a), None);
    assert_eq!(next_id(&mut b), Some(1));
    assert_eq!(next_id(&mut b), None);
    let a_snap = hub.channel("a").await.unwrap().unwrap().snapshot();
    assert_eq!(a_snap.entries[0].message.text, "m3");
    assert_ne!(
        a_snap.epoch,
        hub.channel("b").await.unwrap().unwrap().snapshot().epoch
    );
    // Reading an unknown channel creates nothing.
    assert!(hub.channel("never").await.unwrap().is_none());
    assert!(hub.channel("never").await.unwrap().is_none());
}

#[tokio::test]
async fn the_door_decides_fresh_reset_and_resume_in_one_place() {
    let hub = hub(50, 64).await;
    for i in 0..5 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let epoch = hub.general().snapshot().epoch.to_string();
    let open = |from: Option<Position>| {
        let hub = hub.clone();
        async move { hub.subscribe(GENERAL, from.as_ref()).await.unwrap() }
    };
    assert_eq!(open(None).await.start, Start::Fresh);
    assert_eq!(
        open(Some(Position::new(3, Some(epoch.clone()))))
            .await
            .start,
        Start::Resume { after: 3 }
    );
    assert_eq!(
        open(Some(Position::new(3, None))).await.start,
        Start::Resume { after: 3 },
        "a bare id is judged by the id alone"
    );
    assert_eq!(
        open(Some(Position::new(3, Some("other".into()))))
            .await
            .start,
        Start::Reset,
        "another epoch: start over"
    );
    assert_eq!(
        open(Some(Position::new(9, Some(epoch)))).await.start,
        Start::Reset,
        "an id never handed out"
    );
    // A resumed subscription pages through exactly what was missed, then goes live.
    let mut opened = open(Some(Position::new(2, None))).await;
    let page = opened.subscription.catch_up(10).await.unwrap();
    assert_eq!(ids(&page.entries), [3, 4, 5]);
    assert!(!page.more && !page.truncated);
    hub.post(GENERAL, post(6)).await.unwrap();
    assert_eq!(next_id(&mut opened.subscription), Some(6));
}

#[tokio::test]
async fn a_resume_further_back_than_max_resume_starts_at_the_newest_and_says_truncated() {
    let config = HubConfig {
        history: 3,
        max_resume: 4,
        ..HubConfig::default()
    };
    let hub = Hub::open(Arc::new(MemoryStore::new(10_000)), config)
        .await
        .unwrap();
    for i in 0..10 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    // 8 behind: only the newest 4 come, the first page says the rest was skipped, and the
    // client's own position is what the transports name in their notices.
    let mut far = hub
        .subscribe(GENERAL, Some(&Position::new(2, None)))
        .await
        .unwrap();
    assert_eq!(far.start, Start::Resume { after: 2 });
    assert_eq!(far.subscription.last_seen(), 2);
    let first = far.subscription.catch_up(3).await.unwrap();
    assert_eq!(ids(&first.entries), [7, 8, 9]);
    assert!(first.truncated && first.more);
    let second = far.subscription.catch_up(3).await.unwrap();
    assert_eq!(ids(&second.entries), [10]);
    assert!(!second.truncated && !second.more);
    hub.post(GENERAL, post(11)).await.unwrap();
    assert_eq!(next_id(&mut far.subscription), Some(11));
    // Exactly the cap behind: everything, not truncated.
    let mut near = hub
        .subscribe(GENERAL, Some(&Position::new(7, None)))
        .await
        .unwrap();
    let page = near.subscription.catch_up(10).await.unwrap();
    assert_eq!(ids(&page.entries), [8, 9, 10, 11]);
    assert!(!page.truncated);
    // 0 lifts the cap: 12,000 behind (more than the default cap) gets all 12,000.
    let config = HubConfig {
        max_resume: 0,
        ..HubConfig::default()
    };
    let hub = Hub::open(Arc::new(MemoryStore::new(20_000)), config)
        .await
        .unwrap();
    for i in 0..11_999 {
        hub.submit(GENERAL, post(i)).await.unwrap();
    }
    hub.post(GENERAL, post(0)).await.unwrap();
    let mut all = hub
        .subscribe(GENERAL, Some(&Position::new(0, None)))
        .await
        .unwrap();
    let page = all.subscription.catch_up(20_000).await.unwrap();
    assert_eq!(page.entries.len(), 12_000);
    assert!(!page.truncated && !page.more);
}

#[tokio::test]
async fn a_memory_store_is_a_new_epoch_each_start_and_sqlite_keeps_its_epoch() {
    let first = hub(50, 8).await.general().snapshot().epoch.clone();
    let second = hub(50, 8).await.general().snapshot().epoch.clone();
    assert_ne!(first, second);

    let dir = std::env::temp_dir().join(format!("rtchat-hub-epoch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("rtchat.db");
    let open = || async {
        let store = SqliteStore::open(&db, Retention::default(), None).unwrap();
        Hub::open(Arc::new(store), HubConfig::default())
            .await
            .unwrap()
    };
    let hub = open().await;
    hub.post(GENERAL, post(1)).await.unwrap();
    let epoch = hub.general().snapshot().epoch.clone();
    // Dropping the hub closes the store (and its lock) at once.
    drop(hub);
    let reopened = open().await;
    let snap = reopened.general().snapshot();
    assert_eq!(snap.epoch, epoch);
    assert_eq!(snap.last_id, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_same_key_twice_is_one_message_even_within_one_batch() {
    let hub = hub(50, 64).await;
    let mut sub = hub.subscribe(GENERAL, None).await.unwrap().subscription;
    // Submitted back to back: the writer takes them in one batch.
    let t1 = hub.submit(GENERAL, keyed("ann", "hi", "k")).await.unwrap();
    let t2 = hub.submit(GENERAL, keyed("ann", "hi", "k")).await.unwrap();
    let (a, b) = (t1.await.unwrap(), t2.await.unwrap());
    assert_eq!(a.message.id, 1);
    assert_eq!(b.message.id, 1);
    // Later, the same key again: the first id.
    assert_eq!(
        hub.post(GENERAL, keyed("ann", "hi", "k"))
            .await
            .unwrap()
            .message
            .id,
        1
    );
    // Another text under the same key is a conflict; another poster's key is theirs.
    match hub.post(GENERAL, keyed("ann", "bye", "k")).await {
        Err(PostError::KeyConflict { id: 1, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        hub.post(GENERAL, keyed("bob", "hi", "k"))
            .await
            .unwrap()
            .message
            .id,
        2
    );
    assert_eq!(next_id(&mut sub), Some(1));
    assert_eq!(next_id(&mut sub), Some(2));
    assert_eq!(next_id(&mut sub), None, "one delivery per message");
}

#[tokio::test]
async fn a_deleted_message_leaves_history_and_resume_without_a_gap() {
    let hub = hub(50, 64).await;
    for i in 0..4 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let mut watch = hub.general().watch();
    watch.borrow_and_update();
    assert!(hub.delete(GENERAL, 2).await.unwrap());
    assert!(!hub.delete(GENERAL, 2).await.unwrap());
    assert!(!hub.delete(GENERAL, 99).await.unwrap());
    watch.changed().await.unwrap();
    let snap = hub.general().snapshot();
    assert_eq!(ids(&snap.entries), [4, 3, 1]);
    assert_eq!(snap.last_id, 4);
    let mut opened = hub
        .subscribe(GENERAL, Some(&Position::new(1, None)))
        .await
        .unwrap();
    let page = opened.subscription.catch_up(10).await.unwrap();
    assert_eq!(ids(&page.entries), [3, 4]);
    assert!(!page.truncated, "a deletion is not a gap");
    // The newest message deleted: its id still counts, so resuming after it is no reset.
    assert!(hub.delete(GENERAL, 4).await.unwrap());
    let opened = hub
        .subscribe(GENERAL, Some(&Position::new(4, None)))
        .await
        .unwrap();
    assert_eq!(opened.start, Start::Resume { after: 4 });
}

#[tokio::test]
async fn subscribers_are_told_of_a_deletion_with_the_history_without_it() {
    let hub = hub(50, 64).await;
    for i in 0..3 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let mut opened = hub.subscribe(GENERAL, None).await.unwrap();
    assert!(hub.delete(GENERAL, 2).await.unwrap());
    // The deleting caller is answered once this node's history has forgotten it.
    assert_eq!(ids(&hub.general().snapshot().entries), [3, 1]);
    hub.post(GENERAL, post(3)).await.unwrap();
    // The deletion (told once the history is rebuilt, maybe after message 4) and message 4.
    let (mut deleted, mut messages) = (Vec::new(), Vec::new());
    while deleted.is_empty() || messages.is_empty() {
        match opened.subscription.recv().await.unwrap() {
            Delivery::Deleted(deletion) => {
                assert!(!ids(&deletion.snapshot.entries).contains(&2));
                deleted.push(deletion.id);
            }
            Delivery::Event(event) => messages.push(event.entry.message.id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((deleted, messages), (vec![2], vec![4]));
    // The history has message 4 and not 2, whatever the order the two happened in.
    assert_eq!(ids(&hub.general().snapshot().entries), [4, 3, 1]);
}

/// A broker that can hold back the next publication and inject ones never stored.
#[derive(Default)]
struct TestBroker {
    local: LocalBroker,
    hold_next: Mutex<bool>,
    held: Mutex<Vec<Publication>>,
    deliver: Mutex<Option<Arc<dyn Deliver>>>,
}

impl TestBroker {
    fn release(&self) {
        let held: Vec<_> = self.held.lock().unwrap().drain(..).collect();
        let deliver = self.deliver.lock().unwrap().clone().unwrap();
        for p in held {
            deliver.deliver(p);
        }
    }

    fn inject(&self, channel: &str, message: Message) {
        let deliver = self.deliver.lock().unwrap().clone().unwrap();
        deliver.deliver(Publication::Message {
            channel: Arc::from(channel),
            entry: Entry::new(message),
        });
    }
}

#[async_trait]
impl Broker for TestBroker {
    fn start(&self, deliver: Arc<dyn Deliver>) {
        *self.deliver.lock().unwrap() = Some(deliver.clone());
        self.local.start(deliver);
    }

    async fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        if std::mem::take(&mut *self.hold_next.lock().unwrap()) {
            self.held.lock().unwrap().push(publication);
            return Ok(());
        }
        self.local.publish(publication).await
    }
}

#[tokio::test]
async fn subscribers_and_history_are_fed_by_the_broker_alone() {
    let broker = Arc::new(TestBroker::default());
    let store = Arc::new(MemoryStore::new(100));
    let hub = Hub::open_with(store.clone(), broker.clone(), HubConfig::default())
        .await
        .unwrap();
    let mut sub = hub.subscribe(GENERAL, None).await.unwrap().subscription;

    *broker.hold_next.lock().unwrap() = true;
    let stored = hub.post(GENERAL, post(1)).await.unwrap();
    assert_eq!(stored.message.id, 1, "acknowledged: it is stored");
    assert_eq!(store.recent(GENERAL, 10).await.unwrap().len(), 1);
    assert_eq!(next_id(&mut sub), None, "held back: no subscriber sees it");
    assert!(
        hub.general().snapshot().entries.is_empty(),
        "nor the history"
    );
    broker.release();
    assert_eq!(next_id(&mut sub), Some(1));
    assert_eq!(ids(&hub.general().snapshot().entries), [1]);

    // Never stored, yet delivered: subscribers see what the broker says.
    broker.inject(
        GENERAL,
        Message {
            id: 2,
            user: "broker".into(),
            text: "injected".into(),
            time: 0,
            uid: None,
        },
    );
    match sub.try_recv() {
        Some(Delivery::Event(e)) => assert_eq!(e.entry.message.text, "injected"),
        other => panic!("expected the injected message, got {other:?}"),
    }
    assert_eq!(hub.general().snapshot().entries[0].message.text, "injected");
    assert_eq!(
        store.recent(GENERAL, 10).await.unwrap().len(),
        1,
        "the store has only one"
    );
}

#[tokio::test]
async fn a_subscriber_that_never_reads_stalls_nobody_and_can_catch_up() {
    let hub = hub(50, 8).await;
    let mut never_reads = hub.subscribe(GENERAL, None).await.unwrap().subscription;
    let mut reader = hub.subscribe(GENERAL, None).await.unwrap().subscription;
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 1000 {
            match reader.recv().await {
                Some(Delivery::Event(e)) => got.push(e.entry.message.id),
                Some(Delivery::Lagged { .. }) => {
                    let since = reader.catch_up(1000).await.unwrap();
                    got.extend(since.entries.iter().map(|e| e.message.id));
                }
                Some(Delivery::Signal(s)) => panic!("a signal nobody asked for: {s:?}"),
                Some(Delivery::Deleted(d)) => panic!("a deletion nobody made: {d:?}"),
                Some(Delivery::Reset(s)) => panic!("a new epoch nobody made: {}", s.epoch),
                None => break,
            }
        }
        got
    });
    for i in 0..1000 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    assert_eq!(reading.await.unwrap(), (1..=1000).collect::<Vec<u64>>());
    match never_reads.recv().await.unwrap() {
        Delivery::Lagged { missed } => assert!(missed >= 992),
        other => panic!("expected Lagged, got {other:?}"),
    }
    let mut caught = Vec::new();
    loop {
        let since = never_reads.catch_up(300).await.unwrap();
        caught.extend(since.entries.iter().map(|e| e.message.id));
        if !since.more {
            break;
        }
    }
    assert_eq!(caught, (1..=1000).collect::<Vec<u64>>());
}

#[tokio::test]
async fn since_serves_cache_and_store_and_pages() {
    let hub = hub(5, 16).await;
    for i in 0..12 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let general = hub.general();
    let s = hub.since(&general, 9, 10).await.unwrap();
    assert_eq!(ids(&s.entries), [10, 11, 12]);
    assert!(!s.more && !s.truncated);
    let s = hub.since(&general, 0, 4).await.unwrap();
    assert_eq!(ids(&s.entries), [1, 2, 3, 4]);
    assert!(s.more);
    assert!(hub
        .since(&general, 12, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
}

#[tokio::test]
async fn concurrent_posts_get_distinct_increasing_ids() {
    let hub = hub(50, 1024).await;
    let mut tasks = Vec::new();
    for t in 0..20 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                ids.push(
                    hub.post(GENERAL, post(t * 100 + i))
                        .await
                        .unwrap()
                        .message
                        .id,
                );
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let ids = t.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        all.extend(ids);
    }
    all.sort();
    assert_eq!(all, (1..=500).collect::<Vec<u64>>());
}

#[tokio::test]
async fn try_recv_takes_what_is_waiting_without_waiting() {
    let hub = hub(50, 4).await;
    let mut sub = hub.subscribe(GENERAL, None).await.unwrap().subscription;
    assert!(sub.try_recv().is_none(), "nothing posted yet");
    for i in 0..3 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    let mut got = Vec::new();
    while let Some(id) = next_id(&mut sub) {
        got.push(id);
    }
    assert_eq!(got, [1, 2, 3]);
    for i in 0..10 {
        hub.post(GENERAL, post(i)).await.unwrap();
    }
    assert!(matches!(sub.try_recv(), Some(Delivery::Lagged { .. })));
}

#[tokio::test]
async fn a_channel_counts_only_live_subscriptions() {
    let hub = hub(50, 256).await;
    hub.post("quiet", post(1)).await.unwrap();
    let quiet = hub.channel("quiet").await.unwrap().unwrap();
    assert_eq!(quiet.subscribers(), 0);
    let sub = hub.subscribe("quiet", None).await.unwrap().subscription;
    assert_eq!(quiet.subscribers(), 1);
    drop(sub);
    assert_eq!(quiet.subscribers(), 0);
    assert_eq!(hub.subscribers(), 0);
}
