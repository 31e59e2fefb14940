//! Logouts kept in Redis for every instance and for restarts: `P:revoked`, a sorted set of
//! ended logins scored by when their cookies expire, and `P:revocations`, a short stream
//! that announces each one to the other instances' followers.

use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, RedisError};

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
}

impl RedisLogouts {
    pub(super) fn new(shared: Arc<Shared>, writer: ConnectionManager) -> Self {
        Self { shared, writer }
    }

    async fn store(&self, id: &LoginId, until: u64) -> Result<(), StoreError> {
        let keys = &self.shared.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(&keys.revoked, id.as_str(), until)
            .ignore()
            .zrembyscore(&keys.revoked, "-inf", unix_now())
            .ignore()
            .cmd("XADD")
            .arg(&keys.revocations)
            .arg("MAXLEN")
            .arg("~")
            .arg(ANNOUNCEMENTS_KEPT)
            .arg("*")
            .arg("l")
            .arg(id.as_str())
            .arg("u")
            .arg(until)
            .ignore();
        let mut writer = self.writer.clone();
        match tokio::time::timeout(WRITE_DEADLINE, pipe.query_async::<()>(&mut writer)).await {
            Ok(Ok(())) => Ok(()),
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

/// Every login still ended, and the announcement to read on from.
pub(super) async fn load(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> Result<(Vec<(LoginId, u64)>, String), RedisError> {
    let keys = &shared.keys;
    // The position first: whatever is announced after it is read by the follower,
    // whatever came before is in the set.
    let newest: StreamRangeReply = conn.xrevrange_count(&keys.revocations, "+", "-", 1).await?;
    let after = newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
    let all: Vec<(String, u64)> = conn
        .zrangebyscore_withscores(&keys.revoked, unix_now() + 1, "+inf")
        .await?;
    let ended = all
        .into_iter()
        .filter_map(|(id, until)| Some((LoginId::parse(&id)?, until)))
        .collect();
    Ok((ended, after))
}

/// Where this instance stands in the announcements.
pub(super) struct LogoutFollower {
    shared: Arc<Shared>,
    /// `None` until the set has been loaded once by this follower.
    last: Option<String>,
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
            let (ended, after) = load(&self.shared, conn).await?;
            self.last = Some(after);
            Ok(Some(ended))
        })
    }

    fn read(&mut self, entries: &[StreamId]) -> Step<Self::Event> {
        let mut ended = Vec::new();
        for entry in entries {
            self.last = Some(entry.id.clone());
            let id = entry.get::<String>("l").and_then(|l| LoginId::parse(&l));
            if let (Some(id), Some(until)) = (id, entry.get::<u64>("u")) {
                ended.push((id, until));
            }
        }
        Step::Yield(ended)
    }
}
