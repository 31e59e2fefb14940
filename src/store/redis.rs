//! The room's log in Redis, shared by every instance.
//!
//! Keys, under `store.key_prefix` (`P`):
//! - `P:log`, a stream: one entry per message (`e` epoch, `from`, `body`), trimmed with
//!   `MAXLEN ~ room.cache_size` (which keeps at least that many). Its entry ids are the
//!   positions of the room's message ids, so every instance gives a message the same id.
//! - `P:epoch`: a random value made with the log. If Redis loses its data the next write
//!   makes a new one, and every instance sees its entries carry it: clients get `reset`.
//! - `P:post:{uuid}`: the id a post was stored under, kept 5 minutes, so a write retried
//!   after its outcome was lost (a dropped connection) is not stored twice.
//! - `P:rate:{login}` and `P:arate:{address}`: the token buckets of a login and of a client
//!   address, one budget across instances.
//! - `P:revoked`, a sorted set: logins ended by logout, scored by when their cookie
//!   expires (the end of the revocation); `P:revocations`, a short stream announcing each
//!   one to the other instances' followers.
//!
//! A post is one script (rate, idempotency, epoch, `XADD`): one round trip, one write.
//! Each instance tails the stream with one blocking `XREAD` on a connection of its own (a
//! blocking read must not hold up the multiplexed connection the posts share, and needs a
//! response timeout longer than its block) and feeds its hub, which fans out locally: the
//! work in Redis grows with instances, not clients.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Script};

use super::StoreError;
use crate::auth::{unix_now, Login, LoginId};
use crate::domain::{Epoch, Kind, MessageBody, MessageId, Position, UserName};
use crate::hub::{Draft, Entry, HubHandle, LogStart};
use crate::metrics::Metrics;
use crate::templates::Templates;

/// How long one blocking read waits for new entries before it asks again.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per read.
const READ_COUNT: usize = 512;
/// How long a post keeps retrying a write whose outcome it does not know.
const WRITE_DEADLINE: Duration = Duration::from_secs(1);
/// How long a posted message's id stays remembered for retries.
const IDEMPOTENCY_TTL_SECS: u64 = 300;
/// How long a poster waits for its own entry to reach this instance's hub.
const OWN_ENTRY_WAIT: Duration = Duration::from_secs(2);
/// Reconnect delays: doubling from the first, at most the cap, each with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The post: rate, idempotency, epoch and append in one step.
/// KEYS: log, epoch, post, login's rate, address's rate. ARGV: post ttl, maxlen, from, body,
/// login burst, login per second, a new epoch (used only if there is none), address burst,
/// address per second.
/// Returns `{"ok", "<epoch>-<stream id>"}` or `{"rate", "<ms to wait>"}`. A post is charged
/// to both buckets only when both have a token.
const APPEND_SCRIPT: &str = r"
local done = redis.call('GET', KEYS[3])
if done then return {'ok', done} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, burst, per_ms)
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = bucket[1] and tonumber(bucket[1]) or burst
  local at = bucket[2] and tonumber(bucket[2]) or now
  return math.min(burst, tokens + math.max(0, now - at) * per_ms)
end
local buckets = {
  {KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]) / 1000},
  {KEYS[5], tonumber(ARGV[8]), tonumber(ARGV[9]) / 1000},
}
local wait = 0
for _, b in ipairs(buckets) do
  b[4] = level(b[1], b[2], b[3])
  if b[4] < 1 then wait = math.max(wait, math.ceil((1 - b[4]) / b[3])) end
end
if wait > 0 then return {'rate', tostring(wait)} end
for _, b in ipairs(buckets) do
  redis.call('HSET', b[1], 'tokens', tostring(b[4] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', b[1], math.ceil(b[2] / b[3]) + 1000)
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[2], epoch)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'from', ARGV[3], 'body', ARGV[4])
local full = epoch .. '-' .. id
redis.call('SET', KEYS[3], full, 'EX', ARGV[1])
return {'ok', full}
";

