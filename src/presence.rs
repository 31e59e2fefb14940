//! Who is online, and the `join`/`leave` notices.
//!
//! A login is online while it has an open WebSocket, or a long poll held or answered within
//! the poll window (the hold time plus a few seconds), on any instance. Each instance
//! counts its own connections per login ([`Presence::connect`], O(1) per connection event:
//! a lock and a counter; only a login's first connection here wakes the presence task).
//! The task looks once a second for logins whose last connection here has gone, and tells
//! the backend's registry (see `store`), which decides who is online across instances and
//! announces each change once.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::{Login, LoginId};
use crate::domain::{Timestamp, UserName};
use crate::store::PresenceRegistry;

/// How often the task looks for logins that left, and ticks the registry.
const TICK: Duration = Duration::from_secs(1);
/// How long a page or `/a/presence` waits for the registry's list; past it (the store is
/// stalled or slow) they get the last list this instance had.
const LIST_WAIT: Duration = Duration::from_millis(500);

/// One row of who is online: names only, never login ids, cookies or addresses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Online {
    pub name: String,
    /// When the login came online, RFC 3339 UTC.
    pub since: String,
}

/// The answer of `GET /a/presence`, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct WhoIsOnline {
    pub count: usize,
    pub users: Vec<Online>,
}

/// This instance's presence; cheap to clone. `Off` when `presence.enabled = false`.
#[derive(Clone)]
pub struct Presence(Option<Arc<Shared>>);

struct Shared {
    locals: Mutex<HashMap<LoginId, Local>>,
    commands: mpsc::UnboundedSender<Command>,
    poll_window: Duration,
    /// The last list the registry gave.
    last_list: Mutex<Option<Vec<Online>>>,
}

/// A login's connections on this instance.
struct Local {
    name: UserName,
    sockets: u32,
    polls: u32,
    /// Until when it counts as connected with none open: a socket's end is at once, a
    /// poll's is the poll window later (its client polls again right away).
    linger_until: Instant,
}

enum Command {
    /// A login's first connection here.
    Connected(LoginId, UserName),
    List(oneshot::Sender<Vec<Online>>),
}

/// Which connection a [`Connection`] is.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Socket,
    Poll,
}

/// A connection counted for its login until dropped.
pub struct Connection {
    shared: Arc<Shared>,
    login: Rc<Login>,
    via: Via,
}

impl Presence {
    pub fn off() -> Self {
        Self(None)
    }

