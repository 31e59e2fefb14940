//! The room's log as a Redis stream: posts go in through one script (`append.lua`), and
//! each instance follows the stream (see `stream`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_core::future::BoxFuture;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{RedisError, Script};

use super::stream::{Follower, Step, Stream};
use super::{record, Shared};
use crate::config::RoomSettings;
use crate::domain::{Epoch, MessageBody, MessageId, Position, Ticket, UserName};
use crate::store::{Log, LogEvent, LogSource, Post, Record, Snapshot, StoreError, POST_KEY_TTL};

/// How long a post keeps retrying a write whose outcome it does not know; then it is
/// answered 503.
const WRITE_DEADLINE: Duration = Duration::from_secs(1);
/// How long after the post began Redis may still run its script (by Redis's clock); later
/// the script stores nothing. The rest of [`WRITE_DEADLINE`] is for its answer to come
/// back: an answer this instance stopped waiting for is never of a stored post unless
/// Redis took longer than that to send it after running the script.
const SCRIPT_DEADLINE: Duration = Duration::from_millis(700);
/// The first pause between two attempts of a write (then twice, then four times that).
const RETRY_FIRST: Duration = Duration::from_millis(100);

pub(super) struct RedisLog {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    append: Script,
    rates: Rates,
    /// Where the instance's hub starts: the follower reads on from here.
    start: (Epoch, Position),
}

/// The posting budgets, as the script takes them.
struct Rates {
    burst: u32,
    per_sec: f64,
    address_burst: u32,
    address_per_sec: f64,
}

impl RedisLog {
    pub(super) fn new(
        shared: Arc<Shared>,
        writer: ConnectionManager,
        room: &RoomSettings,
        start: &Snapshot,
    ) -> Self {
        let last = start
            .records
            .last()
            .map_or(start.floor, |r| r.id.position());
        Self {
            shared,
            writer,
            append: Script::new(include_str!("append.lua")),
            rates: Rates {
                burst: room.rate_burst,
                per_sec: room.rate_per_sec,
                address_burst: room.address_burst,
                address_per_sec: room.address_per_sec,
            },
            start: (start.epoch.clone(), last),
        }
    }

    /// The script, retried with the same key while its outcome is unknown, each attempt
    /// carrying the same deadline.
    async fn store(&self, post: Post<'_>) -> Result<Record, StoreError> {
        let keys = &self.shared.keys;
        let began = SystemTime::now();
        let own_key;
        let key = match post.key {
            Some(key) => key.as_str(),
            None => {
                own_key = uuid::Uuid::new_v4().simple().to_string();
                &own_key
            }
        };
        let post_key = format!("{}:post:{}:{key}", keys.prefix, post.login.as_str());
        let script_deadline = self.shared.clock.redis_ms(began + SCRIPT_DEADLINE);
        let rate_key = format!("{}:rate:{}", keys.prefix, post.login.as_str());
        let address_key = format!("{}:arate:{}", keys.prefix, post.address);
        let mut invocation = self.append.prepare_invoke();
        invocation
            .key(&keys.log)
            .key(&keys.epoch)
            .key(&post_key)
            .key(&rate_key)
            .key(&address_key)
            .arg(POST_KEY_TTL.as_secs())
            .arg(self.shared.cache_size)
            .arg(post.from.as_str())
            .arg(post.body.as_str())
            .arg(self.rates.burst)
            .arg(self.rates.per_sec)
            .arg(Epoch::random().as_str())
            .arg(self.rates.address_burst)
            .arg(self.rates.address_per_sec)
            .arg(script_deadline)
            .arg(if post.key.is_some() { "1" } else { "0" })
            .arg(tag(&self.shared.instance, post.ticket));
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut attempt = 0;
        let reply: Vec<String> = loop {
            let mut writer = self.writer.clone();
            // Each attempt ends by the deadline: while Redis is away, a call can otherwise
            // wait out the connection manager's whole reconnect schedule.
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, invocation.invoke_async(&mut writer)).await
            {
                Ok(Ok(reply)) => break reply,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "no answer in time".to_owned(),
            };
            if Instant::now() + RETRY_FIRST >= deadline {
                tracing::warn!(%error, "post refused: Redis unavailable");
                return Err(StoreError::Unavailable);
            }
            // The same key on every attempt: a write that did land is found, not repeated.
            tracing::debug!(%error, attempt, "post not stored yet; retrying");
            tokio::time::sleep(RETRY_FIRST * (1 << attempt.min(2))).await;
            attempt += 1;
        };
        let parse_id = |id: &str| {
            MessageId::parse(id)
                .ok_or_else(|| StoreError::Internal(format!("bad id from Redis: {id}")))
        };
        let record = Record::post;
        match reply.as_slice() {
            [status, ms] if status == "rate" => {
                let ms = ms.parse().unwrap_or(1000);
                Err(StoreError::RateLimited(Duration::from_millis(ms)))
            }
            [status] if status == "late" => {
                tracing::warn!("post refused: Redis ran it past its deadline");
                Err(StoreError::Unavailable)
            }
            // This post (or this same post, retried after its answer was lost).
            [status, id] if status == "ok" => {
                Ok(record(parse_id(id)?, post.from.clone(), post.body.clone())
                    .with_ticket(Some(post.ticket)))
            }
            // A repeat: what the first post with this key stored.
            [status, id, from, body] if status == "ok" => {
                let from = UserName::parse(from)
                    .map_err(|_| StoreError::Internal("bad name from Redis".into()))?;
                let body = MessageBody::parse(body, usize::MAX)
                    .map_err(|_| StoreError::Internal("bad body from Redis".into()))?;
                Ok(record(parse_id(id)?, from, body))
            }
            // Not shown: a reply may hold a message's text.
            other => Err(StoreError::Internal(format!(
                "a reply of {} fields from the post script",
                other.len()
            ))),
        }
    }
}

