//! The in-memory store: the course's behaviour, lost on restart.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Page, Store, StoreError};
use crate::message::{Message, NewPost};

/// The course's behaviour: messages in memory, lost on restart. Keeps the newest `retain`
/// messages so memory stays bounded; older ones are forgotten.
pub struct MemoryStore {
    retain: usize,
    state: Mutex<MemoryState>,
}

struct MemoryState {
    next_id: u64,
    messages: VecDeque<Message>,
}

impl MemoryStore {
    /// A store that keeps at most `retain` messages (at least one).
    pub fn new(retain: usize) -> MemoryStore {
        MemoryStore {
            retain: retain.max(1),
            state: Mutex::new(MemoryState {
                next_id: 1,
                messages: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding this lock cannot leave the deque half-updated in a way that
        // matters (push/pop are atomic), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        format!("memory (keeps the newest {} messages)", self.retain)
    }

    async fn append(&self, posts: &[NewPost], time: i64) -> Result<Vec<Message>, StoreError> {
        let mut state = self.lock();
        let mut stored = Vec::with_capacity(posts.len());
        for post in posts {
            let message = Message {
                id: state.next_id,
                user: post.user.clone(),
                text: post.text.clone(),
                time,
            };
            state.next_id += 1;
            if state.messages.len() == self.retain {
                state.messages.pop_front();
            }
            state.messages.push_back(message.clone());
            stored.push(message);
        }
        Ok(stored)
    }

    async fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self.lock().messages.iter().rev().take(n).cloned().collect())
    }

    async fn after(&self, after: u64, limit: usize) -> Result<Page, StoreError> {
        let state = self.lock();
        let start = state.messages.partition_point(|m| m.id <= after);
        let messages: Vec<Message> = state
            .messages
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        let truncated = messages.first().is_some_and(|m| m.id > after + 1);
        Ok(Page {
            messages,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn post(text: &str) -> NewPost {
        NewPost {
            user: "u".into(),
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn ids_increase_and_retention_forgets_the_oldest() {
        let store = MemoryStore::new(3);
        let ids: Vec<u64> = store
            .append(&[post("a"), post("b"), post("c"), post("d")], 1)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let recent = store.recent(10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 3, 2]);

        let page = store.after(0, 10).await.unwrap();
        assert!(page.truncated, "message 1 was forgotten");
        assert_eq!(
            page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            [2, 3, 4]
        );

        let page = store.after(2, 1).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages[0].id, 3);
        assert!(store.after(4, 10).await.unwrap().messages.is_empty());
    }
}
