//! The directory of the in-memory store: lost on restart, like its messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Account, AuditEntry, Ban, Directory, DirectoryError, Mute, PrivateRoom, RoomAccess};
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
    bans: std::collections::BTreeMap<String, Ban>,
    mutes: std::collections::BTreeMap<(String, String), Mute>,
    audit: Vec<AuditEntry>,
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

    async fn delete_account(&self, uid: &str) -> Result<bool, StoreError> {
        let mut d = self.directory().lock();
        let Some(account) = d.accounts.remove(uid) else {
            return Ok(false);
        };
        d.names.remove(&account.name);
        Ok(true)
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

    async fn remove_memberships(&self, uid: &str) -> Result<usize, StoreError> {
        let mut d = self.directory().lock();
        let before = d.members.len();
        d.members
            .retain(|(room, u)| u != uid || crate::room::is_dm_room(room));
        Ok(before - d.members.len())
    }

    async fn private_rooms(&self) -> Result<Vec<PrivateRoom>, StoreError> {
        let d = self.directory().lock();
        let mut rooms: Vec<PrivateRoom> = d
            .rooms
            .iter()
            .filter(|(_, access)| access.private)
            .map(|(room, access)| PrivateRoom {
                room: room.clone(),
                owner: access.owner.clone(),
                members: d
                    .members
                    .iter()
                    .filter(|(r, _)| r == room)
                    .map(|(_, u)| u.clone())
                    .collect(),
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(rooms)
    }

    async fn ban(&self, ban: Ban) -> Result<(), StoreError> {
        self.directory().lock().bans.insert(ban.uid.clone(), ban);
        Ok(())
    }

    async fn unban(&self, uid: &str) -> Result<bool, StoreError> {
        Ok(self.directory().lock().bans.remove(uid).is_some())
    }

    async fn bans(&self, now: u64) -> Result<Vec<Ban>, StoreError> {
        let mut d = self.directory().lock();
        d.bans.retain(|_, b| b.until.is_none_or(|t| t > now));
        Ok(d.bans.values().cloned().collect())
    }

    async fn mute(&self, mute: Mute) -> Result<(), StoreError> {
        let key = (mute.room.clone(), mute.uid.clone());
        self.directory().lock().mutes.insert(key, mute);
        Ok(())
    }

    async fn unmute(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let key = (room.to_owned(), uid.to_owned());
        Ok(self.directory().lock().mutes.remove(&key).is_some())
    }

    async fn mutes(&self, now: u64) -> Result<Vec<Mute>, StoreError> {
        let mut d = self.directory().lock();
        d.mutes.retain(|_, m| m.until.is_none_or(|t| t > now));
        Ok(d.mutes.values().cloned().collect())
    }

    async fn record(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        let mut d = self.directory().lock();
        entry.id = d.audit.last().map_or(1, |e| e.id + 1);
        let id = entry.id;
        d.audit.push(entry);
        Ok(id)
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let d = self.directory().lock();
        Ok(d.audit.iter().rev().take(limit).cloned().collect())
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
