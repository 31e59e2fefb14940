//! The room's backend, chosen once at start ([`open`]): the log that gives every entry its
//! id and keeps it, the presence registry, and the list of ended logins. `memory` keeps all
//! three in this process (the embedded default); `redis` shares them between every instance
//! on one Redis. Past [`open`] nothing asks which backend runs: both are the same three
//! traits, and every message takes the same road through them (see `room`).

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;

use crate::auth::LoginId;
use crate::config::{Backend as Kind, Settings};
use crate::domain::{
    Crowd, Epoch, Kind as EntryKind, MessageBody, MessageId, Position, PostKey, Ticket, UserName,
};
use crate::metrics::Metrics;
pub use redis::StoreStartError;

/// Why the log did not take a post.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("too many messages; wait {0:?}")]
    RateLimited(Duration),
    /// The store cannot be reached (or did not answer in time); nothing was stored.
    #[error("the message store is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

/// How long a post's key is remembered: a repeat within this time, on any instance, is
/// answered with the first post's message and stores nothing.
pub const POST_KEY_TTL: Duration = Duration::from_secs(600);

/// A post on its way into the log: who, from where, what, and what makes a resend of it
/// the same post.
pub struct Post<'a> {
    pub login: &'a LoginId,
    /// The client's address, for its posting budget (see `forwarded`).
    pub address: &'a str,
    pub from: &'a UserName,
    pub body: &'a MessageBody,
    /// The client's key for this post; `None`: the client will not resend it.
    pub key: Option<&'a PostKey>,
    /// Stored with the entry, for this instance's hub to know it as the poster's own.
    pub ticket: Ticket,
}

/// An entry as the log keeps it, before this instance renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: MessageId,
    pub from: UserName,
    pub body: MessageBody,
    pub kind: EntryKind,
    /// Who a notice is about; `None` for a post.
    pub crowd: Option<Crowd>,
    /// The post's [`Ticket`] when this instance stored it; `None` for every other entry.
    pub ticket: Option<Ticket>,
}

impl Record {
    pub fn post(id: MessageId, from: UserName, body: MessageBody) -> Self {
        Self {
            id,
            from,
            body,
            kind: EntryKind::Message,
            crowd: None,
            ticket: None,
        }
    }

    /// The same record, known as the post that had `ticket` on this instance.
    pub fn with_ticket(self, ticket: Option<Ticket>) -> Self {
        Self { ticket, ..self }
    }

    /// A `join` or `leave` notice: from its first name, its body the sentence.
    pub fn notice(id: MessageId, kind: EntryKind, crowd: Crowd) -> Self {
        Self {
            id,
            from: crowd.first().clone(),
            body: crowd.body(kind),
            kind,
            crowd: Some(crowd),
            ticket: None,
        }
    }
}

/// Where a log stands when an instance (re)starts from it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Which life of the log this is.
    pub epoch: Epoch,
    /// The log is complete after this position: nothing at or before it is missing from
    /// what follows it (see `hub::cache`).
    pub floor: Position,
    /// Its newest records, oldest first.
    pub records: Vec<Record>,
}

/// What following the log yields.
#[derive(Debug)]
pub enum LogEvent {
    /// Records appended since the last event, oldest first.
    Appended(Vec<Record>),
    /// The log is not the one followed so far (its data was lost, or the follower fell
    /// behind its trimming): start over from this.
    Restart(Snapshot),
}

/// The room's log: it gives ids, in order, and every instance follows it.
pub trait Log: Send + Sync {
    /// Charges the post to its login's and its address's budgets and appends it; returns
    /// the record stored. A post whose key this login used within [`POST_KEY_TTL`] is not
    /// charged or stored again: the answer is the record the first one stored. An error
    /// means nothing was stored, ever (not even later, by a store that was stalled).
    fn append<'a>(&'a self, post: Post<'a>) -> BoxFuture<'a, Result<Record, StoreError>>;

    /// Everything appended from now on, for this instance. Call once.
    fn follow(&self) -> Box<dyn LogSource>;