/// Presence across instances, in one step per instance and tick: refresh the logins
/// connected to this instance (new ones join), then sweep the ones no instance refreshed
/// in time (they leave). Atomic, so exactly one instance announces each change.
/// KEYS: online (zset login -> expiry ms), who (hash login -> "since|name"), log, epoch.
/// ARGV: ttl ms, maxlen, notices ("1"/"0"), a new epoch, then login, name pairs.
const PRESENCE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local function notice(kind, name, body)
  if ARGV[3] ~= '1' then return end
  local epoch = redis.call('GET', KEYS[4])
  if not epoch then
    epoch = ARGV[4]
    redis.call('SET', KEYS[4], epoch)
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'k', kind, 'from', name, 'body', body)
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, login in ipairs(gone) do
  redis.call('ZREM', KEYS[1], login)
  local who = redis.call('HGET', KEYS[2], login)
  redis.call('HDEL', KEYS[2], login)
  if who then notice('leave', string.match(who, '^[^|]*|(.*)$'), 'left the room') end
end
for i = 5, #ARGV, 2 do
  local login, name = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[1], login) then
    redis.call('ZADD', KEYS[1], 'GT', now + ttl, login)
  else
    redis.call('ZADD', KEYS[1], now + ttl, login)
    redis.call('HSET', KEYS[2], login, now .. '|' .. name)
    notice('join', name, 'joined the room')
  end
end
return #gone
";

/// What the Redis store is told by the configuration.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub cache_size: usize,
    pub rate_burst: u32,
    pub rate_per_sec: f64,
    pub address_burst: u32,
    pub address_per_sec: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreStartError {
    #[error("store.redis_url {url:?}: {source}")]
    Url { url: String, source: RedisError },
    #[error("cannot reach Redis at store.redis_url {url:?}: {source}")]
    Connect { url: String, source: RedisError },
}

struct Keys {
    log: String,
    epoch: String,
    online: String,
    who: String,
    revoked: String,
    revocations: String,
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            log: format!("{prefix}:log"),
            epoch: format!("{prefix}:epoch"),
            online: format!("{prefix}:online"),
            who: format!("{prefix}:who"),
            revoked: format!("{prefix}:revoked"),
            revocations: format!("{prefix}:revocations"),
            prefix: prefix.to_owned(),
        }
    }
}

/// What the reader and the posts share.
struct Shared {
    client: Client,
    keys: Keys,
    settings: RedisSettings,
    templates: Arc<Templates>,
    metrics: Arc<Metrics>,
}

/// Connected, with the log loaded, but not yet following it: the hub is built from the
/// log `open` returned, then [`Opened::follow`] starts the reader.
pub struct Opened {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    /// The epoch and newest position of the log handed to the hub.
    epoch: Epoch,
    last: Position,
}

pub struct RedisStore {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    append: Script,
    hub: HubHandle,
    pause: ReaderPause,
}

/// Holds this instance's reader still (for tests, and for maintenance): while paused, the
/// instance serves what it has and waits for the rest; on resume it reads on from where it
/// stopped. Posts still go to Redis.
#[derive(Clone)]
pub struct ReaderPause(Arc<tokio::sync::watch::Sender<bool>>);

impl ReaderPause {
    pub fn pause(&self) {
        self.0.send_replace(true);
    }

    pub fn resume(&self) {
        self.0.send_replace(false);
    }
}

/// Presence kept in Redis for every instance (see [`PRESENCE_SCRIPT`]).
pub struct RedisPresence {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    script: Script,
}

