//! The in-memory store: the course's behaviour, lost on restart. Each start is a new epoch,
//! so clients that resume with ids from before the restart are told to start over.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{new_epoch, Append, Appended, ChannelInfo, ChannelSummary, Page, Store, StoreError};
use crate::message::Message;

/// The course's behaviour: messages in memory, lost on restart. Keeps the newest `retain`
/// messages of each channel so memory stays bounded; older ones are forgotten.
pub struct MemoryStore {
    retain: usize,
    channels: Mutex<HashMap<String, MemChannel>>,
    /// Accounts, revocations and room access ([`crate::directory`]).
    directory: crate::directory::memory::MemDirectory,
}

struct MemChannel {
    epoch: String,
    last_id: u64,
    /// Oldest first; tombstones stay (deleted), so a deletion is not mistaken for a gap.
    messages: VecDeque<Kept>,
}

struct Kept {
    message: Message,
    key: Option<String>,
    deleted: bool,
}

impl MemChannel {
    fn new() -> MemChannel {
        MemChannel {
            epoch: new_epoch(),
            last_id: 0,
            messages: VecDeque::new(),
        }
    }

    fn info(&self) -> ChannelInfo {
        ChannelInfo {
            epoch: self.epoch.clone(),
            last_id: self.last_id,
        }
    }

    /// The newest message `user` posted with `key` at or after `since` (ms).
    fn keyed(&self, user: &str, key: &str, since: i64) -> Option<&Message> {
        self.messages
            .iter()
            .rev()
            .take_while(|k| k.message.time >= since)
            .find(|k| k.key.as_deref() == Some(key) && k.message.user == user)
            .map(|k| &k.message)
    }
}

impl MemoryStore {
    /// A store that keeps at most `retain` messages per channel (at least one).
    pub fn new(retain: usize) -> MemoryStore {
        MemoryStore {
            retain: retain.max(1),
            channels: Mutex::new(HashMap::new()),
            directory: Default::default(),
        }
    }

    /// What it remembers besides messages.
    pub(crate) fn directory(&self) -> &crate::directory::memory::MemDirectory {
        &self.directory
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemChannel>> {
        // A panic while holding this lock cannot leave a deque half-updated in a way that
        // matters (push/pop are atomic), so a poisoned lock is still usable.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        format!(
            "memory (keeps the newest {} messages per channel)",
            self.retain
        )
    }