    /// Whether the log has given out `id`'s position, or one after it: a cursor past the
    /// newest id is one no instance can have issued. An error: it could not tell.
    fn has_reached<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// One instance's view of the log as it grows. `next` must be safe to drop at any await:
/// the follower drops it to pause.
pub trait LogSource: Send {
    /// The next event; `None` when the log is closed for good.
    fn next(&mut self) -> BoxFuture<'_, Option<LogEvent>>;
}

/// Who is online across instances, and who announces the changes. Notices are folded:
/// at most one `join` and one `leave` entry per [`FOLD_PERIOD`] (longer in a crowd, see
/// [`FOLD_PERIOD_MAX`]), each holding every login that came or went since the last one (a
/// lone one after a quiet period is added at once).
pub trait PresenceRegistry: Send {
    /// These logins have their first connection on this instance, in the order they came.
    fn connected(&mut self, logins: Vec<(LoginId, UserName)>) -> BoxFuture<'_, ()>;
    /// `login` has had no connection here for its linger: it leaves after the grace unless
    /// it connects again, here or elsewhere.
    fn gone(&mut self, login: &LoginId);
    /// `login` logged out: it leaves at once, from every instance.
    fn logged_out(&mut self, login: LoginId) -> BoxFuture<'_, ()>;
    /// Once a second, at `at` (the tick's own instant): `here` is every login connected to
    /// this instance now.
    fn tick<'a>(
        &'a mut self,
        at: tokio::time::Instant,
        here: &'a [(LoginId, UserName)],
    ) -> BoxFuture<'a, ()>;
    /// How many are online, and the first `limit` of them (since, in Unix ms; name),
    /// oldest first; `None` when the store did not answer.
    fn list(&mut self, limit: usize) -> BoxFuture<'_, Option<OnlineRows>>;
    /// Whether [`PresenceRegistry::tick`] reads `here` (a registry shared by instances
    /// does); when not, it gets an empty list rather than a copy of every login here each
    /// second.
    fn reads_here(&self) -> bool {
        true
    }
}

/// How many are online, and the first of them: (since, in Unix ms; name), oldest first.
pub type OnlineRows = (usize, Vec<(u64, UserName)>);

/// At most one notice of each kind per this long (see [`PresenceRegistry`]).
pub const FOLD_PERIOD: Duration = Duration::from_secs(1);
/// While a crowd keeps coming (or going), each folded notice waits twice as long as the
/// one before, up to this: a storm of arrivals is a handful of entries fanned out to
/// everyone, not one a second. A quiet period brings it back to [`FOLD_PERIOD`].
pub const FOLD_PERIOD_MAX: Duration = Duration::from_secs(4);

/// Logins ended by logout, for every instance and until their cookies would expire.
pub trait LogoutList: Send + Sync {
    /// Records that `login` is ended until `until` (Unix seconds).
    fn record<'a>(
        &'a self,
        login: &'a LoginId,
        until: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Logouts recorded from now on (by any instance), in batches; `None` when this backend
    /// has only this instance (then [`LogoutList::record`] is all there is).
    fn follow(&self) -> Option<Box<dyn LogoutSource>>;
}

/// Ended logins as other instances record them.
pub trait LogoutSource: Send {
    /// The next batch of (login, until). After anything that may have lost some (an
    /// outage), the whole list again.
    fn next(&mut self) -> BoxFuture<'_, Vec<(LoginId, u64)>>;
}

/// What presence is told by the configuration.
#[derive(Debug, Clone)]
pub struct PresenceSettings {
    /// Whether `join` and `leave` entries are added to the room.
    pub notices: bool,
    /// How long a login's last connection must be gone before it leaves.
    pub leave_grace: Duration,
    /// How long after its last poll a poll-only login still counts as connected.
    pub poll_window: Duration,
}

/// The backend's three parts, opened together.
pub struct Backend {
    pub log: Arc<dyn Log>,
    /// Where the log stood at start: what the hub begins with.
    pub start: Snapshot,
    /// `None` when `presence.enabled` is off.
    pub presence: Option<Box<dyn PresenceRegistry>>,
    pub logouts: Arc<dyn LogoutList>,
    /// Logins already ended when this instance started (loaded before it serves anyone,
    /// so a restart does not bring a logged-out cookie back).
    pub ended: Vec<(LoginId, u64)>,
}

/// Opens the configured backend. With Redis, refuses to start without it.
pub async fn open(
    settings: &Settings,
    presence: &PresenceSettings,
    metrics: Arc<Metrics>,
) -> Result<Backend, StoreStartError> {
    let presence = settings.presence.enabled.then_some(presence);
    match settings.store.backend {
        Kind::Memory => Ok(memory::open(&settings.room, presence, &metrics)),
        Kind::Redis => redis::open(settings, presence, metrics).await,
    }
}
