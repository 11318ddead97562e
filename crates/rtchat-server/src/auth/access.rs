//! Who may use which room (`--auth token`): a token's `rooms` claim, private rooms and direct
//! messages, checked by [`Access::check`] at every door of every transport (a join, a
//! subscription with or without a position, a post, a poll, the room list).
//!
//! - A room's creator (its first user with a token; never `general` or a direct message) is
//!   its owner. The owner or an admin makes it private or public and adds or removes members.
//!   A private room lets in only its owner and members.
//! - A direct message is the room `dm:<h>`, `h` the first 16 hex digits of SHA-256 over the
//!   two user ids, sorted and joined by a newline ([`dm_room`]). It is private from the
//!   start, its members are exactly those two, and it exists only with `--auth token`.
//! - When a room's access narrows (it turns private, a member is removed), every live
//!   connection hears of it ([`Access::narrowed`]) and leaves the room if it may no longer
//!   be there.
//!
//! Private rooms and their members are kept in memory (loaded from the directory at start,
//! at most `--max-private-rooms` of them), so a check costs no store access.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::StatusCode;
use rtchat_core::directory::Directory;
use rtchat_core::{is_dm_room, StoreError, DM_PREFIX, GENERAL};
use rtchat_protocol::shapes::{DmOpened, DmParty, MyRoom, RoomSettings};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::cluster::{Announcer, Notice};
use super::token::Identity;
use crate::api::ApiError;

/// How many user names (for direct messages' other party) and claimed rooms are remembered
/// before the memory is cleared and built again.
const REMEMBERED: usize = 100_000;

/// The direct message's room of two users: `dm:` and the first 16 hex digits of SHA-256 over
/// their ids, sorted and joined by a newline. The same whichever of the two asks.
pub fn dm_room(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut hash = Sha256::new();
    hash.update(first.as_bytes());
    hash.update(b"\n");
    hash.update(second.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{DM_PREFIX}{hex}")
}

/// Why a client may not use a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The token's `rooms` claim leaves it out.
    #[error("{0}")]
    Claim(String),
    /// A private room (or someone else's direct message).
    #[error("the room {0:?} is private: only its owner and members may use it")]
    Private(String),
    /// A direct message's name with `--auth off`.
    #[error("{0:?} is a direct message's room name: they exist only with --auth token")]
    DmWithoutAuth(String),
    /// The user is muted in the room (may read, not post).
    #[error("you are muted in {room:?}{}: {reason}", until.map(|t| format!(" until {}", super::moderation::when(t))).unwrap_or_default())]
    Muted {
        room: String,
        reason: String,
        until: Option<u64>,
    },
}

impl Denied {
    /// The machine-readable reason (`"code"`).
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Claim(_) => "room_not_allowed",
            Denied::Private(_) => "not_a_member",
            Denied::DmWithoutAuth(_) => "bad_room",
            Denied::Muted { .. } => "muted",
        }
    }
}

impl From<Denied> for ApiError {
    fn from(e: Denied) -> ApiError {
        let status = match e {
            Denied::DmWithoutAuth(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, e.to_string()).with_code(e.code())
    }
}

/// A private room as the checks see it.
#[derive(Debug, Default, Clone)]
struct Private {
    owner: Option<String>,
    members: HashSet<String>,
}

impl Private {
    fn lets_in(&self, uid: &str) -> bool {
        self.owner.as_deref() == Some(uid) || self.members.contains(uid)
    }
}

/// The room rules of `--auth token` (see the module docs).
pub struct Access {
    directory: Arc<dyn Directory>,
    enabled: bool,
    max_private: usize,
    private: RwLock<HashMap<Arc<str>, Arc<Private>>>,
    /// Rooms whose owner is known to be settled (claimed, or tried): no store access for them.
    claimed: Mutex<HashSet<Arc<str>>>,
    /// The names user ids were last seen under, for direct messages' other party.
    names: Mutex<HashMap<String, String>>,
    /// Each room whose access narrowed, told to the live connections.
    narrowings: broadcast::Sender<Arc<str>>,
    /// Tells the other nodes of a cluster.
    pub(super) announcer: Announcer,
}

impl Access {
    /// `--auth off`: only the direct messages' names are refused.
    pub fn off(directory: Arc<dyn Directory>) -> Access {
        Access::new(directory, false, 0, HashMap::new())
    }