impl RedisPresence {
    /// Refreshes `logins` (connected here) to expire after `ttl`, sweeps the expired ones,
    /// and announces the changes when `notices`.
    pub async fn refresh(&self, logins: &[(LoginId, UserName)], ttl: Duration, notices: bool) {
        let keys = &self.shared.keys;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&keys.online)
            .key(&keys.who)
            .key(&keys.log)
            .key(&keys.epoch)
            .arg(ttl.as_millis() as u64)
            .arg(self.shared.settings.cache_size)
            .arg(if notices { "1" } else { "0" })
            .arg(Epoch::random().as_str());
        for (login, name) in logins {
            invocation.arg(login.as_str()).arg(name.as_str());
        }
        let mut writer = self.writer.clone();
        let result: Result<u64, RedisError> = invocation.invoke_async(&mut writer).await;
        if let Err(error) = result {
            // The reader reports outages; presence just tries again next tick.
            tracing::debug!(%error, "presence not refreshed");
        }
    }

    /// Who is online across instances: (since, in Unix ms; name), oldest first.
    pub async fn who(&self) -> Vec<(u64, UserName)> {
        let mut writer = self.writer.clone();
        let all: HashMap<String, String> = match writer.hgetall(&self.shared.keys.who).await {
            Ok(all) => all,
            Err(error) => {
                tracing::debug!(%error, "presence not read");
                return Vec::new();
            }
        };
        let mut rows: Vec<(u64, UserName)> = all
            .values()
            .filter_map(|who| {
                let (since, name) = who.split_once('|')?;
                Some((since.parse().ok()?, UserName::parse(name).ok()?))
            })
            .collect();
        rows.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        rows
    }
}

/// Logouts kept in Redis for every instance and for restarts.
pub struct RedisRevocations {
    shared: Arc<Shared>,
    writer: ConnectionManager,
}

/// Announcements kept in `P:revocations`: enough for a follower's short outage; after a
/// longer one it reloads the set.
const REVOCATIONS_KEPT: usize = 1000;

impl RedisRevocations {
    /// Records that `id` is ended until `until` (Unix seconds), for every instance.
    pub async fn revoke(&self, id: &LoginId, until: u64) -> Result<(), StoreError> {
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
            .arg(REVOCATIONS_KEPT)
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

    /// Every login still ended, and the announcement to follow on from.
    pub async fn load(&self) -> Result<(Vec<(LoginId, u64)>, String), RedisError> {
        let keys = &self.shared.keys;
        let mut writer = self.writer.clone();
        // The position first: whatever is announced after it is read by the follower,
        // whatever came before is in the set.
        let newest: StreamRangeReply = writer
            .xrevrange_count(&keys.revocations, "+", "-", 1)
            .await?;
        let after = newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let all: Vec<(String, u64)> = writer
            .zrangebyscore_withscores(&keys.revoked, unix_now() + 1, "+inf")
            .await?;
        let ended = all
            .into_iter()
            .filter_map(|(id, until)| Some((LoginId::parse(&id)?, until)))
            .collect();
        Ok((ended, after))
    }

    /// Hands every login ended from `after` on to `apply`, until `apply` says false (the
    /// server is gone); after an outage it reloads the whole set, since announcements may
    /// have been trimmed meanwhile.
    pub fn follow(
        self,
        mut after: String,
        apply: impl Fn(Vec<(LoginId, u64)>) -> bool + Send + 'static,
    ) {
        tokio::spawn(async move {
            let options = StreamReadOptions::default()
                .block(READ_BLOCK.as_millis() as usize)
                .count(READ_COUNT);
            let mut attempts = 0;
            loop {
                let failure = match self.shared.reader_connection().await {
                    Ok(mut conn) => loop {
                        let reply: StreamReadReply = match conn
                            .xread_options(&[&self.shared.keys.revocations], &[&after], &options)
                            .await
                        {
                            Ok(reply) => reply,
                            Err(error) => break error,
                        };
                        attempts = 0;
                        let ids = reply.keys.iter().flat_map(|k| &k.ids);
                        let mut ended = Vec::new();
                        for item in ids {
                            after.clone_from(&item.id);
                            let id = item.get::<String>("l").and_then(|l| LoginId::parse(&l));
                            if let (Some(id), Some(until)) = (id, item.get::<u64>("u")) {
                                ended.push((id, until));
                            }
                        }
                        if !apply(ended) {
                            return;
                        }
                    },
                    Err(error) => error,
                };
                // The reader of the log reports outages; this one only retries.
                tracing::debug!(error = %failure, "revocations not followed");
                tokio::time::sleep(backoff(attempts)).await;
                attempts += 1;
                if let Ok((ended, newest)) = self.load().await {
                    if !apply(ended) {
                        return;
                    }
                    after = newest;
                }
            }
        });
    }
}

impl RedisStore {
    pub fn reader_pause(&self) -> ReaderPause {
        self.pause.clone()
    }

