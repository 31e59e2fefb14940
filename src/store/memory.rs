//! The embedded backend: the log, presence and logouts of a room that lives in this process
//! alone. The log gives ids the way a Redis stream does (`ms-seq`, only growing) under a
//! lock, and hands each record to this instance's follower in that same order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_core::future::BoxFuture;
use tokio::sync::Notify;

use super::{
    Backend, Log, LogEvent, LogSource, LogoutList, LogoutSource, Post, PresenceRegistry,
    PresenceSettings, Record, Snapshot, StoreError, POST_KEY_TTL,
};
use crate::auth::LoginId;
use crate::config::RoomSettings;
use crate::domain::{Epoch, Kind, MessageBody, MessageId, Position, PostKey, Timestamp, UserName};
use crate::metrics::Metrics;
use crate::rate::RateLimiter;

pub(super) fn open(
    room: &RoomSettings,
    presence: Option<&PresenceSettings>,
    metrics: &Metrics,
) -> Backend {
    // Always reachable.
    metrics.store_up.store(1, Relaxed);
    let epoch = Epoch::random();
    let log = MemoryLog(Arc::new(LogState {
        tail: Mutex::new(Tail {
            epoch: epoch.clone(),
            head: Position::ORIGIN,
            unread: Vec::new(),
        }),
        appended: Notify::new(),
        keys: Mutex::new(PostKeys::default()),
        rate: RateLimiter::new(room.rate_burst, room.rate_per_sec),
        address_rate: RateLimiter::new(room.address_burst, room.address_per_sec),
    }));
    let presence = presence.map(|settings| {
        Box::new(MemoryPresence {
            log: log.clone(),
            settings: settings.clone(),
            online: HashMap::new(),
            arrivals: 0,
        }) as Box<dyn PresenceRegistry>
    });
    Backend {
        log: Arc::new(log),
        start: Snapshot {
            epoch,
            floor: Position::ORIGIN,
            records: Vec::new(),
        },
        presence,
        logouts: Arc::new(MemoryLogouts),
        ended: Vec::new(),
    }
}

/// The log; clones share it (presence appends its notices to the same one).
#[derive(Clone)]
struct MemoryLog(Arc<LogState>);

struct LogState {
    tail: Mutex<Tail>,
    /// Woken after each append, for the follower.
    appended: Notify,
    /// Posts' keys, for [`POST_KEY_TTL`]. Held from the lookup to the append, so a repeat
    /// racing the first post waits for it and finds it.
    keys: Mutex<PostKeys>,
    /// Per login.
    rate: RateLimiter,
    /// Per client address, across its logins.
    address_rate: RateLimiter,
}

/// The newest end of the log.
struct Tail {
    epoch: Epoch,
    head: Position,
    /// Appended and not yet taken by the follower, oldest first.
    unread: Vec<Record>,
}

impl LogState {
    /// Gives the entry the next position and queues it for the follower, in one step, so
    /// the follower sees entries in the order of their ids.
    fn push(&self, from: UserName, body: MessageBody, kind: Kind) -> MessageId {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let position = tail.head.next(Timestamp::now().unix_millis());
        tail.head = position;
        let id = MessageId::new(&tail.epoch, position);
        tail.unread.push(Record {
            id: id.clone(),
            from,
            body,
            kind,
        });
        drop(tail);
        self.appended.notify_one();
        id
    }

    fn take_unread(&self) -> Vec<Record> {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut tail.unread)
    }
}

/// The keys of recent posts, per login, each with what its post stored; forgotten
/// [`POST_KEY_TTL`] after the post.
#[derive(Default)]
struct PostKeys {
    stored: HashMap<(LoginId, PostKey), Record>,
    /// The same keys, oldest first, with when each expires.
    expiry: VecDeque<(Instant, (LoginId, PostKey))>,
}

impl PostKeys {
    fn find(&mut self, key: &(LoginId, PostKey), now: Instant) -> Option<Record> {
        while let Some((_, old)) = self.expiry.front().filter(|(at, _)| *at <= now) {
            self.stored.remove(old);
            self.expiry.pop_front();
        }
        self.stored.get(key).cloned()
    }

    fn remember(&mut self, key: (LoginId, PostKey), record: Record, now: Instant) {
        self.expiry.push_back((now + POST_KEY_TTL, key.clone()));
        self.stored.insert(key, record);
    }
}