    /// Starts the presence task on the current runtime, with the backend's registry;
    /// `poll_window` is how long after its last poll a poll-only login still counts as
    /// connected here.
    pub fn start(poll_window: Duration, registry: Box<dyn PresenceRegistry>) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            locals: Mutex::default(),
            commands,
            poll_window,
            last_list: Mutex::default(),
        });
        tokio::spawn(run(receiver, shared.clone(), registry));
        Self(Some(shared))
    }

    /// Counts a connection of `login` until the returned value is dropped. Once per poll:
    /// a lookup and a counter; only a login's first connection here allocates.
    pub fn connect(&self, login: &Rc<Login>, via: Via) -> Option<Connection> {
        let shared = self.0.as_ref()?;
        let mut locals = shared.locals.lock().unwrap_or_else(|e| e.into_inner());
        let local = match locals.get_mut(&login.id) {
            Some(local) => local,
            None => {
                // The first connection of this login here: the task decides on a join.
                let _ = shared
                    .commands
                    .send(Command::Connected(login.id.clone(), login.name.clone()));
                locals.entry(login.id.clone()).or_insert(Local {
                    name: login.name.clone(),
                    sockets: 0,
                    polls: 0,
                    linger_until: Instant::now(),
                })
            }
        };
        match via {
            Via::Socket => local.sockets += 1,
            Via::Poll => local.polls += 1,
        }
        drop(locals);
        Some(Connection {
            shared: shared.clone(),
            login: login.clone(),
            via,
        })
    }

    /// Who is online, oldest first; `None` when presence is off. Never waits on the store
    /// for more than [`LIST_WAIT`]: then it is the last list this instance had (or, before
    /// it had any, the logins connected here).
    pub async fn who(&self) -> Option<WhoIsOnline> {
        let shared = self.0.as_ref()?;
        let (reply, answer) = oneshot::channel();
        shared.commands.send(Command::List(reply)).ok()?;
        let users = match tokio::time::timeout(LIST_WAIT, answer).await {
            Ok(Ok(users)) => {
                let mut last = shared.last_list.lock().unwrap_or_else(|e| e.into_inner());
                *last = Some(users.clone());
                users
            }
            Ok(Err(_)) => return None,
            Err(_) => {
                tracing::debug!("presence list not ready in time; answering with the last one");
                shared.last_known()
            }
        };
        Some(WhoIsOnline {
            count: users.len(),
            users,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut locals = self.shared.locals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(local) = locals.get_mut(&self.login.id) {
            let now = Instant::now();
            let until = match self.via {
                Via::Socket => {
                    local.sockets = local.sockets.saturating_sub(1);
                    now
                }
                Via::Poll => {
                    local.polls = local.polls.saturating_sub(1);
                    now + self.shared.poll_window
                }
            };
            local.linger_until = local.linger_until.max(until);
        }
    }
}

impl Shared {
    /// The last list the registry gave, else the logins connected here (since: now).
    fn last_known(&self) -> Vec<Online> {
        let last = self.last_list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(users) = last.as_ref() {
            return users.clone();
        }
        drop(last);
        let now = Timestamp::now().unix_millis();
        self.connected_here()
            .iter()
            .map(|(_, name)| online_row(now, name))
            .collect()
    }

    /// Logins with no connection here for longer than the poll window: gone from here.
    fn take_gone(&self, now: Instant) -> Vec<LoginId> {
        let mut locals = self.locals.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<LoginId> = locals
            .iter()
            .filter(|(_, l)| l.sockets == 0 && l.polls == 0 && now >= l.linger_until)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            locals.remove(id);
        }
        gone
    }

    fn connected_here(&self) -> Vec<(LoginId, UserName)> {
        let locals = self.locals.lock().unwrap_or_else(|e| e.into_inner());
        locals
            .iter()
            .map(|(id, l)| (id.clone(), l.name.clone()))
            .collect()
    }
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    mut registry: Box<dyn PresenceRegistry>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Connected(login, name)) => registry.connected(login, name).await,
                Some(Command::List(reply)) => {
                    // Everyone who asked meanwhile gets the same list: after a stall the
                    // store is asked once, not once per page that waited.
                    // (Up to the next other command, which is handled after them, in order.)
                    let mut replies = vec![reply];
                    let mut later = None;
                    while let Ok(command) = commands.try_recv() {
                        match command {
                            Command::List(reply) => replies.push(reply),
                            other => {
                                later = Some(other);
                                break;
                            }
                        }
                    }
                    replies.retain(|reply| !reply.is_closed());
                    if !replies.is_empty() {
                        let users: Vec<Online> = registry
                            .list()
                            .await
                            .iter()
                            .map(|(since, name)| online_row(*since, name))
                            .collect();
                        for reply in replies {
                            let _ = reply.send(users.clone());
                        }
                    }
                    if let Some(Command::Connected(login, name)) = later {
                        registry.connected(login, name).await;
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                for login in shared.take_gone(Instant::now()) {
                    registry.gone(&login);
                }
                registry.tick(&shared.connected_here()).await;
            }
        }
    }
}