    /// Logouts on the same Redis, keys and connection.
    pub fn revocations(&self) -> RedisRevocations {
        RedisRevocations {
            shared: self.shared.clone(),
            writer: self.writer.clone(),
        }
    }

    /// Presence on the same Redis, keys and connection.
    pub fn presence(&self) -> RedisPresence {
        RedisPresence {
            shared: self.shared.clone(),
            writer: self.writer.clone(),
            script: Script::new(PRESENCE_SCRIPT),
        }
    }

    /// Connects and loads the newest `cache_size` entries; refuses to start without Redis.
    pub async fn open(
        settings: RedisSettings,
        templates: Arc<Templates>,
        metrics: Arc<Metrics>,
    ) -> Result<(Opened, LogStart), StoreStartError> {
        let url = settings.url.clone();
        let client = Client::open(url.as_str()).map_err(|source| StoreStartError::Url {
            url: url.clone(),
            source,
        })?;
        let connect = |source| StoreStartError::Connect {
            url: url.clone(),
            source,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_secs(2));
        let writer = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(connect)?;
        let shared = Arc::new(Shared {
            client,
            keys: Keys::new(&settings.key_prefix),
            settings,
            templates,
            metrics,
        });
        let mut conn = shared.reader_connection().await.map_err(connect)?;
        let log = shared.load_log(&mut conn).await.map_err(connect)?;
        shared.metrics.store_up.store(1, Relaxed);
        tracing::info!(entries = log.entries.len(), "history loaded from Redis");
        let opened = Opened {
            shared,
            writer,
            epoch: log.epoch.clone(),
            last: log
                .entries
                .last()
                .map_or(log.floor, |e| e.message.id.position()),
        };
        Ok((opened, log))
    }

    /// Stores a post: its rate and the append in one script, retried with the same
    /// idempotency key while the outcome is unknown; then waits (briefly) until this
    /// instance's hub has it, so the poster's cursor sees it here.
    pub(super) async fn append(
        &self,
        login: &Login,
        address: &str,
        draft: Draft,
    ) -> Result<Arc<Entry>, StoreError> {
        let keys = &self.shared.keys;
        let settings = &self.shared.settings;
        let post_key = format!("{}:post:{}", keys.prefix, uuid::Uuid::new_v4().simple());
        let rate_key = format!("{}:rate:{}", keys.prefix, login.id.as_str());
        let address_key = format!("{}:arate:{address}", keys.prefix);
        let mut invocation = self.append.prepare_invoke();
        invocation
            .key(&keys.log)
            .key(&keys.epoch)
            .key(&post_key)
            .key(&rate_key)
            .key(&address_key)
            .arg(IDEMPOTENCY_TTL_SECS)
            .arg(settings.cache_size)
            .arg(draft.from.as_str())
            .arg(draft.body.as_str())
            .arg(settings.rate_burst)
            .arg(settings.rate_per_sec)
            .arg(Epoch::random().as_str())
            .arg(settings.address_burst)
            .arg(settings.address_per_sec);
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
            if Instant::now() + BACKOFF_FIRST >= deadline {
                tracing::warn!(%error, "post refused: Redis unavailable");
                return Err(StoreError::Unavailable);
            }
            // The same key on every attempt: a write that did land is found, not repeated.
            tracing::debug!(%error, attempt, "post not stored yet; retrying");
            tokio::time::sleep(BACKOFF_FIRST * (1 << attempt.min(2))).await;
            attempt += 1;
        };
        let id = match reply.as_slice() {
            [status, ms] if status == "rate" => {
                let ms = ms.parse().unwrap_or(1000);
                return Err(StoreError::RateLimited(Duration::from_millis(ms)));
            }
            [status, id] if status == "ok" => MessageId::parse(id)
                .ok_or_else(|| StoreError::Internal(format!("bad id from Redis: {id}")))?,
            other => return Err(StoreError::Internal(format!("bad reply: {other:?}"))),
        };
        let message = self
            .shared
            .templates
            .build_message(id.clone(), &draft.from, draft.body, draft.kind)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.hub
            .wait_for(id, OWN_ENTRY_WAIT)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Arc::new(Entry::new(message)))
    }
}

