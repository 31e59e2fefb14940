//! One room on this instance, the same way for every backend: the log gives each entry its
//! id, this instance follows the log, and its follower renders each record once (its
//! `html`, its JSON, its frame) for the hub, which fans it out. The hub's task runs the
//! follower itself, before anything else it does, so an entry has no queue to wait in. A
//! post, from either transport, is answered with the hub's own entry, so it too is
//! rendered once.
//!
//! ```text
//!   post ──append──> Log ──follow──> follower ──(in the hub's task)──> hub ──> polls, sockets
//!     └──── claim(ticket), before the append ─────────────────────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use crate::auth::Login;
use crate::domain::{Cursor, MessageBody, PostKey, Ticket};
use crate::error::AppError;
use crate::hub::{
    Batch, Entry, Feed, FeedEvent, HubClosed, HubConfig, HubHandle, LogStart, Subscription,
};
use crate::metrics::Metrics;
use crate::store::{Log, LogEvent, LogSource, Post, Record, Snapshot, StoreError};
use crate::templates::Templates;

/// How long a poster waits for its own entry to reach this instance's hub.
const OWN_ENTRY_WAIT: Duration = Duration::from_secs(2);
/// How long a cursor ahead of the hub waits for the log to say whether it was ever issued.
const LOG_CHECK_WAIT: Duration = Duration::from_secs(1);

/// This instance's room: the log it follows and the hub it feeds. Cheap to clone.
#[derive(Clone)]
pub struct Room {
    /// Where polls, sockets and pages read the room.
    pub hub: HubHandle,
    log: Arc<dyn Log>,
    templates: Arc<Templates>,
    max_chars: usize,
    pause: FollowerPause,
}

/// How the room is sized.
pub struct RoomSize {
    pub cache_size: usize,
    /// Frames a WebSocket may fall behind before it is dropped as too slow.
    pub socket_backlog: usize,
    /// Longest message, in characters after clean-up.
    pub max_message_chars: usize,
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable => Self::StoreUnavailable,
            StoreError::RateLimited(wait) => Self::rate_limited(wait),
            StoreError::Internal(cause) => Self::Internal(cause.into()),
        }
    }
}

impl Room {
    /// Starts the hub from `start`, fed by the follower of the log from there on, on the
    /// current Tokio runtime.
    pub fn start(
        log: Arc<dyn Log>,
        start: Snapshot,
        size: RoomSize,
        templates: Arc<Templates>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let pause = FollowerPause(Arc::new(watch::Sender::new(false)));
        let follower = Follower {
            source: log.follow(),
            templates: templates.clone(),
            paused: pause.0.subscribe(),
            _pause: pause.clone(),
        };
        let hub = HubHandle::start(
            HubConfig {
                cache_size: size.cache_size,
                socket_backlog: size.socket_backlog,
                log: render_snapshot(&templates, start),
                feed: Box::new(follower),
            },
            metrics,
        );
        Self {
            hub,
            log,
            templates,
            max_chars: size.max_message_chars,
            pause,
        }
    }

