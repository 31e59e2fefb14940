//! The hub task and the state it alone owns.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::cache::{Cache, Since};
use super::frame::{self, Batch, Entry, Frame};
use super::{Command, Feed, FeedEvent, HubConfig, LogStart, Snapshot, Subscription};
use crate::domain::{Cursor, Epoch, MessageId, Position, Ticket};
use crate::metrics::Metrics;

/// How often polls whose clients gave up are dropped from the waiters.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Most clients waiting for entries this instance has not read yet. Each new entry
/// re-checks them all, so past this a cursor ahead is answered as unknown (`reset`) rather
/// than let a crowd of crafted cursors slow every post. Legitimate ones are a moment's
/// worth of clients that heard of an entry from another instance first.
pub(crate) const MAX_AHEAD: usize = 1_000;

/// Takes the posters waiting for their entries first, then the feed, then the clients'
/// commands (polls, sockets, pages): an entry is fanned out, and its poster
/// answered, without waiting behind every client's next poll. Each command reads the cache
/// as it is when handled, so the order between the queues does not matter to
/// exactly-once; within each queue it is kept.
pub(crate) async fn run(
    feed: Box<dyn Feed>,
    mut posters: mpsc::Receiver<Command>,
    mut commands: mpsc::Receiver<Command>,
    mut room: Room,
) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The feed's next event, kept across the other branches (never dropped half-way).
    let mut next = Some(feed.next());
    loop {
        tokio::select! {
            biased;
            // A poster already waiting is registered before its entry is taken.
            Some(command) = posters.recv() => room.handle(command),
            (feed, event) = async { next.as_mut().expect("checked by the guard").await }, if next.is_some() => {
                next = match event {
                    Some(event) => {
                        // Every claim sent before its post went to the log is in the queue
                        // by now, though maybe not read when this branch was polled.
                        while let Ok(command) = posters.try_recv() {
                            room.handle(command);
                        }
                        room.take(event);
                        Some(feed.next())
                    }
                    None => None,
                };
            }
            command = commands.recv() => match command {
                Some(command) => room.handle(command),
                None => break,
            },
            _ = sweep.tick() => room.drop_abandoned_polls(),
        }
    }
}

pub(crate) struct Room {
    cache: Cache,
    /// Held long polls. All of them are at the newest message (else they would have been
    /// answered at once), so one frame answers them all.
    waiters: Vec<oneshot::Sender<Batch>>,
    /// Length at which `waiters` is pruned before growing further.
    prune_at: usize,
    /// Posters waiting for their entry to come back from the log.
    posters: Vec<(MessageId, oneshot::Sender<Arc<Entry>>)>,
    /// Posters waiting for the entry of their ticket (see [`super::HubHandle::claim`]).
    claims: Vec<(Ticket, oneshot::Sender<Arc<Entry>>)>,
    /// Clients whose cursor is past what this hub has read (another instance read
    /// further); each is answered once the hub gets past it.
    ahead: Vec<Ahead>,
    /// The WebSockets' feed; `None` once the room is shut down.
    sockets: Option<broadcast::Sender<Frame>>,
    /// The cache's epoch and head, for [`super::HubHandle::ahead`].
    head: watch::Sender<(Epoch, Position)>,
    metrics: Arc<Metrics>,
}

impl Room {
    pub(crate) fn new(
        config: HubConfig,
        metrics: Arc<Metrics>,
    ) -> (Self, Box<dyn Feed>, watch::Receiver<(Epoch, Position)>) {
        let (sockets, _) = broadcast::channel(config.socket_backlog.max(1));
        let LogStart {
            epoch,
            floor,
            entries,
        } = config.log;
        let cache = Cache::of_log(config.cache_size, epoch, floor, &entries);
        let (head, head_receiver) = watch::channel((cache.epoch().clone(), cache.head()));
        let room = Self {
            cache,
            waiters: Vec::new(),
            prune_at: MIN_PRUNE_AT,
            posters: Vec::new(),
            claims: Vec::new(),
            ahead: Vec::new(),
            sockets: Some(sockets),
            head,
            metrics,
        };
        (room, config.feed, head_receiver)
    }