impl Opened {
    /// Starts the reader that feeds `hub`, and returns the store posts go through.
    pub fn follow(self, hub: HubHandle) -> RedisStore {
        let (pause, paused) = tokio::sync::watch::channel(false);
        let reader = Reader {
            shared: self.shared.clone(),
            hub: hub.clone(),
            epoch: self.epoch,
            last: self.last,
            paused,
        };
        tokio::spawn(reader.run());
        RedisStore {
            shared: self.shared,
            writer: self.writer,
            append: Script::new(APPEND_SCRIPT),
            hub,
            pause: ReaderPause(Arc::new(pause)),
        }
    }
}

impl Shared {
    /// A connection of its own for blocking reads, with a response timeout longer than the
    /// block (the client's default would cut every read short).
    async fn reader_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The log's epoch (made now if there is none) and its newest entries.
    async fn load_log(&self, conn: &mut MultiplexedConnection) -> Result<LogStart, RedisError> {
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
            .xrevrange_count(&keys.log, "+", "-", self.settings.cache_size)
            .await?;
        let length: usize = conn.xlen(&keys.log).await?;
        let mut entries: Vec<_> = newest
            .ids
            .iter()
            .rev()
            .filter_map(|stored| self.entry(stored))
            .filter(|entry| *entry.message.id.epoch() == epoch)
            .collect();
        entries.dedup_by_key(|e| e.message.id.position());
        // Trimming keeps at least `cache_size` entries, so a shorter stream was never
        // trimmed: it holds the whole epoch. Otherwise the log is complete after the
        // oldest entry loaded.
        let floor = match entries.first() {
            Some(first) if length >= self.settings.cache_size => first.message.id.position(),
            _ => Position::ORIGIN,
        };
        Ok(LogStart {
            epoch,
            floor,
            entries,
        })
    }

    /// A stream entry as the room's entry, rendered here; `None` if it is not one of ours.
    fn entry(&self, stored: &StreamId) -> Option<Arc<Entry>> {
        let epoch = Epoch::parse(&stored.get::<String>("e")?)?;
        let position = Position::parse(&stored.id)?;
        let from = UserName::parse(&stored.get::<String>("from")?).ok()?;
        let body = MessageBody::parse(&stored.get::<String>("body")?, usize::MAX).ok()?;
        // Posts carry no `k`; notices say which they are.
        let kind = match stored.get::<String>("k") {
            Some(kind) => Kind::parse(&kind)?,
            None => Kind::Message,
        };
        let id = MessageId::new(&epoch, position);
        match self.templates.build_message(id, &from, body, kind) {
            Ok(message) => Some(Arc::new(Entry::new(message))),
            Err(error) => {
                tracing::error!(%error, "cannot render a stored message");
                None
            }
        }
    }
}

/// Follows the stream for one instance and feeds its hub.
struct Reader {
    shared: Arc<Shared>,
    hub: HubHandle,
    /// The epoch the hub holds.
    epoch: Epoch,
    /// The newest position the hub holds.
    last: Position,
    paused: tokio::sync::watch::Receiver<bool>,
}

/// Why following the stream stopped.
enum Stop {
    /// The hub is gone: the server is shutting down.
    HubClosed,
    Redis(RedisError),
}

impl From<RedisError> for Stop {
    fn from(error: RedisError) -> Self {
        Self::Redis(error)
    }
}