impl Log for RedisLog {
    fn append<'a>(&'a self, post: Post<'a>) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(self.store(post))
    }

    fn follow(&self) -> Box<dyn LogSource> {
        let (epoch, last) = self.start.clone();
        let follower = LogFollower {
            shared: self.shared.clone(),
            epoch,
            last,
        };
        let key = self.shared.keys.log.clone();
        Box::new(Stream::new(self.shared.clone(), key, follower, true))
    }

    /// Compares with the stream's newest entry, whatever instance wrote it. (A new epoch
    /// shows up through the follower; only the position is compared here.)
    fn has_reached<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut writer = self.writer.clone();
            let newest: redis::RedisResult<StreamRangeReply> = redis::cmd("XREVRANGE")
                .arg(&self.shared.keys.log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut writer)
                .await;
            let newest = newest.map_err(|error| {
                tracing::warn!(%error, "could not read the log's newest id");
                StoreError::Unavailable
            })?;
            let head = newest.ids.first().and_then(|e| Position::parse(&e.id));
            Ok(head.is_some_and(|head| id.position() <= head))
        })
    }
}

impl LogSource for Stream<LogFollower> {
    fn next(&mut self) -> BoxFuture<'_, Option<LogEvent>> {
        Box::pin(async move { Some(Stream::next(self).await) })
    }
}

/// Where this instance stands in the log.
pub(super) struct LogFollower {
    shared: Arc<Shared>,
    /// The epoch the instance holds.
    epoch: Epoch,
    /// The newest position it holds.
    last: Position,
}

impl Follower for LogFollower {
    type Event = LogEvent;

    fn last(&self) -> String {
        self.last.to_string()
    }

    /// If the log is another epoch now, or no longer holds where the instance stands (it
    /// fell behind the trimming), the instance starts over from the log, and its clients
    /// are told `reset`. Otherwise reading resumes where it stopped.
    fn catch_up<'a>(
        &'a mut self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Option<LogEvent>, RedisError>> {
        Box::pin(async move {
            let log = self.shared.load_snapshot(conn).await?;
            let oldest = log.records.first().map(|r| r.id.position());
            let continues = log.epoch == self.epoch
                && (log.floor <= self.last || oldest.is_none_or(|oldest| oldest <= self.last));
            if continues {
                // What the instance lacks comes through the reads, from `last` on.
                return Ok(None);
            }
            tracing::warn!("the log in Redis is not the one this instance held; starting over");
            self.epoch = log.epoch.clone();
            self.last = log.records.last().map_or(log.floor, |r| r.id.position());
            Ok(Some(LogEvent::Restart(log)))
        })
    }

    fn read(&mut self, entries: &[StreamId]) -> Step<LogEvent> {
        let mut records = Vec::with_capacity(entries.len());
        for stored in entries {
            if let Some(record) = record(stored) {
                let record = record.with_ticket(own_ticket(stored, &self.shared.instance));
                if *record.id.epoch() != self.epoch {
                    // Redis lost the log and a new epoch began: start over from it.
                    return Step::CatchUp;
                }
                records.push(record);
            }
            // Past every entry read, ours or not, so a foreign one is not read forever.
            if let Some(position) = Position::parse(&stored.id) {
                self.last = position;
            }
        }
        if records.is_empty() {
            Step::Nothing
        } else {
            Step::Yield(LogEvent::Appended(records))
        }
    }
}

/// The `t` field of an entry `instance` posts with `ticket`.
fn tag(instance: &str, ticket: Ticket) -> String {
    format!("{instance}.{}", ticket.0)
}

/// The ticket of an entry this instance posted; `None` for anyone else's.
fn own_ticket(stored: &StreamId, instance: &str) -> Option<Ticket> {
    let tag = stored.get::<String>("t")?;
    let (by, number) = tag.split_once('.')?;
    (by == instance).then(|| number.parse().ok().map(Ticket))?
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use redis::Value;

    use super::*;

    fn entry(t: &str) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: HashMap::from([("t".to_owned(), Value::BulkString(t.as_bytes().to_vec()))]),
            ..StreamId::default()
        }
    }

    /// Only this instance's entries bring a ticket back; another's (or a malformed tag)
    /// is anyone's entry, answered by its id.
    #[test]
    fn an_entry_carries_its_ticket_back_to_its_own_instance_alone() {
        let mine = entry(&tag("0a1b2c3d4e5f", Ticket(42)));
        assert_eq!(own_ticket(&mine, "0a1b2c3d4e5f"), Some(Ticket(42)));
        assert_eq!(own_ticket(&mine, "ffffffffffff"), None);
        assert_eq!(own_ticket(&entry("0a1b2c3d4e5f.x"), "0a1b2c3d4e5f"), None);
        assert_eq!(own_ticket(&entry("0a1b2c3d4e5f"), "0a1b2c3d4e5f"), None);
        let untagged = StreamId {
            id: "1-0".into(),
            ..StreamId::default()
        };
        assert_eq!(own_ticket(&untagged, "0a1b2c3d4e5f"), None);
    }
}