    /// Posts `raw_body` as `login` from the client `address`, the same for both transports:
    /// clean-up and limits, then the log (which charges the rate and gives the id, or
    /// finds the post `key` already stored), then the hub's entry (its ticket's, or found
    /// by its id), so the poster's cursor sees it here.
    pub async fn post(
        &self,
        login: &Login,
        address: &str,
        raw_body: &str,
        key: Option<&PostKey>,
    ) -> Result<Arc<Entry>, AppError> {
        let body = MessageBody::parse(raw_body, self.max_chars)?;
        // Claimed before the post goes to the log, so the hub knows the entry as this
        // poster's the moment the log brings it back, and answers it before the fan-out:
        // with Redis, usually before the log's own answer reaches this worker.
        let ticket = Ticket::next();
        // With the hub stopped (the server is stopping) the post is still stored, and
        // answered from its record below, as without a claim.
        let mut claim = self.hub.claim(ticket).await.ok();
        // The rate is charged by the log, after validation: a refused message costs none.
        let post = Post {
            login: &login.id,
            address,
            from: &login.name,
            body: &body,
            key,
            ticket,
        };
        let record = tokio::select! {
            biased;
            // Stored: the log's answer is no longer needed.
            entry = claimed(&mut claim) => return Ok(entry),
            record = self.log.append(post) => record?,
        };
        tracing::debug!(user = %login.name, id = %record.id, "message posted");
        let waited = tokio::select! {
            biased;
            entry = claimed(&mut claim) => Ok(Some(entry)),
            // A repeat of an earlier post (which has its own entry), or an entry that came
            // back some other way (a restart of the log): found by its id.
            waited = self.hub.wait_for(record.id.clone(), OWN_ENTRY_WAIT) => waited,
        };
        match waited {
            Ok(Some(entry)) => Ok(entry),
            // Stored, but this instance's hub does not have it (its follower is behind,
            // the server is stopping, or it is a repeat older than the cache): the answer
            // is still the truth, rendered here.
            Ok(None) | Err(_) => render(&self.templates, &record)
                .ok_or_else(|| AppError::Internal("cannot render the message".into())),
        }
    }

    /// The long poll (see [`HubHandle::poll`]), its cursor vetted first.
    pub async fn poll(&self, cursor: Option<Cursor>, hold: Duration) -> Batch {
        let cursor = self.vet(cursor).await;
        self.hub.poll(cursor, hold).await
    }

    /// A WebSocket's feed (see [`HubHandle::subscribe`]), its cursor vetted first.
    pub async fn subscribe(&self, cursor: Option<Cursor>) -> Result<Subscription, HubClosed> {
        let cursor = self.vet(cursor).await;
        self.hub.subscribe(cursor).await
    }

    /// A cursor past everything this instance's hub holds is either one another instance
    /// gave out first (waited for) or one nobody issued: crafted, or from a log since lost.
    /// The log tells them apart; the second is a cursor the room does not know, answered
    /// with `reset` at once instead of waiting and costing every post a check. If the log
    /// cannot tell in time, the cursor waits (the wait is bounded in any case).
    async fn vet(&self, cursor: Option<Cursor>) -> Option<Cursor> {
        let Some(id) = cursor.as_ref().and_then(|c| self.hub.ahead(c)) else {
            return cursor;
        };
        match tokio::time::timeout(LOG_CHECK_WAIT, self.log.has_reached(&id)).await {
            Ok(Ok(false)) => Some(Cursor::unknown()),
            _ => cursor,
        }
    }

    /// The follower's pause switch (for tests, and for maintenance).
    pub fn pause(&self) -> FollowerPause {
        self.pause.clone()
    }
}

/// The entry of a post's claim (see [`HubHandle::claim`]); never, if the hub let it go.
async fn claimed(claim: &mut Option<oneshot::Receiver<Arc<Entry>>>) -> Arc<Entry> {
    if let Some(receiver) = claim {
        if let Ok(entry) = receiver.await {
            return entry;
        }
        // A receiver is not polled again once it has answered.
        *claim = None;
    }
    std::future::pending().await
}

/// Holds this instance's follower still: while paused, the instance serves what it has
/// and waits for the rest (posts still go to the log); on resume it reads on from where it
/// stopped.
#[derive(Clone)]
pub struct FollowerPause(Arc<watch::Sender<bool>>);

impl FollowerPause {
    pub fn pause(&self) {
        self.0.send_replace(true);
    }

    pub fn resume(&self) {
        self.0.send_replace(false);
    }
}

/// The log as this instance's hub is fed from it: each record rendered once, in the hub's
/// own task (see `hub::Feed`), and nothing taken while paused.
struct Follower {
    source: Box<dyn LogSource>,
    templates: Arc<Templates>,
    paused: watch::Receiver<bool>,
    /// Kept so the switch always has a sender (its receiver then never errs).
    _pause: FollowerPause,
}