fn online_row(since_ms: u64, name: &UserName) -> Online {
    Online {
        name: name.as_str().to_owned(),
        since: Timestamp::from_unix_millis(since_ms).rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::Assets;
    use crate::hub::HubHandle;
    use crate::metrics::Metrics;
    use crate::room::RoomSize;
    use crate::store::PresenceSettings;
    use crate::templates::Templates;

    const GRACE: Duration = Duration::from_secs(10);
    const POLL_WINDOW: Duration = Duration::from_secs(30);

    struct Room {
        hub: HubHandle,
        presence: Presence,
    }

    /// The embedded backend's room and presence, as the server builds them.
    async fn room() -> Room {
        let templates = Arc::new(Templates::load(&Assets::Embedded).unwrap());
        let metrics = Arc::new(Metrics::default());
        let settings = PresenceSettings {
            notices: true,
            leave_grace: GRACE,
            poll_window: POLL_WINDOW,
        };
        let backend = crate::store::open(
            &crate::config::Settings::defaults(),
            &settings,
            metrics.clone(),
        )
        .await
        .unwrap();
        let size = RoomSize {
            cache_size: 200,
            socket_backlog: 16,
            max_message_chars: 2000,
        };
        let room = crate::room::Room::start(backend.log, backend.start, size, templates, metrics);
        let presence = Presence::start(POLL_WINDOW, backend.presence.unwrap());
        Room {
            hub: room.hub,
            presence,
        }
    }

    fn login(name: &str) -> Rc<Login> {
        Rc::new(Login::new(UserName::parse(name).unwrap()))
    }

    impl Room {
        /// The notices in the room so far, as "join Ann", "leave Ann".
        async fn notices(&self) -> Vec<String> {
            // Let the presence task and the hub run what is due.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let snapshot = self.hub.snapshot().await.unwrap();
            snapshot
                .entries
                .iter()
                .map(|e| format!("{} {}", e.message.kind.as_str(), e.message.from))
                .collect()
        }

        /// `times` connections of `login` one after another, each held for `held`, with
        /// `away` between them.
        async fn come_and_go(
            &self,
            login: &Rc<Login>,
            via: Via,
            held: Duration,
            away: Duration,
            times: usize,
        ) {
            for _ in 0..times {
                let connection = self.presence.connect(login, via);
                wait(held).await;
                drop(connection);
                wait(away).await;
            }
        }

        async fn online(&self) -> Vec<String> {
            let who = self.presence.who().await.unwrap();
            assert_eq!(who.count, who.users.len());
            who.users.into_iter().map(|u| u.name).collect()
        }
    }

    async fn wait(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_connection_joins_and_a_second_tab_says_nothing() {
        let room = room().await;
        let ann = login("Ann");
        let first = room.presence.connect(&ann, Via::Socket);
        wait(Duration::from_secs(1)).await;
        assert_eq!(room.notices().await, ["join Ann"]);
        let second = room.presence.connect(&ann, Via::Socket);
        let poll = room.presence.connect(&ann, Via::Poll);
        wait(Duration::from_secs(5)).await;
        assert_eq!(room.notices().await, ["join Ann"]);
        assert_eq!(room.online().await, ["Ann"]);
        drop((first, second, poll));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_within_the_grace_says_nothing_and_leaving_waits_for_the_grace() {
        let room = room().await;
        let ann = login("Ann");
        let tab = room.presence.connect(&ann, Via::Socket);
        wait(Duration::from_secs(1)).await;
        drop(tab);
        wait(GRACE - Duration::from_secs(3)).await;
        // A reload, or a switch to polling: back before the grace is over.
        let again = room.presence.connect(&ann, Via::Socket);
        wait(GRACE * 2).await;
        assert_eq!(room.notices().await, ["join Ann"]);
        drop(again);
        wait(GRACE - Duration::from_secs(2)).await;
        assert_eq!(room.notices().await, ["join Ann"], "still within the grace");
        assert_eq!(room.online().await, ["Ann"]);
        wait(Duration::from_secs(4)).await;
        assert_eq!(room.notices().await, ["join Ann", "leave Ann"]);
        assert!(room.online().await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_only_user_stays_online_between_polls() {
        let room = room().await;
        let pat = login("Pat");
        let (held, between) = (Duration::from_secs(2), Duration::from_millis(50));
        room.come_and_go(&pat, Via::Poll, held, between, 30).await;
        assert_eq!(room.notices().await, ["join Pat"]);
        // Gone: online for the poll window, then the grace.
        wait(POLL_WINDOW + GRACE - Duration::from_secs(2)).await;
        assert_eq!(room.notices().await, ["join Pat"]);
        wait(Duration::from_secs(4)).await;
        assert_eq!(room.notices().await, ["join Pat", "leave Pat"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_login_makes_at_most_one_pair_per_grace() {
        let room = room().await;
        let flip = login("Flip");
        let (held, away) = (Duration::from_millis(500), Duration::from_secs(2));
        room.come_and_go(&flip, Via::Socket, held, away, 40).await;
        assert_eq!(
            room.notices().await,
            ["join Flip"],
            "100 s of flapping, one join"
        );
        wait(GRACE + Duration::from_secs(2)).await;
        assert_eq!(room.notices().await, ["join Flip", "leave Flip"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_list_is_one_row_per_login_oldest_first_names_only() {
        let room = room().await;
        let mut held = Vec::new();
        for name in ["Cy", "Al", "Cy"] {
            held.push(room.presence.connect(&login(name), Via::Socket));
            wait(Duration::from_secs(1)).await;
        }
        assert_eq!(room.online().await, ["Cy", "Al", "Cy"]);
        let json = serde_json::to_value(room.presence.who().await.unwrap()).unwrap();
        assert_eq!(json["count"], 3);
        let keys: Vec<_> = json["users"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["name", "since"]);
        drop(held);
    }

    #[tokio::test]
    async fn presence_off_counts_nothing() {
        let off = Presence::off();
        assert!(off.connect(&login("Ann"), Via::Socket).is_none());
        assert!(off.who().await.is_none());
    }
}
