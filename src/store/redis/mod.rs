//! The backend shared by every instance on one Redis.
//!
//! Keys, under `store.key_prefix` (`P`):
//! - `P:log`, a stream: one entry per message or notice (`e` epoch, `k` kind for notices,
//!   `from`, `body`, and on a post `t`: the posting instance and its ticket, so that
//!   instance answers its poster as soon as it reads the entry), trimmed with
//!   `MAXLEN ~ room.cache_size` (which keeps at least that many). Its entry ids are the
//!   positions of the room's message ids.
//! - `P:epoch`: a random value made with the log. If Redis loses its data the next write
//!   makes a new one, and every instance sees entries carry it: clients get `reset`.
//! - `P:post:{login}:{key}`: what a post was stored as (a string: the id, then with a
//!   client's key a line with `from` and one or more with the body), kept 10 minutes, so a
//!   post resent by its client (same key) or a write retried after its answer was lost is
//!   not stored twice. A post without a client's key gets a random one.
//! - `P:rate:{login}` and `P:arate:{address}`: the token buckets of a login and of a client
//!   address (strings: `<tokens> <at ms>`), one budget across instances.
//! - `P:who`, `P:since`, `P:held`, `P:holders`, `P:instances*`, `P:presence:clock` and
//!   `P:fold*`: presence (see `presence` and docs/ARCHITECTURE.md).
//! - `P:revoked` (login → until, a sorted set), `P:revocations` (a short stream announcing
//!   each, numbered) and `P:revocations:n` (the numbers' counter): logouts (see `logouts`).
//!
//! Posts and presence each change Redis in one script, so each is one round trip and
//! atomic. Every instance follows the log with one blocking `XREAD` on a connection of its
//! own (see `stream`) and fans out locally: the work in Redis grows with instances, not
//! clients.

mod log;
mod logouts;
mod presence;
mod stream;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};

use super::{Backend, PresenceSettings, Record, Snapshot};
use crate::config::Settings;
use crate::domain::{Crowd, Epoch, Kind, MessageBody, MessageId, Position, UserName};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StoreStartError {
    #[error("store.redis_url {url:?}: {source}")]
    Url { url: String, source: RedisError },
    #[error("store.redis_tls_ca_file {path:?}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach Redis at store.redis_url {url:?}: {source}")]
    Connect { url: String, source: RedisError },
}

/// The keys of one room.
struct Keys {
    log: String,
    epoch: String,
    who: String,
    since: String,
    held: String,
    holders: String,
    instances: String,
    presence_clock: String,
    fold: String,
    fold_joins: String,
    fold_leaves: String,
    fold_pending: String,
    revoked: String,
    revocations: String,
    revocations_count: String,
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            log: format!("{prefix}:log"),
            epoch: format!("{prefix}:epoch"),
            who: format!("{prefix}:who"),
            since: format!("{prefix}:since"),
            held: format!("{prefix}:held"),
            holders: format!("{prefix}:holders"),
            instances: format!("{prefix}:instances"),
            presence_clock: format!("{prefix}:presence:clock"),
            fold: format!("{prefix}:fold"),
            fold_joins: format!("{prefix}:fold:joins"),
            fold_leaves: format!("{prefix}:fold:leaves"),
            fold_pending: format!("{prefix}:fold:pending"),
            revoked: format!("{prefix}:revoked"),
            revocations: format!("{prefix}:revocations"),
            revocations_count: format!("{prefix}:revocations:n"),
            prefix: prefix.to_owned(),
        }
    }
}

/// What the log, presence and logouts of one room share.
struct Shared {
    client: Client,
    keys: Keys,
    /// This instance, random for each start: its presence holds and beat, and the tag on
    /// the log entries it posts (see `log`).
    instance: String,
    /// Entries the log keeps (`room.cache_size`).
    cache_size: usize,
    metrics: Arc<Metrics>,
    clock: RedisClock,
    /// What the log's reader knows (its connection is up) and what the health watch knows
    /// (Redis answers in time): the store is up when both say so.
    following: AtomicBool,
    answering: AtomicBool,
}

impl Shared {
    fn set_following(&self, up: bool) {
        self.following.store(up, Relaxed);
        self.report_health();
    }

    fn set_answering(&self, up: bool) {
        self.answering.store(up, Relaxed);
        self.report_health();
    }