impl Feed for Follower {
    fn next(mut self: Box<Self>) -> BoxFuture<'static, (Box<dyn Feed>, Option<FeedEvent>)> {
        Box::pin(async move {
            let event = loop {
                // A closed switch cannot happen (`_pause` holds its sender).
                let _ = self.paused.wait_for(|paused| !paused).await;
                tokio::select! {
                    event = self.source.next() => break event,
                    // A pause takes effect at once: the read in flight is dropped, and made
                    // again from the same place on resume.
                    _ = self.paused.wait_for(|paused| *paused) => continue,
                }
            };
            let event = event.map(|event| match event {
                LogEvent::Appended(records) => FeedEvent::Entries(
                    records
                        .iter()
                        .filter_map(|r| Some((render(&self.templates, r)?, r.ticket)))
                        .collect(),
                ),
                LogEvent::Restart(snapshot) => {
                    FeedEvent::Restart(render_snapshot(&self.templates, snapshot))
                }
            });
            (self as Box<dyn Feed>, event)
        })
    }
}

/// A record as every client receives it: its `html` rendered, its JSON and frame encoded,
/// once. `None` (logged) if the templates cannot render it.
pub fn render(templates: &Templates, record: &Record) -> Option<Arc<Entry>> {
    match templates.build_message(
        record.id.clone(),
        &record.from,
        record.body.clone(),
        record.kind,
        record.crowd.clone(),
    ) {
        Ok(message) => Some(Arc::new(Entry::new(message))),
        Err(error) => {
            tracing::error!(%error, id = %record.id, "cannot render an entry of the log");
            None
        }
    }
}