impl Log for MemoryLog {
    fn append<'a>(&'a self, post: Post<'a>) -> BoxFuture<'a, Result<Record, StoreError>> {
        let log = &self.0;
        let now = Instant::now();
        let mut keys = log.keys.lock().unwrap_or_else(|e| e.into_inner());
        let key = post.key.map(|key| (post.login.clone(), key.clone()));
        if let Some(first) = key.as_ref().and_then(|key| keys.find(key, now)) {
            return Box::pin(std::future::ready(Ok(first)));
        }
        let charged = RateLimiter::check_both(
            (&log.rate, post.login.as_str()),
            (&log.address_rate, post.address),
            now,
        );
        let result = charged
            .map(|()| {
                let id = log.push(post.from.clone(), post.body.clone(), Kind::Message);
                let record = Record {
                    id,
                    from: post.from.clone(),
                    body: post.body.clone(),
                    kind: Kind::Message,
                };
                if let Some(key) = key {
                    keys.remember(key, record.clone(), now);
                }
                record
            })
            .map_err(StoreError::RateLimited);
        Box::pin(std::future::ready(result))
    }

    fn follow(&self) -> Box<dyn LogSource> {
        Box::new(MemoryFollower(self.0.clone()))
    }

    fn has_reached<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>> {
        let tail = self.0.tail.lock().unwrap_or_else(|e| e.into_inner());
        let reached = *id.epoch() == tail.epoch && id.position() <= tail.head;
        Box::pin(std::future::ready(Ok(reached)))
    }
}

struct MemoryFollower(Arc<LogState>);

impl LogSource for MemoryFollower {
    fn next(&mut self) -> BoxFuture<'_, Option<LogEvent>> {
        Box::pin(async move {
            loop {
                let unread = self.0.take_unread();
                if !unread.is_empty() {
                    return Some(LogEvent::Appended(unread));
                }
                // `notify_one` keeps a permit when nobody waits, so an append between
                // the take and this wait is not missed.
                self.0.appended.notified().await;
            }
        })
    }
}

/// One instance: logouts need recording nowhere else.
struct MemoryLogouts;

impl LogoutList for MemoryLogouts {
    fn record<'a>(&'a self, _: &'a LoginId, _: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn follow(&self) -> Option<Box<dyn LogoutSource>> {
        None
    }
}

/// Presence of one instance: a login that comes online joins at once, unless it is still
/// within its leave grace (a reload, a second tab, a transport switch), when nothing is
/// said. It leaves once it has been gone for the whole grace, so a login flapping in a
/// loop makes at most one join/leave pair per grace.
struct MemoryPresence {
    log: MemoryLog,
    settings: PresenceSettings,
    online: HashMap<LoginId, Present>,
    arrivals: u64,
}

struct Present {
    name: UserName,
    since_ms: u64,
    /// Arrival order, for logins that came in the same millisecond.
    arrival: u64,
    /// Set while none of its connections is left: it leaves then, unless it comes back.
    leave_at: Option<tokio::time::Instant>,
}

impl MemoryPresence {
    fn notice(&self, kind: Kind, name: UserName) {
        if !self.settings.notices {
            return;
        }
        let Some(body) = kind
            .notice_text()
            .and_then(|t| MessageBody::parse(t, usize::MAX).ok())
        else {
            return;
        };
        self.log.0.push(name, body, kind);
    }
}

impl PresenceRegistry for MemoryPresence {
    fn connected(&mut self, login: LoginId, name: UserName) -> BoxFuture<'_, ()> {
        if let Some(present) = self.online.get_mut(&login) {
            // Back within the grace: a reload, a tab, a switch. Nothing to say.
            present.leave_at = None;
        } else {
            self.arrivals += 1;
            self.online.insert(
                login,
                Present {
                    name: name.clone(),
                    since_ms: Timestamp::now().unix_millis(),
                    arrival: self.arrivals,
                    leave_at: None,
                },
            );
            self.notice(Kind::Join, name);
        }
        Box::pin(std::future::ready(()))
    }

    fn gone(&mut self, login: &LoginId) {
        if let Some(present) = self.online.get_mut(login) {
            present.leave_at = Some(tokio::time::Instant::now() + self.settings.leave_grace);
        }
    }

    fn tick<'a>(&'a mut self, _here: &'a [(LoginId, UserName)]) -> BoxFuture<'a, ()> {
        let now = tokio::time::Instant::now();
        let due: Vec<LoginId> = self
            .online
            .iter()
            .filter(|(_, p)| p.leave_at.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for login in due {
            if let Some(present) = self.online.remove(&login) {
                self.notice(Kind::Leave, present.name);
            }
        }
        Box::pin(std::future::ready(()))
    }

    fn list(&mut self) -> BoxFuture<'_, Vec<(u64, UserName)>> {
        let mut present: Vec<&Present> = self.online.values().collect();
        present.sort_by_key(|p| (p.since_ms, p.arrival));
        let rows = present
            .into_iter()
            .map(|p| (p.since_ms, p.name.clone()))
            .collect();
        Box::pin(std::future::ready(rows))
    }
}