    /// `--auth token`: the private rooms read from the directory.
    pub async fn load(
        directory: Arc<dyn Directory>,
        max_private: usize,
    ) -> Result<Access, StoreError> {
        let rooms = directory.private_rooms().await?;
        let private = rooms
            .into_iter()
            .map(|p| {
                let rule = Private {
                    owner: p.owner,
                    members: p.members.into_iter().collect(),
                };
                (Arc::from(p.room), Arc::new(rule))
            })
            .collect();
        Ok(Access::new(directory, true, max_private, private))
    }

    fn new(
        directory: Arc<dyn Directory>,
        enabled: bool,
        max_private: usize,
        private: HashMap<Arc<str>, Arc<Private>>,
    ) -> Access {
        Access {
            directory,
            enabled,
            max_private,
            private: RwLock::new(private),
            claimed: Mutex::default(),
            names: Mutex::default(),
            narrowings: broadcast::channel(256).0,
            announcer: Announcer::default(),
        }
    }

    /// Reads one room's access again (another node changed it); its connections check
    /// whether they may stay.
    pub async fn reload_room(&self, room: &str) -> Result<(), StoreError> {
        let access = self.directory.room_access(room).await?;
        if access.private {
            let members = self.directory.members(room).await?;
            let rule = Private {
                owner: access.owner,
                members: members.into_iter().collect(),
            };
            self.write().insert(Arc::from(room), Arc::new(rule));
        } else {
            self.write().remove(room);
        }
        self.narrow(room);
        Ok(())
    }

    /// Reads every private room again (another node changed many, or notices were missed).
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        let rooms = self.directory.private_rooms().await?;
        let private: HashMap<Arc<str>, Arc<Private>> = rooms
            .into_iter()
            .map(|p| {
                let rule = Private {
                    owner: p.owner,
                    members: p.members.into_iter().collect(),
                };
                (Arc::from(p.room), Arc::new(rule))
            })
            .collect();
        let rooms: Vec<Arc<str>> = private.keys().cloned().collect();
        *self.write() = private;
        for room in rooms {
            self.narrow(&room);
        }
        Ok(())
    }

    /// Whether `who` (`None` with `--auth off`) may use `room`: read it, join it, resume into
    /// it, post to it, see it listed. No store access.
    pub fn check(&self, who: Option<&Identity>, room: &str) -> Result<(), Denied> {
        let Some(who) = who else {
            return match is_dm_room(room) {
                true => Err(Denied::DmWithoutAuth(room.to_owned())),
                false => Ok(()),
            };
        };
        who.may_enter(room).map_err(Denied::Claim)?;
        let private = self.read().get(room).cloned();
        match private {
            Some(rule) if !rule.lets_in(&who.uid) => Err(Denied::Private(room.to_owned())),
            // A direct message nobody opened has no members yet.
            None if is_dm_room(room) => Err(Denied::Private(room.to_owned())),
            _ => Ok(()),
        }
    }

