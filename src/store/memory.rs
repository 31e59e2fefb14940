//! The embedded backend: the log, presence and logouts of a room that lives in this process
//! alone. The log gives ids the way a Redis stream does (`ms-seq`, only growing) under a
//! lock, and hands each record to this instance's follower in that same order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use tokio::sync::Notify;

use super::{
    Backend, Log, LogEvent, LogSource, LogoutList, LogoutSource, OnlineRows, Post,
    PresenceRegistry, PresenceSettings, Record, Snapshot, StoreError, FOLD_PERIOD, FOLD_PERIOD_MAX,
    POST_KEY_TTL,
};
use crate::auth::LoginId;
use crate::config::RoomSettings;
use crate::domain::{Crowd, Epoch, Kind, MessageId, Position, PostKey, Timestamp, UserName};
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
            joins: Fold::new(),
            leaves: Fold::new(),
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
    fn push(&self, entry: impl FnOnce(MessageId) -> Record) -> Record {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let position = tail.head.next(Timestamp::now().unix_millis());
        tail.head = position;
        let record = entry(MessageId::new(&tail.epoch, position));
        tail.unread.push(record.clone());
        drop(tail);
        self.appended.notify_one();
        record
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
        let key = post.key.map(|key| (*post.login, key.clone()));
        if let Some(first) = key.as_ref().and_then(|key| keys.find(key, now)) {
            return Box::pin(std::future::ready(Ok(first)));
        }
        let login = post.login.as_str();
        let charged =
            RateLimiter::check_both((&log.rate, &login), (&log.address_rate, post.address), now);
        let result = charged
            .map(|()| {
                let record = log.push(|id| {
                    Record::post(id, post.from.clone(), post.body.clone())
                        .with_ticket(Some(post.ticket))
                });
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
/// loop makes at most one join/leave pair per grace; a logout leaves at once. Notices are
/// folded (see [`Fold`]), and the list shows what they have said: a login is listed from
/// its join notice to its leave notice, so a page that fetched the list and then applies
/// the notices after it counts each login once.
struct MemoryPresence {
    log: MemoryLog,
    settings: PresenceSettings,
    /// Every login online or with its leave still to be announced.
    online: HashMap<LoginId, Present>,
    arrivals: u64,
    joins: Fold,
    leaves: Fold,
}

struct Present {
    name: UserName,
    /// (since, in Unix ms; arrival number): its place in the list, oldest first.
    place: (u64, u64),
    /// Set while none of its connections is left: it leaves then, unless it comes back.
    leave_at: Option<tokio::time::Instant>,
    /// Its join has been announced (it is in the list).
    listed: bool,
    /// It has left; its leave is still to be announced.
    leaving: bool,
}

/// The transitions of one kind not yet in the room: at most one entry per period, holding
/// every login that came (or went) since the last one. A lone arrival after a quiet period
/// is its own notice at once; while a crowd keeps coming the period doubles, up to
/// [`FOLD_PERIOD_MAX`].
struct Fold {
    logins: Vec<LoginId>,
    /// When the last notice of this kind was added.
    last: Option<tokio::time::Instant>,
    period: Duration,
}

impl Fold {
    fn new() -> Self {
        Self {
            logins: Vec::new(),
            last: None,
            period: FOLD_PERIOD,
        }
    }

    fn is_due(&self, at: tokio::time::Instant) -> bool {
        self.last.is_none_or(|last| at >= last + self.period)
    }

    /// The logins of the notice due at `at`: everyone added since the last one, if that
    /// was at least a period ago.
    fn take_due(&mut self, at: tokio::time::Instant) -> Option<Vec<LoginId>> {
        if !self.is_due(at) {
            return None;
        }
        if self.logins.is_empty() {
            // A quiet period: the next arrival is news at once.
            self.period = FOLD_PERIOD;
            return None;
        }
        self.period = if self.logins.len() > 1 {
            (self.period * 2).min(FOLD_PERIOD_MAX)
        } else {
            FOLD_PERIOD
        };
        self.last = Some(at);
        Some(std::mem::take(&mut self.logins))
    }
}

impl MemoryPresence {
    /// Adds the notices due at `at` to the room, and lists (or unlists) their logins.
    fn announce(&mut self, at: tokio::time::Instant) {
        if let Some(logins) = self.joins.take_due(at) {
            let mut names = Vec::new();
            for login in &logins {
                let Some(present) = self.online.get_mut(login) else {
                    continue;
                };
                present.listed = true;
                if names.len() < Crowd::MAX_NAMES {
                    names.push(present.name.clone());
                }
            }
            self.add_notice(Kind::Join, names, logins.len());
        }
        // A leave waits for its login's join (folded and not due yet): said the other way
        // round, a page would list the login again.
        let joining =
            |login: &LoginId| (self.online.get(login)).is_some_and(|p| p.leaving && !p.listed);
        if self.leaves.is_due(at) && self.leaves.logins.iter().any(joining) {
            return;
        }
        if let Some(logins) = self.leaves.take_due(at) {
            let (mut names, mut count) = (Vec::new(), 0);
            for login in &logins {
                // Only what still waits: a leave taken back is skipped here.
                if !self.online.get(login).is_some_and(|p| p.leaving) {
                    continue;
                }
                let Some(present) = self.online.remove(login) else {
                    continue;
                };
                count += 1;
                if names.len() < Crowd::MAX_NAMES {
                    names.push(present.name);
                }
            }
            self.add_notice(Kind::Leave, names, count);
        }
    }

    fn add_notice(&self, kind: Kind, names: Vec<UserName>, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if let Some(crowd) = Crowd::new(names, count) {
            self.log.0.push(|id| Record::notice(id, kind, crowd));
        }
    }

    fn leave(&mut self, login: &LoginId) {
        if !self.settings.notices {
            self.online.remove(login);
            return;
        }
        if let Some(present) = self.online.get_mut(login) {
            if !present.leaving {
                present.leaving = true;
                present.leave_at = None;
                self.leaves.logins.push(*login);
            }
        }
    }
}

impl PresenceRegistry for MemoryPresence {
    fn connected(&mut self, logins: Vec<(LoginId, UserName)>) -> BoxFuture<'_, ()> {
        for (login, name) in logins {
            if let Some(present) = self.online.get_mut(&login) {
                // Back within the grace (a reload, a tab, a switch), or before its leave
                // was announced: nobody was told it left. Nothing to say. A leave taken
                // back stays in the fold (removing it is a scan) and is skipped there.
                present.leave_at = None;
                present.leaving = false;
                continue;
            }
            self.arrivals += 1;
            let place = (Timestamp::now().unix_millis(), self.arrivals);
            let listed = !self.settings.notices;
            if !listed {
                self.joins.logins.push(login);
            }
            self.online.insert(
                login,
                Present {
                    name,
                    place,
                    leave_at: None,
                    listed,
                    leaving: false,
                },
            );
        }
        self.announce(tokio::time::Instant::now());
        Box::pin(std::future::ready(()))
    }

    fn gone(&mut self, login: &LoginId) {
        if let Some(present) = self.online.get_mut(login) {
            if !present.leaving {
                present.leave_at = Some(tokio::time::Instant::now() + self.settings.leave_grace);
            }
        }
    }

    fn logged_out(&mut self, login: LoginId) -> BoxFuture<'_, ()> {
        self.leave(&login);
        self.announce(tokio::time::Instant::now());
        Box::pin(std::future::ready(()))
    }

    fn tick<'a>(
        &'a mut self,
        at: tokio::time::Instant,
        _here: &'a [(LoginId, UserName)],
    ) -> BoxFuture<'a, ()> {
        let now = tokio::time::Instant::now();
        let due: Vec<LoginId> = self
            .online
            .iter()
            .filter(|(_, p)| p.leave_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for login in due {
            self.leave(&login);
        }
        self.announce(at);
        Box::pin(std::future::ready(()))
    }

    fn reads_here(&self) -> bool {
        // One instance: every login it has was told to it through `connected`.
        false
    }

    fn list(&mut self, limit: usize) -> BoxFuture<'_, Option<OnlineRows>> {
        // The oldest `limit` listed logins, found when asked (one pass over who is online,
        // a page's worth sorted) rather than kept in order: a tree entry per login cost
        // every idle connection about 60 bytes, and a list is asked once per page load.
        let mut listed: Vec<(&(u64, u64), &UserName)> = (self.online.values())
            .filter(|present| present.listed)
            .map(|present| (&present.place, &present.name))
            .collect();
        let count = listed.len();
        if count > limit {
            listed.select_nth_unstable_by_key(limit, |(place, _)| **place);
            listed.truncate(limit);
        }
        listed.sort_unstable_by_key(|(place, _)| **place);
        let rows = (listed.into_iter())
            .map(|((since, _), name)| (*since, name.clone()))
            .collect();
        Box::pin(std::future::ready(Some((count, rows))))
    }
}