impl Reader {
    async fn run(mut self) {
        let metrics = self.shared.metrics.clone();
        let mut outage: Option<(Instant, u32)> = None;
        loop {
            let failure = match self.shared.reader_connection().await {
                Ok(mut conn) => match self.resync(&mut conn).await {
                    Ok(()) => {
                        if let Some((since, attempts)) = outage.take() {
                            tracing::info!(
                                down_secs = since.elapsed().as_secs_f64(),
                                attempts,
                                "Redis reachable again; following the log"
                            );
                        }
                        metrics.store_up.store(1, Relaxed);
                        match self.tail(&mut conn).await {
                            Stop::HubClosed => return,
                            Stop::Redis(error) => error,
                        }
                    }
                    Err(Stop::HubClosed) => return,
                    Err(Stop::Redis(error)) => error,
                },
                Err(error) => error,
            };
            metrics.store_up.store(0, Relaxed);
            let (_, attempts) = outage.get_or_insert_with(|| {
                // Once per outage, however it began; the retries below stay quiet.
                tracing::warn!(error = %failure, "Redis unreachable; posts get 503 until it returns");
                (Instant::now(), 0)
            });
            tracing::debug!(error = %failure, attempt = *attempts, "Redis still unreachable");
            let delay = backoff(*attempts);
            *attempts += 1;
            metrics.store_reconnects.fetch_add(1, Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// After (re)connecting: if the log is another epoch now, or no longer holds where
    /// the hub stands (the reader fell behind the trimming), the hub starts over from the
    /// log and its clients are told `reset`. Otherwise reading resumes where it stopped.
    async fn resync(&mut self, conn: &mut MultiplexedConnection) -> Result<(), Stop> {
        let log = self.shared.load_log(conn).await?;
        let oldest = log.entries.first().map(|e| e.message.id.position());
        let continues = log.epoch == self.epoch
            && (log.floor <= self.last || oldest.is_none_or(|oldest| oldest <= self.last));
        if continues {
            // What the hub lacks comes through `tail`, from `last` on.
            return Ok(());
        }
        tracing::warn!("the log in Redis is not the one this instance held; starting over");
        self.epoch = log.epoch.clone();
        self.last = log
            .entries
            .last()
            .map_or(log.floor, |e| e.message.id.position());
        self.hub.restart(log).await.map_err(|_| Stop::HubClosed)
    }

    /// Reads new entries until Redis fails or the hub closes.
    async fn tail(&mut self, conn: &mut MultiplexedConnection) -> Stop {
        let options = StreamReadOptions::default()
            .block(READ_BLOCK.as_millis() as usize)
            .count(READ_COUNT);
        loop {
            if self.paused.wait_for(|paused| !paused).await.is_err() {
                return Stop::HubClosed;
            }
            let after = [self.last.to_string()];
            let log = [&self.shared.keys.log];
            let read = conn.xread_options(&log, &after, &options);
            let reply: StreamReadReply = tokio::select! {
                reply = read => match reply {
                    Ok(reply) => reply,
                    Err(error) => return Stop::Redis(error),
                },
                // A pause takes effect at once: the read in flight is dropped, and read
                // again from the same place on resume.
                _ = self.paused.wait_for(|paused| *paused) => continue,
            };
            let stored: Vec<&StreamId> = reply.keys.iter().flat_map(|k| &k.ids).collect();
            let mut entries = Vec::with_capacity(stored.len());
            for item in stored {
                let Some(entry) = self.shared.entry(item) else {
                    continue;
                };
                if *entry.message.id.epoch() != self.epoch {
                    // Redis lost the log and a new epoch began: start over from it.
                    if let Err(stop) = self.resync(conn).await {
                        return stop;
                    }
                    entries.clear();
                    break;
                }
                self.last = entry.message.id.position();
                entries.push(entry);
            }
            if !entries.is_empty() && self.hub.ingest(entries).await.is_err() {
                return Stop::HubClosed;
            }
        }
    }
}

/// The delay before reconnect attempt `attempt`: doubling, capped, the upper half random,
/// so instances that lost Redis together do not all come back in the same instant.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_FIRST
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
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