    /// [`Access::check`] for a door that creates the room (a post, a join, a stream): the
    /// first user with a token to come into a room nobody owns becomes its owner (recorded
    /// in the background; no wait).
    pub fn enter(&self, who: Option<&Identity>, room: &str) -> Result<(), Denied> {
        self.check(who, room)?;
        let Some(who) = who else { return Ok(()) };
        if room == GENERAL || is_dm_room(room) {
            if is_dm_room(room) {
                self.remember_name(who);
            }
            return Ok(());
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if claimed.contains(room) {
            return Ok(());
        }
        if claimed.len() >= REMEMBERED {
            claimed.clear();
        }
        claimed.insert(Arc::from(room));
        drop(claimed);
        let (directory, room, uid) = (self.directory.clone(), room.to_owned(), who.uid.clone());
        tokio::spawn(async move {
            match directory.claim_room(&room, &uid).await {
                Ok(owner) if owner == uid => {
                    if let Err(e) = directory.add_member(&room, &uid).await {
                        tracing::warn!(error = %e, room, "cannot record a room's owner as member");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, room, "cannot record a room's owner"),
            }
        });
        Ok(())
    }

    /// Rooms whose access narrowed, as they happen (a connection in one of them checks
    /// whether it may stay). A lagging receiver should check every room it is in.
    pub fn narrowed(&self) -> broadcast::Receiver<Arc<str>> {
        self.narrowings.subscribe()
    }

    /// A room's settings, as its owner (or an admin) sees them.
    pub async fn settings(&self, room: &str) -> Result<RoomSettings, ApiError> {
        let access = self.directory.room_access(room).await?;
        let members = self.directory.members(room).await?;
        Ok(RoomSettings {
            room: room.to_owned(),
            private: access.private || is_dm_room(room),
            owner: access.owner,
            members,
        })
    }

    /// `PUT /rooms/{room}` `{"private"}`: by its owner (the caller becomes it if the room has
    /// none) or an admin. Making it private makes the owner a member and takes every other
    /// connection out of it.
    pub async fn set_private(
        &self,
        who: &Identity,
        room: &str,
        private: bool,
    ) -> Result<RoomSettings, ApiError> {
        self.may_manage(who, room).await?;
        if private {
            let held = self.read();
            if !held.contains_key(room) && held.len() >= self.max_private {
                return Err(self.too_many());
            }
        }
        let owner = self.directory.room_access(room).await?.owner;
        if private {
            if let Some(owner) = &owner {
                self.directory.add_member(room, owner).await?;
            }
        }
        self.directory.set_private(room, private).await?;
        if private {
            let members = self.directory.members(room).await?;
            let rule = Private {
                owner,
                members: members.into_iter().collect(),
            };
            self.write().insert(Arc::from(room), Arc::new(rule));
            self.narrow(room);
        } else {
            self.write().remove(room);
        }
        self.announce(room);
        self.settings(room).await
    }

    /// `POST /rooms/{room}/members/{uid}`: by the owner or an admin.
    pub async fn add_member(
        &self,
        who: &Identity,
        room: &str,
        uid: &str,
    ) -> Result<RoomSettings, ApiError> {
        check_uid(uid)?;
        self.may_manage(who, room).await?;
        self.directory.add_member(room, uid).await?;
        self.edit(room, |rule| {
            rule.members.insert(uid.to_owned());
        });
        self.announce(room);
        self.settings(room).await
    }

    /// `DELETE /rooms/{room}/members/{uid}`: by the owner or an admin. A removed member's
    /// connections leave the room if it is private.
    pub async fn remove_member(
        &self,
        who: &Identity,
        room: &str,
        uid: &str,
    ) -> Result<RoomSettings, ApiError> {
        self.may_manage(who, room).await?;
        self.directory.remove_member(room, uid).await?;
        if self.edit(room, |rule| {
            rule.members.remove(uid);
        }) {
            self.narrow(room);
        }
        self.announce(room);
        self.settings(room).await
    }

    /// Drops `uid` from the members of every private room held in memory (an admin deleted
    /// the user; the directory's memberships go separately, see
    /// [`Directory::remove_memberships`]). Direct messages keep their two users, and rooms it
    /// owns keep it as their owner. Returns how many rooms it left.
    pub fn forget_user(&self, uid: &str) -> usize {
        let mut private = self.write();
        let mut left = 0;
        for (room, rule) in private.iter_mut() {
            if rule.members.contains(uid) && !is_dm_room(room) {
                Arc::make_mut(rule).members.remove(uid);
                left += 1;
            }
        }
        drop(private);
        self.announcer.send(Notice::Rooms);
        left
    }

    /// `POST /me/dm/{uid}`: the direct message of `who` with `uid`, opened if it was not.
    pub async fn open_dm(&self, who: &Identity, uid: &str) -> Result<DmOpened, ApiError> {
        check_uid(uid)?;
        if uid == who.uid {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a direct message is with someone else: name another user id",
            ));
        }
        let room = dm_room(&who.uid, uid);
        who.may_enter(&room)
            .map_err(|e| ApiError::from(Denied::Claim(e)))?;
        self.remember_name(who);
        let (existing, held) = {
            let held = self.read();
            (held.get(room.as_str()).cloned(), held.len())
        };
        if let Some(rule) = existing {
            // Two other ids whose sorted, newline-joined pair is the same text (ids may hold
            // newlines) name the same room: it stays the first pair's.
            if !rule.lets_in(&who.uid) || !rule.lets_in(uid) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("the room {room:?} belongs to another pair of users"),
                ));
            }
        } else {
            if held >= self.max_private {
                return Err(self.too_many());
            }
            let directory = &self.directory;
            directory.set_private(&room, true).await?;
            directory.add_member(&room, &who.uid).await?;
            directory.add_member(&room, uid).await?;
            let rule = Private {
                owner: None,
                members: [who.uid.clone(), uid.to_owned()].into(),
            };
            self.write()
                .insert(Arc::from(room.as_str()), Arc::new(rule));
            self.announce(&room);
        }
        Ok(DmOpened {
            room,
            with: self.party(uid).await?,
        })
    }

    /// `GET /me/rooms`: the rooms and direct messages `who` belongs to (a member, or the
    /// owner), with the other party of each direct message.
    pub async fn rooms_of(&self, who: &Identity) -> Result<Vec<MyRoom>, ApiError> {
        let rooms = self.directory.rooms_of(&who.uid).await?;
        let mut mine = Vec::with_capacity(rooms.len());
        for room in rooms {
            if who.may_enter(&room).is_err() {
                continue;
            }
            let private = self.read().get(room.as_str()).cloned();
            let with = match (&private, is_dm_room(&room)) {
                (Some(rule), true) => {
                    let other = rule.members.iter().find(|m| **m != who.uid);
                    match other {
                        Some(other) => Some(self.party(other).await?),
                        None => continue,
                    }
                }
                _ => None,
            };
            let owner = match &private {
                Some(rule) => rule.owner.as_deref() == Some(&who.uid),
                None => {
                    let access = self.directory.room_access(&room).await?;
                    access.owner.as_deref() == Some(&who.uid)
                }
            };
            mine.push(MyRoom {
                room,
                private: private.is_some(),
                owner,
                with,
            });
        }
        Ok(mine)
    }

    /// Whether `who` may change `room`'s settings: its owner (claimed now if it has none) or
    /// an admin; never `general` or a direct message.
    async fn may_manage(&self, who: &Identity, room: &str) -> Result<(), ApiError> {
        rtchat_core::check_room_name(room)?;
        if room == GENERAL {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "general is everyone's room: it has no owner and stays public",
            )
            .with_code("room_fixed"));
        }
        if is_dm_room(room) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a direct message's members are its two users, and it stays private",
            )
            .with_code("room_fixed"));
        }
        who.may_enter(room)
            .map_err(|e| ApiError::from(Denied::Claim(e)))?;
        let owner = self.directory.claim_room(room, &who.uid).await?;
        if owner != who.uid && !who.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("only the room's owner ({owner:?}) or an admin may change it"),
            )
            .with_code("not_owner"));
        }
        Ok(())
    }

    /// Changes a private room's rule in memory (after the directory); false when the room is
    /// not private.
    fn edit(&self, room: &str, change: impl FnOnce(&mut Private)) -> bool {
        let mut private = self.write();
        match private.get_mut(room) {
            Some(rule) => {
                change(Arc::make_mut(rule));
                true
            }
            None => false,
        }
    }

    /// Tells the other nodes that `room`'s access changed.
    fn announce(&self, room: &str) {
        self.announcer.send(Notice::Room {
            room: room.to_owned(),
        });
    }

    /// Tells the live connections that `room`'s access narrowed.
    fn narrow(&self, room: &str) {
        // No receiver: no live connection.
        let _ = self.narrowings.send(Arc::from(room));
    }

    fn too_many(&self) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this server already holds its maximum of {} private rooms and direct messages (--max-private-rooms)",
                self.max_private
            ),
        )
        .with_code("too_many_private_rooms")
    }

    fn remember_name(&self, who: &Identity) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.get(&who.uid) != Some(&who.name) {
            if names.len() >= REMEMBERED {
                names.clear();
            }
            names.insert(who.uid.clone(), who.name.clone());
        }
    }

    /// A direct message's other party: their account's name, else the name their token last
    /// showed here.
    async fn party(&self, uid: &str) -> Result<DmParty, ApiError> {
        let account = self.directory.account(uid).await?;
        let name = account.map(|a| a.name).or_else(|| {
            let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            names.get(uid).cloned()
        });
        Ok(DmParty {
            uid: uid.to_owned(),
            name,
        })
    }

    /// Whether rooms can be private at all (`--auth token`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Private>>> {
        self.private.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Private>>> {
        self.private.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The longest user id a member or a direct message may name, in bytes.
const MAX_UID: usize = 256;

fn check_uid(uid: &str) -> Result<(), ApiError> {
    if uid.is_empty() || uid.len() > MAX_UID {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("a user id is 1 to {MAX_UID} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dm_room_is_the_same_whoever_asks_and_differs_per_pair() {
        let ab = dm_room("alice", "bob");
        assert_eq!(ab, dm_room("bob", "alice"));
        assert!(is_dm_room(&ab), "{ab}");
        assert_ne!(ab, dm_room("alice", "carol"));
        // `printf 'alice\nbob' | sha256sum | cut -c1-16`
        assert_eq!(ab, "dm:1cb15457d1ddab60");
    }
}