fn render_snapshot(templates: &Templates, snapshot: Snapshot) -> LogStart {
    LogStart {
        epoch: snapshot.epoch,
        floor: snapshot.floor,
        entries: snapshot
            .records
            .iter()
            .filter_map(|r| render(templates, r))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::assets::Assets;
    use crate::domain::{MessageId, Position, UserName};
    use crate::hub::MAX_AHEAD;
    use crate::store::PresenceSettings;

    async fn room_in_memory(metrics: Arc<Metrics>) -> Room {
        room_over(metrics, |log| log).await
    }

    /// A room whose log is the memory store's, wrapped by `wrap`.
    async fn room_over(
        metrics: Arc<Metrics>,
        wrap: impl FnOnce(Arc<dyn Log>) -> Arc<dyn Log>,
    ) -> Room {
        let settings = PresenceSettings {
            notices: false,
            leave_grace: Duration::from_secs(10),
            poll_window: Duration::from_secs(30),
        };
        let defaults = crate::config::Settings::defaults();
        let backend = crate::store::open(&defaults, &settings, metrics.clone())
            .await
            .unwrap();
        let templates = Arc::new(Templates::load(&Assets::Embedded).unwrap());
        let size = RoomSize {
            cache_size: 200,
            socket_backlog: 16,
            max_message_chars: 2000,
        };
        Room::start(wrap(backend.log), backend.start, size, templates, metrics)
    }

    /// A log that stores at once but whose answer takes a minute to come back, as a
    /// script's reply can trail the entry its follower already read.
    struct SlowReply(Arc<dyn Log>);

    impl Log for SlowReply {
        fn append<'a>(
            &'a self,
            post: crate::store::Post<'a>,
        ) -> BoxFuture<'a, Result<crate::store::Record, crate::store::StoreError>> {
            Box::pin(async move {
                let record = self.0.append(post).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                record
            })
        }
        fn follow(&self) -> Box<dyn crate::store::LogSource> {
            self.0.follow()
        }
        fn has_reached<'a>(
            &'a self,
            id: &'a MessageId,
        ) -> BoxFuture<'a, Result<bool, crate::store::StoreError>> {
            self.0.has_reached(id)
        }
    }

    /// The poster is answered as soon as its entry is in this instance's hub, whether or
    /// not the log's own answer has come.
    #[tokio::test]
    async fn a_poster_is_answered_by_its_entry_before_the_logs_reply() {
        let room = room_over(Arc::new(Metrics::default()), |log| Arc::new(SlowReply(log))).await;
        let login = Login::new(UserName::parse("Ann").unwrap());
        let posted = tokio::time::timeout(
            Duration::from_secs(10),
            room.post(&login, "192.0.2.1", "hello", None),
        )
        .await
        .expect("answered before the log's reply")
        .unwrap();
        assert_eq!(posted.message.body.as_str(), "hello");
        let snapshot = room.hub.snapshot().await.unwrap();
        assert_eq!(snapshot.entries.len(), 1);
        assert_eq!(snapshot.entries[0].message.id, posted.message.id);
    }

    /// A receiver answered with a new entry asks again at once with it as its cursor, on
    /// another thread; by then the hub's head must already be that entry, or the cursor
    /// looks like one from the future and is sent to the log to be vetted. The first of
    /// many waiters checks while the hub is still answering the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_head_is_published_before_any_receiver_hears_of_an_entry() {
        let metrics = Arc::new(Metrics::default());
        let room = room_in_memory(metrics.clone()).await;
        let login = Login::new(UserName::parse("Ann").unwrap());
        let first = room.post(&login, "192.0.2.1", "first", None).await.unwrap();
        let cursor = Some(Cursor::from(&first.message.id));
        let hub = room.hub.clone();
        let checker_cursor = cursor.clone();
        // On a thread of its own, as a worker of the server is: woken there, it runs while
        // the hub's task is still answering the others.
        let checker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let text = hub
                    .poll(checker_cursor, Duration::from_secs(30))
                    .await
                    .text();
                let batch: serde_json::Value = serde_json::from_str(&text).unwrap();
                let id = batch["messages"][0]["id"].as_str().unwrap().to_owned();
                hub.ahead(&Cursor::from(id.clone())).map(|_| id)
            })
        });
        while metrics.waiting_polls.load(Relaxed) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut others = Vec::new();
        for _ in 0..5000 {
            let hub = room.hub.clone();
            let cursor = cursor.clone();
            others.push(tokio::spawn(async move {
                hub.poll(cursor, Duration::from_secs(30)).await
            }));
        }
        while metrics.waiting_polls.load(Relaxed) < 5001 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        room.post(&login, "192.0.2.1", "second", None)
            .await
            .unwrap();
        let ahead = checker.join().unwrap();
        assert_eq!(
            ahead, None,
            "the answered cursor was still ahead of the hub's head"
        );
        for other in others {
            other.await.unwrap();
        }
    }

    /// Past [`MAX_AHEAD`] clients waiting ahead of the hub, the next cursor ahead is
    /// answered with `reset` at once instead of joining them (the hub is asked directly,
    /// without the log's vetting, as a cursor the log has reached would be).
    #[tokio::test]
    async fn the_clients_waiting_ahead_of_the_hub_are_bounded() {
        let metrics = Arc::new(Metrics::default());
        let room = room_in_memory(metrics.clone()).await;
        let login = Login::new(UserName::parse("Ann").unwrap());
        let first = room.post(&login, "192.0.2.1", "first", None).await.unwrap();
        let first = &first.message.id;
        let ahead = MessageId::new(
            first.epoch(),
            Position {
                ms: first.position().ms + 60_000,
                seq: 0,
            },
        );
        let cursor = Some(Cursor::from(&ahead));
        let mut held = Vec::new();
        for _ in 0..MAX_AHEAD {
            let hub = room.hub.clone();
            let cursor = cursor.clone();
            held.push(tokio::spawn(async move {
                hub.poll(cursor, Duration::from_secs(30)).await
            }));
        }
        while metrics.waiting_polls.load(Relaxed) < MAX_AHEAD as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let over = tokio::time::timeout(
            Duration::from_secs(5),
            room.hub.poll(cursor, Duration::from_secs(30)),
        )
        .await
        .expect("answered at once");
        let text = over.text();
        assert!(text.contains("\"reset\":true"), "{text}");
        assert!(text.contains(first.as_str()), "{text}");
        for poll in held {
            poll.abort();
        }
    }
}