    fn report_health(&self) {
        let up = self.following.load(Relaxed) && self.answering.load(Relaxed);
        self.metrics.store_up.store(u64::from(up), Relaxed);
    }
}

/// Redis's clock as this instance last measured it, so a post can carry a deadline that
/// Redis itself checks (see `append.lua`): the two hosts' clocks need not agree.
#[derive(Default)]
struct RedisClock {
    /// Redis's Unix time minus ours, in ms.
    offset_ms: AtomicI64,
}

impl RedisClock {
    /// Learns the offset from a `TIME` answer sent at `sent` and received now: Redis read
    /// its clock somewhere between, taken as the middle (off by at most half the round
    /// trip).
    fn sample(&self, sent: SystemTime, (secs, micros): (i64, i64)) {
        let received = unix_ms(SystemTime::now());
        let middle = (unix_ms(sent) + received) / 2;
        let redis = secs * 1000 + micros / 1000;
        self.offset_ms.store(redis - middle, Relaxed);
    }

    /// Redis's Unix time in ms at our `local` time.
    fn redis_ms(&self, local: SystemTime) -> i64 {
        unix_ms(local) + self.offset_ms.load(Relaxed)
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `TIME`'s answer, (seconds, microseconds).
async fn redis_time(conn: &mut impl redis::aio::ConnectionLike) -> Result<(i64, i64), RedisError> {
    redis::cmd("TIME").query_async(conn).await
}

/// Connects, loads the log's newest entries and the ended logins; refuses to start
/// without Redis.
pub(super) async fn open(
    settings: &Settings,
    presence: Option<&PresenceSettings>,
    metrics: Arc<Metrics>,
) -> Result<Backend, StoreStartError> {
    let url = &settings.store.redis_url;
    let client = client(url, settings.store.redis_tls_ca_file.as_deref())?;
    let connect = |source| StoreStartError::Connect {
        url: without_password(url),
        source,
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_max_delay(Duration::from_secs(2));
    // One multiplexed connection for every write: calls pipeline on it by themselves.
    let writer = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(connect)?;
    let shared = Arc::new(Shared {
        client,
        keys: Keys::new(&settings.store.key_prefix),
        instance: Epoch::random().as_str().to_owned(),
        cache_size: settings.room.cache_size,
        metrics,
        clock: RedisClock::default(),
        following: AtomicBool::new(true),
        answering: AtomicBool::new(true),
    });
    let mut conn = shared.reader_connection().await.map_err(connect)?;
    let sent = SystemTime::now();
    let time = redis_time(&mut conn).await.map_err(connect)?;
    shared.clock.sample(sent, time);
    let start = shared.load_snapshot(&mut conn).await.map_err(connect)?;
    let (ended, _) = logouts::load(&shared, &mut conn).await.map_err(connect)?;
    shared.report_health();
    tracing::info!(
        entries = start.records.len(),
        ended_logins = ended.len(),
        "history and ended logins loaded from Redis"
    );
    tokio::spawn(watch_answers(shared.clone(), writer.clone()));
    let log = log::RedisLog::new(shared.clone(), writer.clone(), &settings.room, &start);
    let presence = presence.map(|settings| {
        Box::new(presence::RedisPresence::new(
            shared.clone(),
            writer.clone(),
            settings.clone(),
        )) as Box<dyn super::PresenceRegistry>
    });
    Ok(Backend {
        log: Arc::new(log),
        start,
        presence,
        logouts: Arc::new(logouts::RedisLogouts::new(shared, writer)),
        ended,
    })
}

/// How often the store is asked whether it answers, and how long an answer may take.
const ASK_EVERY: Duration = Duration::from_millis(500);
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// A stalled Redis (paused, swapping, its host frozen) closes no connection: the log's
/// blocking read just waits. So the writer's connection is asked the `TIME` twice a second,
/// and a missing answer within a second marks the store down (`/healthz` 503) until one
/// comes back: a stall shows within about 1.5 s. Each answer also keeps Redis's clock.
async fn watch_answers(shared: Arc<Shared>, writer: ConnectionManager) {
    let mut every = tokio::time::interval(ASK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        every.tick().await;
        let mut conn = writer.clone();
        let sent = SystemTime::now();
        let answer = tokio::time::timeout(ANSWER_WAIT, redis_time(&mut conn)).await;
        if let Ok(Ok(time)) = answer {
            shared.clock.sample(sent, time);
        }
        // A refused or dropped connection is the log's reader's to report (once per
        // outage); a silence is what only this watch sees.
        if answer.is_err() && !stalled {
            tracing::warn!("Redis stalled: no answer within a second; reported down");
        } else if matches!(answer, Ok(Ok(_))) && stalled {
            tracing::info!("Redis answers again after a stall");
        }
        stalled = answer.is_err();
        shared.set_answering(matches!(answer, Ok(Ok(_))));
        if Arc::strong_count(&shared) == 1 {
            return; // Everything else using the store is gone.
        }
    }
}

/// A client for `url`; for `rediss://` with `ca_file`, checking the server against it.
fn client(url: &str, ca_file: Option<&std::path::Path>) -> Result<Client, StoreStartError> {
    let bad_url = |source| StoreStartError::Url {
        url: without_password(url),
        source,
    };
    match ca_file {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|source| StoreStartError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            Client::build_with_tls(url, certificates).map_err(bad_url)
        }
        None => Client::open(url).map_err(bad_url),
    }
}

/// `url` fit for a log line or an error message: a password in it is replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl Shared {
    /// A connection of its own for blocking reads, with a response timeout longer than the
    /// block (the client's default would cut every read short).
    async fn reader_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(stream::reader_response_timeout()));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The log's epoch (made now if there is none) and its newest records.
    async fn load_snapshot(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Snapshot, RedisError> {
        let keys = &self.keys;
        let _: () = redis::cmd("SET")
            .arg(&keys.epoch)
            .arg(Epoch::random().as_str())
            .arg("NX")
            .query_async(conn)
            .await?;
        let raw: String = conn.get(&keys.epoch).await?;
        let epoch = Epoch::parse(&raw).unwrap_or_else(|| {
            tracing::warn!("the epoch in Redis is malformed; starting a new one");
            Epoch::random()
        });
        let newest: StreamRangeReply = conn
            .xrevrange_count(&keys.log, "+", "-", self.cache_size)
            .await?;
        let length: usize = conn.xlen(&keys.log).await?;
        let mut records: Vec<Record> = newest
            .ids
            .iter()
            .rev()
            .filter_map(record)
            .filter(|record| *record.id.epoch() == epoch)
            .collect();
        records.dedup_by_key(|r| r.id.position());
        // Trimming keeps at least `cache_size` entries, so a shorter stream was never
        // trimmed: it holds the whole epoch. Otherwise the log is complete after the
        // oldest entry loaded.
        let floor = match records.first() {
            Some(first) if length >= self.cache_size => first.id.position(),
            _ => Position::ORIGIN,
        };
        Ok(Snapshot {
            epoch,
            floor,
            records,
        })
    }
}

/// A stream entry of the log as a record; `None` if it is not one of ours.
fn record(stored: &StreamId) -> Option<Record> {
    let epoch = Epoch::parse(&stored.get::<String>("e")?)?;
    let position = Position::parse(&stored.id)?;
    let id = MessageId::new(&epoch, position);
    let from = UserName::parse(&stored.get::<String>("from")?).ok()?;
    // Posts carry no `k`; notices say which they are, and whom: `n` the first names
    // (comma-separated: names have no comma) and `c` how many in all.
    match stored.get::<String>("k") {
        None => {
            let body = MessageBody::parse(&stored.get::<String>("body")?, usize::MAX).ok()?;
            Some(Record::post(id, from, body))
        }
        Some(kind) => {
            let kind = Kind::parse(&kind)?;
            let crowd = match (stored.get::<String>("n"), stored.get::<u32>("c")) {
                (Some(names), Some(count)) => {
                    let names = names.split(',').map(UserName::parse);
                    Crowd::new(names.collect::<Result<_, _>>().ok()?, count)?
                }
                _ => Crowd::one(from),
            };
            Some(Record::notice(id, kind, crowd))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_an_error_message() {
        assert_eq!(
            without_password("rediss://:s3cret@redis.example:6380/0"),
            "rediss://:***@redis.example:6380/0"
        );
        assert_eq!(
            without_password("redis://app:s3cret@127.0.0.1/0"),
            "redis://app:***@127.0.0.1/0"
        );
        for plain in [
            "redis://127.0.0.1:6379/0",
            "redis+unix:///tmp/r.sock",
            "junk",
        ] {
            assert_eq!(without_password(plain), plain);
        }
    }
}
