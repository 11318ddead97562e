//! The directory of the in-memory store: lost on restart, like its messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Account, Directory, DirectoryError, RoomAccess};
use crate::store::{MemoryStore, StoreError};

/// What a [`MemoryStore`] remembers besides messages.
#[derive(Default)]
pub(crate) struct MemDirectory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, Account>,
    /// name -> uid
    names: HashMap<String, String>,
    revoked: HashMap<String, u64>,
    rooms: HashMap<String, RoomAccess>,
    /// (room, uid) pairs, ordered so both listings come out sorted.
    members: BTreeSet<(String, String)>,
}

impl MemDirectory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Directory for MemoryStore {
    async fn create_account(&self, account: Account) -> Result<(), DirectoryError> {
        let mut d = self.directory().lock();
        if d.names.contains_key(&account.name) {
            return Err(DirectoryError::NameTaken(account.name));
        }
        if d.accounts.contains_key(&account.uid) {
            return Err(DirectoryError::UidTaken(account.uid));
        }
        d.names.insert(account.name.clone(), account.uid.clone());
        d.accounts.insert(account.uid.clone(), account);
        Ok(())
    }

    async fn account(&self, uid: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.directory().lock().accounts.get(uid).cloned())
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let d = self.directory().lock();
        Ok(d.names
            .get(name)
            .and_then(|uid| d.accounts.get(uid))
            .cloned())
    }

    async fn set_admin(&self, uid: &str, admin: bool) -> Result<bool, StoreError> {
        Ok(match self.directory().lock().accounts.get_mut(uid) {
            Some(a) => {
                a.admin = admin;
                true
            }
            None => false,
        })
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        let mut d = self.directory().lock();
        let entry = d.revoked.entry(jti.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    async fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut d = self.directory().lock();
        d.revoked.retain(|_, until| *until > now);
        let mut out: Vec<(String, u64)> = d.revoked.iter().map(|(j, u)| (j.clone(), *u)).collect();
        out.sort();
        Ok(out)
    }

    async fn room_access(&self, room: &str) -> Result<RoomAccess, StoreError> {
        Ok(self
            .directory()
            .lock()
            .rooms
            .get(room)
            .cloned()
            .unwrap_or_default())
    }

    async fn claim_room(&self, room: &str, uid: &str) -> Result<String, StoreError> {
        let mut d = self.directory().lock();
        let access = d.rooms.entry(room.to_owned()).or_default();
        Ok(access.owner.get_or_insert_with(|| uid.to_owned()).clone())
    }

    async fn set_private(&self, room: &str, private: bool) -> Result<(), StoreError> {
        self.directory()
            .lock()
            .rooms
            .entry(room.to_owned())
            .or_default()
            .private = private;
        Ok(())
    }

    async fn add_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        Ok(self
            .directory()
            .lock()
            .members
            .insert((room.to_owned(), uid.to_owned())))
    }

    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        Ok(self
            .directory()
            .lock()
            .members
            .remove(&(room.to_owned(), uid.to_owned())))
    }

    async fn is_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        Ok(self
            .directory()
            .lock()
            .members
            .contains(&(room.to_owned(), uid.to_owned())))
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .directory()
            .lock()
            .members
            .iter()
            .filter(|(r, _)| r == room)
            .map(|(_, u)| u.clone())
            .collect())
    }

    async fn rooms_of(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .directory()
            .lock()
            .members
            .iter()
            .filter(|(_, u)| u == uid)
            .map(|(r, _)| r.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_directory_keeps_the_rules() {
        super::super::conformance::exercise(&MemoryStore::new(10)).await;
    }
}
