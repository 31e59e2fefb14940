//! Logouts kept in Redis for every instance and for restarts: `P:revoked`, a sorted set of
//! ended logins scored by when their cookies expire, and `P:revocations`, a short stream
//! that announces each one to the other instances' followers, numbered (`n`, from the
//! counter `P:revocations:n`) so that a follower that lagged past the trimming notices the
//! gap and reloads the set instead of missing a logout for good (`logout.lua`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, RedisError, Script};

use super::stream::{Follower, Step, Stream};
use super::Shared;
use crate::auth::{unix_now, LoginId};
use crate::store::{LogoutList, LogoutSource, StoreError};

/// Announcements kept in `P:revocations`: enough for a follower's short outage; after a
/// longer one it reloads the set.
const ANNOUNCEMENTS_KEPT: usize = 1000;
/// How long recording a logout may take before the user is told to try again.
const WRITE_DEADLINE: Duration = Duration::from_secs(1);

pub(super) struct RedisLogouts {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    record: Script,
}

impl RedisLogouts {
    pub(super) fn new(shared: Arc<Shared>, writer: ConnectionManager) -> Self {
        Self {
            shared,
            writer,
            record: Script::new(include_str!("logout.lua")),
        }
    }

    async fn store(&self, id: &LoginId, until: u64) -> Result<(), StoreError> {
        let keys = &self.shared.keys;
        let mut invocation = self.record.prepare_invoke();
        invocation
            .key(&keys.revoked)
            .key(&keys.revocations)
            .key(&keys.revocations_count)
            .arg(&*id.as_str())
            .arg(until)
            .arg(unix_now())
            .arg(ANNOUNCEMENTS_KEPT);
        let mut writer = self.writer.clone();
        let call = invocation.invoke_async::<u64>(&mut writer);
        match tokio::time::timeout(WRITE_DEADLINE, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "logout not recorded in Redis");
                Err(StoreError::Unavailable)
            }
            Err(_) => Err(StoreError::Unavailable),
        }
    }
}

impl LogoutList for RedisLogouts {
    fn record<'a>(
        &'a self,
        login: &'a LoginId,
        until: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.store(login, until))
    }

    fn follow(&self) -> Option<Box<dyn LogoutSource>> {
        let follower = LogoutFollower {
            shared: self.shared.clone(),
            last: None,
            next: None,
        };
        let key = self.shared.keys.revocations.clone();
        Some(Box::new(Stream::new(
            self.shared.clone(),
            key,
            follower,
            false,
        )))
    }
}

impl LogoutSource for Stream<LogoutFollower> {
    fn next(&mut self) -> BoxFuture<'_, Vec<(LoginId, u64)>> {
        Box::pin(Stream::next(self))
    }
}

/// Where a follower stands in the announcements: the id to read after, and the number
/// the next one must carry (`None`: not known, nothing to check the next against).
pub(super) struct Position {
    pub(super) after: String,
    next: Option<u64>,
}

/// Every login still ended, and the announcement to read on from.
pub(super) async fn load(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> Result<(Vec<(LoginId, u64)>, Position), RedisError> {
    let keys = &shared.keys;
    // The position first: whatever is announced after it is read by the follower,
    // whatever came before is in the set.
    let newest: StreamRangeReply = conn.xrevrange_count(&keys.revocations, "+", "-", 1).await?;
    let position = Position {
        after: newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()),
        next: newest.ids.first().and_then(number).map(|n| n + 1),
    };
    let all: Vec<(String, u64)> = conn
        .zrangebyscore_withscores(&keys.revoked, unix_now() + 1, "+inf")
        .await?;
    let ended = all
        .into_iter()
        .filter_map(|(id, until)| Some((LoginId::parse(&id)?, until)))
        .collect();
    Ok((ended, position))
}

/// An announcement's number (older versions wrote none).
fn number(entry: &StreamId) -> Option<u64> {
    entry.get::<u64>("n")
}

/// Where this instance stands in the announcements.
pub(super) struct LogoutFollower {
    shared: Arc<Shared>,
    /// `None` until the set has been loaded once by this follower.
    last: Option<String>,
    /// The number the next announcement must carry, when known.
    next: Option<u64>,
}

impl Follower for LogoutFollower {
    type Event = Vec<(LoginId, u64)>;

    fn last(&self) -> String {
        self.last.clone().unwrap_or_else(|| "$".to_owned())
    }

    /// Announcements may have been trimmed while this instance was away: the whole set
    /// again (applying a login twice is harmless).
    fn catch_up<'a>(
        &'a mut self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Option<Self::Event>, RedisError>> {
        Box::pin(async move {
            let (ended, position) = load(&self.shared, conn).await?;
            // Not the first load: after an outage, a stall or a gap, every ended login again.
            if self.last.is_some() {
                self.shared.metrics.logout_reloads.fetch_add(1, Relaxed);
            }
            self.last = Some(position.after);
            self.next = position.next;
            Ok(Some(ended))
        })
    }

    /// A number missing before these entries: the stream was trimmed past this follower
    /// while it lagged (paused, swapped out, cut off), and a logout may be among what it
    /// lost: the whole set again, before anything else.
    fn read(&mut self, entries: &[StreamId]) -> Step<Self::Event> {
        if let (Some(next), Some(first)) = (self.next, entries.first().and_then(number)) {
            if first != next {
                tracing::warn!(
                    missed = first.saturating_sub(next),
                    "logout announcements trimmed before this instance read them; reloading the ended logins"
                );
                return Step::CatchUp;
            }
        }
        let mut ended = Vec::new();
        for entry in entries {
            self.last = Some(entry.id.clone());
            self.next = number(entry).map(|n| n + 1);
            let id = entry.get::<String>("l").and_then(|l| LoginId::parse(&l));
            if let (Some(id), Some(until)) = (id, entry.get::<u64>("u")) {
                ended.push((id, until));
            }
        }
        Step::Yield(ended)
    }
}
