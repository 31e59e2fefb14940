//! Following a Redis stream: the one loop that reads on after the last id with a blocking
//! `XREAD`, and when Redis goes away reconnects with backoff and has its follower catch up
//! before it reads again. The log and the logout list both follow their streams through it;
//! what differs (how to catch up, what an entry means) is their [`Follower`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisError};

use super::Shared;

/// How long one blocking read waits for new entries before it asks again.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per read.
const READ_COUNT: usize = 512;
/// Reconnect delays: doubling from the first, at most the cap, each with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What a stream's entries mean to the one following it.
pub(super) trait Follower: Send {
    type Event: Send;

    /// The id to read after.
    fn last(&self) -> String;

    /// After (re)connecting, before reading on: brings the follower up to date with the
    /// stream, which may have moved on (or lost its data) meanwhile. Must change nothing
    /// unless it succeeds: it may be dropped at any await.
    fn catch_up<'a>(
        &'a mut self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Option<Self::Event>, RedisError>>;

    /// Entries read after [`Follower::last`], oldest first.
    fn read(&mut self, entries: &[StreamId]) -> Step<Self::Event>;
}

/// What a follower makes of the entries it was given.
pub(super) enum Step<E> {
    Yield(E),
    /// Nothing for the caller; read on.
    Nothing,
    /// They do not follow from what it holds: catch up first.
    CatchUp,
}

/// A stream followed for one instance.
pub(super) struct Stream<F> {
    shared: Arc<Shared>,
    key: String,
    follower: F,
    /// The reading connection; `None` after a failure, until a reconnect.
    conn: Option<MultiplexedConnection>,
    caught_up: bool,
    attempts: u32,
    /// Whether this stream reports the store's state (`/healthz`, the outage log line):
    /// the log's does, so one outage is one line.
    reports: bool,
    outage: Option<Instant>,
}

impl<F: Follower> Stream<F> {
    pub(super) fn new(shared: Arc<Shared>, key: String, follower: F, reports: bool) -> Self {
        Self {
            shared,
            key,
            follower,
            conn: None,
            caught_up: false,
            attempts: 0,
            reports,
            outage: None,
        }
    }

    /// The next event, however long Redis is away. Safe to drop at any await: the state
    /// changes only once a step has succeeded.
    pub(super) async fn next(&mut self) -> F::Event {
        let options = StreamReadOptions::default()
            .block(READ_BLOCK.as_millis() as usize)
            .count(READ_COUNT);
        loop {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => match self.shared.reader_connection().await {
                    Ok(conn) => {
                        self.caught_up = false;
                        self.conn.insert(conn)
                    }
                    Err(error) => {
                        self.failed(error).await;
                        continue;
                    }
                },
            };
            if !self.caught_up {
                match self.follower.catch_up(conn).await {
                    Ok(event) => {
                        self.caught_up = true;
                        self.reachable();
                        if let Some(event) = event {
                            return event;
                        }
                    }
                    Err(error) => {
                        self.failed(error).await;
                        continue;
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            let after = [self.follower.last()];
            let reply: Result<StreamReadReply, RedisError> =
                conn.xread_options(&[&self.key], &after, &options).await;
            match reply {
                Ok(reply) => {
                    let entries: Vec<StreamId> =
                        reply.keys.into_iter().flat_map(|k| k.ids).collect();
                    if entries.is_empty() {
                        continue;
                    }
                    match self.follower.read(&entries) {
                        Step::Yield(event) => return event,
                        Step::Nothing => {}
                        Step::CatchUp => self.caught_up = false,
                    }
                }
                Err(error) => self.failed(error).await,
            }
        }
    }

    fn reachable(&mut self) {
        self.attempts = 0;
        if !self.reports {
            return;
        }
        if let Some(since) = self.outage.take() {
            tracing::info!(
                down_secs = since.elapsed().as_secs_f64(),
                "Redis reachable again; following the log"
            );
        }
        self.shared.set_following(true);
    }

    /// Drops the connection and waits before the next attempt. An outage is logged once
    /// however it began; the retries stay quiet.
    async fn failed(&mut self, error: RedisError) {
        self.conn = None;
        if self.reports {
            self.shared.set_following(false);
            if self.outage.is_none() {
                tracing::warn!(%error, "Redis unreachable; posts get 503 until it returns");
                self.outage = Some(Instant::now());
            }
            self.shared.metrics.store_reconnects.fetch_add(1, Relaxed);
        }
        tracing::debug!(%error, attempt = self.attempts, stream = %self.key, "Redis still unreachable");
        let delay = backoff(self.attempts);
        self.attempts += 1;
        tokio::time::sleep(delay).await;
    }
}

/// The delay before reconnect attempt `attempt`: doubling, capped, the upper half random,
/// so instances that lost Redis together do not all come back in the same instant.
pub(super) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_FIRST
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// A blocking read needs a response timeout longer than its block.
pub(super) fn reader_response_timeout() -> Duration {
    READ_BLOCK + Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        for attempt in 0..40 {
            let delay = backoff(attempt);
            let ceiling = BACKOFF_FIRST
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }
}