    async fn channels(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        let mut all: Vec<ChannelSummary> = self
            .lock()
            .iter()
            .map(|(name, c)| ChannelSummary {
                name: name.clone(),
                info: c.info(),
                has_messages: c.messages.iter().any(|k| !k.deleted),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn open_channel(&self, channel: &str) -> Result<ChannelInfo, StoreError> {
        let mut channels = self.lock();
        Ok(channels
            .entry(channel.to_owned())
            .or_insert_with(MemChannel::new)
            .info())
    }

    async fn find_channel(&self, channel: &str) -> Result<Option<ChannelInfo>, StoreError> {
        Ok(self.lock().get(channel).map(MemChannel::info))
    }

    async fn append(
        &self,
        posts: &[Append],
        time: i64,
        dedupe: Duration,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut channels = self.lock();
        let since = time - dedupe.as_millis() as i64;
        let mut out = Vec::with_capacity(posts.len());
        for Append { channel, post } in posts {
            let ch = channels
                .entry(channel.to_string())
                .or_insert_with(MemChannel::new);
            if let Some(key) = &post.key {
                if let Some(first) = ch.keyed(&post.user, key, since) {
                    out.push(if first.text == post.text {
                        Appended::Duplicate(first.clone())
                    } else {
                        Appended::Conflict { id: first.id }
                    });
                    continue;
                }
            }
            ch.last_id += 1;
            let message = Message {
                id: ch.last_id,
                user: post.user.clone(),
                text: post.text.clone(),
                time,
                uid: post.uid.clone(),
            };
            if ch.messages.len() == self.retain {
                ch.messages.pop_front();
            }
            ch.messages.push_back(Kept {
                message: message.clone(),
                key: post.key.clone(),
                deleted: false,
            });
            out.push(Appended::Stored(message));
        }
        Ok(out)
    }

    async fn recent(&self, channel: &str, n: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self.lock().get(channel).map_or_else(Vec::new, |ch| {
            ch.messages
                .iter()
                .rev()
                .filter(|k| !k.deleted)
                .take(n)
                .map(|k| k.message.clone())
                .collect()
        }))
    }

    async fn after(&self, channel: &str, after: u64, limit: usize) -> Result<Page, StoreError> {
        let channels = self.lock();
        let Some(ch) = channels.get(channel) else {
            return Ok(Page::default());
        };
        let start = ch.messages.partition_point(|k| k.message.id <= after);
        // Ids are consecutive, so a hole right after `after` means retention forgot them.
        let truncated = ch
            .messages
            .get(start)
            .is_some_and(|k| k.message.id > after + 1);
        let messages = ch
            .messages
            .iter()
            .skip(start)
            .filter(|k| !k.deleted)
            .take(limit)
            .map(|k| k.message.clone())
            .collect();
        Ok(Page {
            messages,
            truncated,
        })
    }

    async fn delete(&self, channel: &str, id: u64) -> Result<bool, StoreError> {
        let mut channels = self.lock();
        let Some(ch) = channels.get_mut(channel) else {
            return Ok(false);
        };
        let i = ch.messages.partition_point(|k| k.message.id < id);
        match ch.messages.get_mut(i) {
            Some(k) if k.message.id == id && !k.deleted => {
                k.deleted = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn messages_of(&self, uid: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let channels = self.lock();
        let mut out: Vec<(String, u64)> = channels
            .iter()
            .flat_map(|(name, ch)| {
                ch.messages
                    .iter()
                    .filter(|k| !k.deleted && k.message.uid.as_deref() == Some(uid))
                    .map(move |k| (name.clone(), k.message.id))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn anonymize(&self, uid: &str, name: &str) -> Result<usize, StoreError> {
        let mut channels = self.lock();
        let mut changed = 0;
        for ch in channels.values_mut() {
            for k in &mut ch.messages {
                if k.message.uid.as_deref() == Some(uid) {
                    k.message.user = name.to_owned();
                    k.message.uid = None;
                    changed += usize::from(!k.deleted);
                }
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::NewPost;
    use crate::store::Store;

    fn post(channel: &str, text: &str) -> Append {
        Append {
            channel: Arc::from(channel),
            post: NewPost::new("u", text),
        }
    }

    fn ids(appended: &[Appended]) -> Vec<u64> {
        appended
            .iter()
            .map(|a| match a {
                Appended::Stored(m) | Appended::Duplicate(m) => m.id,
                Appended::Conflict { id } => *id,
            })
            .collect()
    }

    const WINDOW: Duration = Duration::from_secs(120);

    #[tokio::test]
    async fn ids_increase_per_channel_and_retention_forgets_the_oldest() {
        let store = MemoryStore::new(3);
        let batch = [
            post("a", "1"),
            post("b", "1"),
            post("a", "2"),
            post("a", "3"),
            post("a", "4"),
        ];
        let appended = store.append(&batch, 1, WINDOW).await.unwrap();
        assert_eq!(ids(&appended), [1, 1, 2, 3, 4]);
        let recent = store.recent("a", 10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 3, 2]);
        let page = store.after("a", 0, 10).await.unwrap();
        assert!(page.truncated, "message 1 was forgotten");
        assert_eq!(
            page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        let page = store.after("a", 2, 1).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages[0].id, 3);
        assert!(store.after("a", 4, 10).await.unwrap().messages.is_empty());
        assert_eq!(store.find_channel("b").await.unwrap().unwrap().last_id, 1);
        assert_eq!(
            store.find_channel("c").await.unwrap(),
            None,
            "reads create nothing"
        );
    }

    #[tokio::test]
    async fn a_tombstone_is_skipped_without_a_gap() {
        let store = MemoryStore::new(10);
        store
            .append(&[post("a", "1"), post("a", "2"), post("a", "3")], 1, WINDOW)
            .await
            .unwrap();
        assert!(store.delete("a", 2).await.unwrap());
        assert!(!store.delete("a", 2).await.unwrap(), "already deleted");
        let page = store.after("a", 1, 10).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [3]);
        let recent = store.recent("a", 10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [3, 1]);
    }

    #[tokio::test]
    async fn keys_dedupe_within_the_window_per_poster() {
        let store = MemoryStore::new(10);
        let keyed = |user: &str, text: &str, key: &str| Append {
            channel: Arc::from("a"),
            post: NewPost {
                user: user.into(),
                text: text.into(),
                key: Some(key.into()),
                uid: None,
            },
        };
        let first = store
            .append(
                &[keyed("ann", "hi", "k1"), keyed("ann", "hi", "k1")],
                1_000,
                WINDOW,
            )
            .await
            .unwrap();
        assert!(matches!(first[0], Appended::Stored(ref m) if m.id == 1));
        assert!(matches!(first[1], Appended::Duplicate(ref m) if m.id == 1));
        let again = store
            .append(
                &[keyed("ann", "other", "k1"), keyed("bob", "hi", "k1")],
                2_000,
                WINDOW,
            )
            .await
            .unwrap();
        assert_eq!(again[0], Appended::Conflict { id: 1 });
        assert!(
            matches!(again[1], Appended::Stored(ref m) if m.id == 2),
            "another poster's key"
        );
        // Past the window the key is free again.
        let later = store
            .append(&[keyed("ann", "hi", "k1")], 1_000 + 121_000, WINDOW)
            .await
            .unwrap();
        assert!(matches!(later[0], Appended::Stored(ref m) if m.id == 3));
    }
}