    /// An event of the feed.
    fn take(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Entries(entries) => {
                let mut added = Vec::with_capacity(entries.len());
                let mut claimed = Vec::new();
                for (entry, ticket) in entries {
                    if self.cache.push(entry.clone()) {
                        claimed.extend(ticket.map(|ticket| (ticket, entry.clone())));
                        added.push(entry);
                    }
                }
                // The head before anyone hears of the entries: a receiver answered below
                // asks again at once with the newest id as its cursor, and a head still
                // behind would take it for a cursor from the future (a trip to the log
                // to vet it; with Redis, one per early poll).
                self.publish_head();
                // The posters first, in this same step: their answers are one per post
                // and reach their threads before the thousands of poll answers do; nothing
                // they send next can be handled before the fan-out below is done.
                self.release_claims(claimed);
                self.release_posters();
                for entry in added {
                    self.fan_out(entry);
                }
            }
            FeedEvent::Restart(log) => self.restart(log),
        }
    }

    /// Tells the routes how far the cache goes. Called wherever the cache takes entries,
    /// before anyone hears of them (see `take`).
    fn publish_head(&self) {
        let (epoch, head) = (self.cache.epoch(), self.cache.head());
        self.head.send_if_modified(|published| {
            if published.0 != *epoch {
                *published = (epoch.clone(), head);
            } else if published.1 != head {
                published.1 = head;
            } else {
                return false;
            }
            true
        });
    }

    /// Whether one more client may wait ahead of the hub (see [`MAX_AHEAD`]).
    fn room_ahead(&self) -> bool {
        self.ahead.len() < MAX_AHEAD
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Claim { ticket, done } => {
                // Those whose posts were refused (or who were answered otherwise) go.
                self.claims.retain(|(_, done)| !done.is_closed());
                self.claims.push((ticket, done));
            }
            Command::WaitFor { id, done } => {
                self.posters.push((id, done));
                self.release_posters();
            }
            Command::Poll { cursor, reply } => self.poll(cursor, reply),
            Command::Subscribe { cursor, reply } => match self.cache.since(cursor.as_ref()) {
                Since::Ahead if !self.room_ahead() => self.subscribe(self.cache.reset(), reply),
                Since::Ahead => {
                    if let Some(cursor) = cursor {
                        self.ahead.push(Ahead::Socket { cursor, reply });
                    }
                }
                since => self.subscribe(since, reply),
            },
            Command::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    entries: self.cache.entries().cloned().collect(),
                    cursor: self.cache.newest_cursor(),
                });
            }
            Command::Shutdown { done } => {
                self.sockets = None;
                let empty = frame::empty();
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Batch::Frame(empty.clone()));
                }
                for client in self.ahead.drain(..) {
                    if let Ahead::Poll { reply, .. } = client {
                        let _ = reply.send(Batch::Frame(empty.clone()));
                    }
                    // A socket still waiting to subscribe is refused by dropping `reply`.
                }
                self.update_waiting_gauge();
                let _ = done.send(());
            }
        }
    }

    /// A socket's replay (what `since` found after its cursor) and its place in the feed,
    /// in one step, so nothing falls in between.
    fn subscribe(&self, since: Since, reply: oneshot::Sender<Subscription>) {
        let Some(sockets) = &self.sockets else {
            return; // Shut down: dropping `reply` says so.
        };
        let (replay, replayed) = match since {
            Since::Wait | Since::Ahead => (None, 0),
            Since::Messages { entries, reset } => {
                (Some(frame::batch(&entries, reset)), entries.len())
            }
        };
        let _ = reply.send(Subscription {
            replay,
            replayed,
            feed: sockets.subscribe(),
        });
    }

    /// Answers the clients the hub has now caught up with: polls with what follows their
    /// cursor (or they join the waiters at the head), sockets with their subscription.
    fn answer_ahead(&mut self) {
        if self.ahead.is_empty() {
            return;
        }
        for client in std::mem::take(&mut self.ahead) {
            match (self.cache.since(Some(client.cursor())), client) {
                (Since::Ahead, client) => self.ahead.push(client),
                (since, Ahead::Poll { cursor, reply }) => {
                    self.answer_poll(since, Some(cursor), reply)
                }
                (since, Ahead::Socket { reply, .. }) => self.subscribe(since, reply),
            }
        }
        self.update_waiting_gauge();
    }

    fn publish(&mut self, entry: Arc<Entry>) {
        if self.cache.push(entry.clone()) {
            self.publish_head();
            self.fan_out(entry);
        }
    }

    /// Hands an entry the cache has just taken to every receiver.
    fn fan_out(&mut self, entry: Arc<Entry>) {
        self.metrics.posted.fetch_add(1, Relaxed);
        let mut delivered = 0;
        for waiter in self.waiters.drain(..) {
            if waiter.send(Batch::Frame(entry.frame.clone())).is_ok() {
                delivered += 1;
            }
        }
        if let Some(sockets) = &self.sockets {
            // Never waits: a socket that falls behind finds out from its own receiver.
            let _ = sockets.send(entry.frame.clone());
        }
        self.metrics.delivered.fetch_add(delivered, Relaxed);
        self.answer_ahead();
        self.update_waiting_gauge();
    }

    /// Replaces the cache with the store's log. When the log is another epoch, or does not
    /// continue from what this hub holds, held polls and sockets may have missed messages:
    /// they get the new log's entries with `reset`.
    fn restart(&mut self, log: LogStart) {
        let continues = log.epoch == *self.cache.epoch() && log.floor <= self.cache.head();
        if continues {
            for entry in log.entries {
                self.publish(entry);
            }
        } else {
            let capacity = self.cache.capacity();
            self.cache = Cache::of_log(capacity, log.epoch, log.floor, &log.entries);
            self.publish_head();
            let frame = frame::batch(&log.entries, true);
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(Batch::of(log.entries.clone(), true));
            }
            if let Some(sockets) = &self.sockets {
                let _ = sockets.send(frame);
            }
            self.answer_ahead();
            self.update_waiting_gauge();
        }
        self.release_posters();
    }

    /// Answers the posters whose tickets came back with these entries.
    fn release_claims(&mut self, entries: Vec<(Ticket, Arc<Entry>)>) {
        for (ticket, entry) in entries {
            if let Some(at) = self.claims.iter().position(|(t, _)| *t == ticket) {
                let (_, done) = self.claims.swap_remove(at);
                let _ = done.send(entry);
            }
        }
    }

    /// Answers the posters whose entry the hub now holds with it. Those whose epoch has
    /// passed, or whose entry the hub moved past without (dropped, which answers them with
    /// nothing) will not get it here.
    fn release_posters(&mut self) {
        if self.posters.is_empty() {
            return;
        }
        let head = self.cache.head();
        for (id, done) in std::mem::take(&mut self.posters) {
            if *id.epoch() != *self.cache.epoch() {
                continue;
            }
            if id.position() > head {
                self.posters.push((id, done));
            } else if let Some(entry) = self.cache.get(id.position()) {
                let _ = done.send(entry.clone());
            }
        }
    }

    fn poll(&mut self, cursor: Option<Cursor>, reply: oneshot::Sender<Batch>) {
        if self.sockets.is_none() {
            let _ = reply.send(Batch::Frame(frame::empty()));
            return;
        }
        let since = self.cache.since(cursor.as_ref());
        self.answer_poll(since, cursor, reply);
    }

    /// A poll's answer now, or its place among the waiters at the head or ahead of it.
    fn answer_poll(&mut self, since: Since, cursor: Option<Cursor>, reply: oneshot::Sender<Batch>) {
        match since {
            Since::Messages { entries, reset } => {
                let count = entries.len() as u64;
                if reply.send(Batch::of(entries, reset)).is_ok() {
                    self.metrics.delivered.fetch_add(count, Relaxed);
                }
            }
            Since::Ahead if !self.room_ahead() => {
                let since = self.cache.reset();
                self.answer_poll(since, cursor, reply);
            }
            Since::Ahead => {
                if let Some(cursor) = cursor {
                    self.ahead.push(Ahead::Poll { cursor, reply });
                }
                self.update_waiting_gauge();
            }
            Since::Wait => {
                if self.waiters.len() >= self.prune_at {
                    // Amortised clean-up, so a burst of abandoned polls cannot grow the
                    // list faster than the periodic sweep empties it.
                    self.drop_abandoned_polls();
                    self.prune_at = (self.waiters.len() * 2).max(MIN_PRUNE_AT);
                }
                self.waiters.push(reply);
                self.update_waiting_gauge();
            }
        }
    }

    pub(crate) fn drop_abandoned_polls(&mut self) {
        self.waiters.retain(|waiter| !waiter.is_closed());
        self.ahead.retain(|client| !client.is_closed());
        self.update_waiting_gauge();
    }

    fn update_waiting_gauge(&self) {
        let ahead = self
            .ahead
            .iter()
            .filter(|c| matches!(c, Ahead::Poll { .. }))
            .count();
        self.metrics
            .waiting_polls
            .store((self.waiters.len() + ahead) as u64, Relaxed);
    }
}

const MIN_PRUNE_AT: usize = 1024;

/// A client waiting for this hub to catch up with its cursor.
enum Ahead {
    Poll {
        cursor: Cursor,
        reply: oneshot::Sender<Batch>,
    },
    Socket {
        cursor: Cursor,
        reply: oneshot::Sender<Subscription>,
    },
}

impl Ahead {
    fn cursor(&self) -> &Cursor {
        match self {
            Self::Poll { cursor, .. } | Self::Socket { cursor, .. } => cursor,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Self::Poll { reply, .. } => reply.is_closed(),
            Self::Socket { reply, .. } => reply.is_closed(),
        }
    }
}
