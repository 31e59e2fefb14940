//! The room's fan-out on this instance: one task owns the message cache, the held long
//! polls and the broadcast to WebSockets (MessageMixin's job in Tornado). It gives no ids:
//! it ingests the entries of the log this instance follows (see `room`), in the log's
//! order. Everything else talks to it through a cloneable [`HubHandle`]; because the task
//! handles one command at a time, an entry is in the cache and on its way to every receiver
//! before the next command is looked at, which is what makes cursor delivery exactly-once.

mod cache;
pub mod frame;
mod task;

use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::domain::{Cursor, Epoch, MessageId, Position, Ticket};
use crate::metrics::Metrics;
pub use frame::{Batch, Entry, Frame, Pieces};
#[cfg(test)]
pub(crate) use task::MAX_AHEAD;

/// Commands waiting for the hub; senders wait when it is full, so a flood cannot grow it.
const COMMAND_QUEUE: usize = 4096;
/// Posters waiting for their entries: a queue of their own, which the hub reads before the
/// clients' commands, so a post is not held up behind every client's next poll.
const POSTER_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[error("the room is shut down")]
pub struct HubClosed;

/// The room as a page render sees it.
pub struct Snapshot {
    /// Cached messages, oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// The cursor for a client that has seen all of them.
    pub cursor: Cursor,
}

/// A live feed for one WebSocket.
pub struct Subscription {
    /// What came after the client's cursor, if anything: to be sent first.
    pub replay: Option<Frame>,
    /// How many messages `replay` holds.
    pub replayed: usize,
    /// Every message posted from now on. A receiver that falls more than the channel's
    /// capacity behind gets `Lagged`: it is too slow and should be disconnected.
    pub feed: broadcast::Receiver<Frame>,
}

/// Where the hub's entries come from: the log this instance follows, rendered (see
/// `room`). The hub's task polls it before anything else, so an entry is fanned out as
/// soon as the log has it.
pub trait Feed: Send {
    /// The next event, and the feed to ask for the one after; `None` when the log is
    /// closed for good. The future is kept across the hub's other work, never dropped
    /// half-way (a blocking read of the store would be sent again).
    fn next(self: Box<Self>) -> BoxFuture<'static, (Box<dyn Feed>, Option<FeedEvent>)>;
}

/// What the feed brings.
pub enum FeedEvent {
    /// Entries of the log, oldest first: each goes to the cache and to every receiver,
    /// unless the hub has it already. A post's [`Ticket`] when this instance stored it.
    Entries(Vec<(Arc<Entry>, Option<Ticket>)>),
    /// The log is not the one followed so far (its data was lost, or the follower missed
    /// entries): start over from it. Receivers that may have missed messages are told
    /// (`reset`).
    Restart(LogStart),
}

pub(crate) enum Command {
    Claim {
        ticket: Ticket,
        done: oneshot::Sender<Arc<Entry>>,
    },
    WaitFor {
        id: MessageId,
        done: oneshot::Sender<Arc<Entry>>,
    },
    Poll {
        cursor: Option<Cursor>,
        reply: oneshot::Sender<Batch>,
    },
    Subscribe {
        cursor: Option<Cursor>,
        reply: oneshot::Sender<Subscription>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// The only way into the room. Cheap to clone: one per worker, per connection if need be.
#[derive(Clone)]
pub struct HubHandle {
    commands: mpsc::Sender<Command>,
    /// Posters waiting for their entries: read before `commands`.
    posters: mpsc::Sender<Command>,
    /// The epoch and newest position the hub holds, as of its last step.
    head: watch::Receiver<(Epoch, Position)>,
}

/// How the hub is sized, the log it starts from, and the feed that continues it.
pub struct HubConfig {
    pub cache_size: usize,
    /// Frames a WebSocket may fall behind before it is dropped as too slow.
    pub socket_backlog: usize,
    pub log: LogStart,
    pub feed: Box<dyn Feed>,
}

/// Where the room's log stands when the hub (re)starts from it.
pub struct LogStart {
    /// Which life of the log this is.
    pub epoch: Epoch,
    /// The log is complete after this position (see `cache`).
    pub floor: Position,
    /// Its newest entries, oldest first.
    pub entries: Vec<Arc<Entry>>,
}

impl HubHandle {
    /// Starts the room's task on the current Tokio runtime.
    pub fn start(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (posters, posters_receiver) = mpsc::channel(POSTER_QUEUE);
        let (room, feed, head) = task::Room::new(config, metrics);
        tokio::spawn(task::run(feed, posters_receiver, receiver, room));
        Self {
            commands,
            posters,
            head,
        }
    }

    /// The id `cursor` names if it is of the hub's epoch and past everything the hub holds
    /// (the client may know of an entry this instance has not read yet, or may be lying).
    pub fn ahead(&self, cursor: &Cursor) -> Option<MessageId> {
        let head = self.head.borrow();
        let position = cursor.position_in(&head.0)?;
        (position > head.1).then(|| cursor.id()).flatten()
    }

    /// The entry of the post with `ticket`, as soon as the log brings it to this hub and
    /// before the hub fans it out: the poster is answered first, with the bytes every
    /// receiver gets. Claimed before the post goes to the log (see `room`); the answer
    /// never comes if the post is not stored, or comes back otherwise (a restart of the
    /// log): then [`HubHandle::wait_for`] its id.
    pub async fn claim(&self, ticket: Ticket) -> Result<oneshot::Receiver<Arc<Entry>>, HubClosed> {
        let (done, claimed) = oneshot::channel();
        self.posters
            .send(Command::Claim { ticket, done })
            .await
            .map_err(|_| HubClosed)?;
        Ok(claimed)
    }

    /// The hub's entry for `id` once it holds it: a poster's own message is in this
    /// instance's room (and answered with the bytes every receiver gets) before the poster
    /// hears back. `None` if the hub moved past `id` without it (another epoch) or did not
    /// get it within `limit`.
    pub async fn wait_for(
        &self,
        id: MessageId,
        limit: Duration,
    ) -> Result<Option<Arc<Entry>>, HubClosed> {
        let (done, reached) = oneshot::channel();
        self.posters
            .send(Command::WaitFor { id, done })
            .await
            .map_err(|_| HubClosed)?;
        Ok(tokio::time::timeout(limit, reached)
            .await
            .ok()
            .and_then(Result::ok))
    }

    /// The long poll: messages after `cursor` at once if there are any, else the next one
    /// posted, else (after `hold`) an empty answer. Never fails: a closed room answers empty.
    pub async fn poll(&self, cursor: Option<Cursor>, hold: Duration) -> Batch {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Poll { cursor, reply }).await.is_err() {
            return Batch::Frame(frame::empty());
        }
        // Dropping `answer` on timeout is the cancellation: the hub sees a closed sender.
        match tokio::time::timeout(hold, answer).await {
            Ok(Ok(batch)) => batch,
            _ => Batch::Frame(frame::empty()),
        }
    }

    /// A feed for a WebSocket that has seen everything up to `cursor`.
    pub async fn subscribe(&self, cursor: Option<Cursor>) -> Result<Subscription, HubClosed> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Subscribe { cursor, reply }).await?;
        answer.await.map_err(|_| HubClosed)
    }

    pub async fn snapshot(&self) -> Result<Snapshot, HubClosed> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await?;
        answer.await.map_err(|_| HubClosed)
    }

    /// Answers every held poll with no messages and ends every feed; from then on polls
    /// are answered at once.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.send(Command::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), HubClosed> {
        self.commands.send(command).await.map_err(|_| HubClosed)
    }
}
