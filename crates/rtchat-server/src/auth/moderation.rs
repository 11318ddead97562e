//! Moderation (`--auth token`): who is banned from the server, who is muted in which room,
//! and the audit log of what admins did. Bans and mutes are mirrored in memory (loaded from
//! the directory at start), so checking a connection or a post costs no store access.
//!
//! - A banned user's tokens are refused (`403 banned`: connecting, posting, logging in), and
//!   the ban ends their live connections at once (see [`super::lifetime`]: close 4003).
//! - A muted user may read a room but not post in it (`403 muted`).
//! - Every action is appended to the audit log (who, what, when, why, on what).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use rtchat_core::directory::{AuditEntry, Ban, Directory, Mute};
use rtchat_core::StoreError;

use super::cluster::{Announcer, Notice};
use super::keyring;

/// A Unix time as an RFC 3339 date, for messages.
pub fn when(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// Bans, mutes and the audit log (see the module docs).
pub struct Moderation {
    directory: Arc<dyn Directory>,
    /// Tells the other nodes of a cluster.
    pub(super) announcer: Announcer,
    bans: RwLock<HashMap<String, Ban>>,
    mutes: RwLock<HashMap<(String, String), Mute>>,
}

impl Moderation {
    /// Nothing to mirror (`--auth off`: there are no users to moderate).
    pub fn off(directory: Arc<dyn Directory>) -> Moderation {
        Moderation {
            directory,
            announcer: Announcer::default(),
            bans: RwLock::default(),
            mutes: RwLock::default(),
        }
    }

    /// The bans and mutes still in force, read from the directory.
    pub async fn load(directory: Arc<dyn Directory>) -> Result<Moderation, StoreError> {
        let now = keyring::now();
        let bans = directory.bans(now).await?;
        let mutes = directory.mutes(now).await?;
        Ok(Moderation {
            bans: RwLock::new(bans.into_iter().map(|b| (b.uid.clone(), b)).collect()),
            mutes: RwLock::new(
                mutes
                    .into_iter()
                    .map(|m| ((m.room.clone(), m.uid.clone()), m))
                    .collect(),
            ),
            directory,
            announcer: Announcer::default(),
        })
    }

    /// Reads the bans again (another node changed them).
    pub async fn reload_bans(&self) -> Result<(), StoreError> {
        let bans = self.directory.bans(keyring::now()).await?;
        *self.bans.write().unwrap_or_else(|e| e.into_inner()) =
            bans.into_iter().map(|b| (b.uid.clone(), b)).collect();
        Ok(())
    }

    /// Reads the mutes again (another node changed them).
    pub async fn reload_mutes(&self) -> Result<(), StoreError> {
        let mutes = self.directory.mutes(keyring::now()).await?;
        *self.mutes.write().unwrap_or_else(|e| e.into_inner()) = mutes
            .into_iter()
            .map(|m| ((m.room.clone(), m.uid.clone()), m))
            .collect();
        Ok(())
    }

    /// The ban in force on `uid`, if any.
    pub fn ban_of(&self, uid: &str) -> Option<Ban> {
        let bans = self.bans.read().unwrap_or_else(|e| e.into_inner());
        let ban = bans.get(uid)?;
        in_force(ban.until).then(|| ban.clone())
    }

    /// The mute in force on `uid` in `room`, if any.
    pub fn mute_of(&self, room: &str, uid: &str) -> Option<Mute> {
        let mutes = self.mutes.read().unwrap_or_else(|e| e.into_inner());
        if mutes.is_empty() {
            return None;
        }
        let mute = mutes.get(&(room.to_owned(), uid.to_owned()))?;
        in_force(mute.until).then(|| mute.clone())
    }

    /// Bans a user (here and in the directory).
    pub async fn ban(&self, ban: Ban) -> Result<(), StoreError> {
        self.directory.ban(ban.clone()).await?;
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        bans.retain(|_, b| in_force(b.until));
        let uid = ban.uid.clone();
        bans.insert(ban.uid.clone(), ban);
        drop(bans);
        self.announcer.send(Notice::Banned { uid });
        Ok(())
    }

    /// Lifts a ban; false when there was none.
    pub async fn unban(&self, uid: &str) -> Result<bool, StoreError> {
        let lifted = self.directory.unban(uid).await?;
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        let removed = bans.remove(uid).is_some();
        drop(bans);
        self.announcer.send(Notice::Unbanned {
            uid: uid.to_owned(),
        });
        Ok(removed || lifted)
    }

    /// The bans in force, sorted by user.
    pub fn bans(&self) -> Vec<Ban> {
        let bans = self.bans.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Ban> = bans
            .values()
            .filter(|b| in_force(b.until))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.uid.cmp(&b.uid));
        list
    }

    /// Mutes a user in a room.
    pub async fn mute(&self, mute: Mute) -> Result<(), StoreError> {
        self.directory.mute(mute.clone()).await?;
        let mut mutes = self.mutes.write().unwrap_or_else(|e| e.into_inner());
        mutes.retain(|_, m| in_force(m.until));
        mutes.insert((mute.room.clone(), mute.uid.clone()), mute);
        drop(mutes);
        self.announcer.send(Notice::Mutes);
        Ok(())
    }

    /// Lifts a mute; false when there was none.
    pub async fn unmute(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let lifted = self.directory.unmute(room, uid).await?;
        let mut mutes = self.mutes.write().unwrap_or_else(|e| e.into_inner());
        let removed = mutes.remove(&(room.to_owned(), uid.to_owned())).is_some();
        drop(mutes);
        self.announcer.send(Notice::Mutes);
        Ok(removed || lifted)
    }

    /// The mutes in force, sorted by room and user.
    pub fn mutes(&self) -> Vec<Mute> {
        let mutes = self.mutes.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Mute> = mutes
            .values()
            .filter(|m| in_force(m.until))
            .cloned()
            .collect();
        list.sort_by(|a, b| (&a.room, &a.uid).cmp(&(&b.room, &b.uid)));
        list
    }

    /// Appends an action to the audit log; returns its id.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        room: Option<&str>,
        reason: Option<&str>,
    ) -> Result<u64, StoreError> {
        let at = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.directory
            .record(AuditEntry {
                id: 0,
                at,
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                room: room.map(str::to_owned),
                reason: reason.map(str::to_owned),
            })
            .await
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.directory.audit_log(limit).await
    }
}

/// Whether something lasting `until` (Unix seconds; `None`: until lifted) is in force now.
fn in_force(until: Option<u64>) -> bool {
    until.is_none_or(|t| t > keyring::now())
}
