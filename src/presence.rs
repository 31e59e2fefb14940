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

use crate::auth::{unix_now, Login, LoginId, Revocations};
use crate::domain::{Timestamp, UserName};
use crate::store::PresenceRegistry;

/// How often the task looks for logins that left, and ticks the registry.
const TICK: Duration = Duration::from_secs(1);
/// How long a page or `/a/presence` waits for the registry's list; past it (the store is
/// stalled or slow) they get the last list this instance had.
const LIST_WAIT: Duration = Duration::from_millis(500);
/// Commands the task takes in one go: a crowd arriving is told to the registry in
/// batches, not one store call per login.
const BATCH: usize = 1000;

/// How many rows of who is online a client wants (`?limit=`): a whole number, 0 for the
/// count alone; more than [`Rows::MAX`] is [`Rows::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Rows(usize);

impl Rows {
    /// When the client does not say, and what the page shows.
    pub const DEFAULT: Self = Self(100);
    pub const MAX: usize = 1000;
    pub const MAX_ROWS: Self = Self(Self::MAX);

    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<String> for Rows {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let digits = !raw.is_empty() && raw.len() <= 20 && raw.bytes().all(|b| b.is_ascii_digit());
        match raw.parse::<u64>() {
            Ok(n) if digits => Ok(Self(usize::try_from(n).unwrap_or(Self::MAX).min(Self::MAX))),
            _ => Err("limit is a whole number of rows (at most 1000 are given)".into()),
        }
    }
}

/// One row of who is online: names only, never login ids, cookies or addresses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Online {
    pub name: String,
    /// When the login came online, RFC 3339 UTC.
    pub since: String,
}

/// The answer of `GET /a/presence`: how many are online, and the first of them, oldest
/// first.
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
    last_list: Mutex<Option<WhoIsOnline>>,
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
    LoggedOut(LoginId),
    /// Who is online: the first `limit`.
    List(usize, oneshot::Sender<WhoIsOnline>),
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
    /// connected here. Logins in `ended` (logged out) never come online again.
    pub fn start(
        poll_window: Duration,
        registry: Box<dyn PresenceRegistry>,
        ended: Arc<Revocations>,
    ) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            locals: Mutex::default(),
            commands,
            poll_window,
            last_list: Mutex::default(),
        });
        tokio::spawn(run(receiver, shared.clone(), registry, ended));
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
                    .send(Command::Connected(login.id, login.name.clone()));
                locals.entry(login.id).or_insert(Local {
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

    /// `login` logged out here: it leaves at once, on every instance, with no grace.
    pub fn log_out(&self, login: &LoginId) {
        let Some(shared) = self.0.as_ref() else {
            return;
        };
        shared
            .locals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(login);
        let _ = shared.commands.send(Command::LoggedOut(*login));
    }

    /// Who is online: the whole count and the first `limit` rows, oldest first; `None`
    /// when presence is off. Never waits on the store for more than [`LIST_WAIT`]: past it,
    /// or when the store cannot be reached, it is the last list this instance had (or,
    /// before it had any, the logins connected here).
    pub async fn who(&self, rows: Rows) -> Option<WhoIsOnline> {
        let limit = rows.get();
        let shared = self.0.as_ref()?;
        let (reply, answer) = oneshot::channel();
        shared.commands.send(Command::List(limit, reply)).ok()?;
        let mut who = match tokio::time::timeout(LIST_WAIT, answer).await {
            Ok(Ok(who)) => {
                let mut last = shared.last_list.lock().unwrap_or_else(|e| e.into_inner());
                *last = Some(who.clone());
                who
            }
            // Not in time (a stalled store), or not at all (it is unreachable).
            Ok(Err(_)) | Err(_) => {
                tracing::debug!("presence list not ready in time; answering with the last one");
                shared.last_known()
            }
        };
        who.users.truncate(limit);
        Some(who)
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
    fn last_known(&self) -> WhoIsOnline {
        let last = self.last_list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(who) = last.as_ref() {
            return who.clone();
        }
        drop(last);
        let now = Timestamp::now().unix_millis();
        let users: Vec<Online> = self
            .connected_here()
            .iter()
            .map(|(_, name)| online_row(now, name))
            .collect();
        WhoIsOnline {
            count: users.len(),
            users,
        }
    }

    /// Logins with no connection here for longer than the poll window: gone from here.
    fn take_gone(&self, now: Instant) -> Vec<LoginId> {
        let mut locals = self.locals.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<LoginId> = locals
            .iter()
            .filter(|(_, l)| l.sockets == 0 && l.polls == 0 && now >= l.linger_until)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            locals.remove(id);
        }
        gone
    }

    fn connected_here(&self) -> Vec<(LoginId, UserName)> {
        let locals = self.locals.lock().unwrap_or_else(|e| e.into_inner());
        locals.iter().map(|(id, l)| (*id, l.name.clone())).collect()
    }
}

/// The commands that were waiting together, grouped: arrivals (in order), logouts, and
/// list requests (answered from one store call).
#[derive(Default)]
struct Batch {
    connected: Vec<(LoginId, UserName)>,
    logged_out: Vec<LoginId>,
    lists: Vec<(usize, oneshot::Sender<WhoIsOnline>)>,
}

impl Batch {
    fn add(&mut self, command: Command) {
        match command {
            Command::Connected(login, name) => self.connected.push((login, name)),
            Command::LoggedOut(login) => self.logged_out.push(login),
            Command::List(limit, reply) => self.lists.push((limit, reply)),
        }
    }

    /// Runs it: arrivals before logouts, so a login that came and logged out in one batch
    /// ends up gone; then the lists, which see both.
    async fn run(self, registry: &mut dyn PresenceRegistry, ended: &Revocations) {
        let now = unix_now();
        // A request that passed the login check just before its logout must not bring the
        // login back.
        let connected: Vec<_> = (self.connected.into_iter())
            .filter(|(login, _)| !ended.is_revoked(login, now))
            .collect();
        if !connected.is_empty() {
            registry.connected(connected).await;
        }
        for login in self.logged_out {
            registry.logged_out(login).await;
        }
        let lists: Vec<_> = (self.lists.into_iter())
            .filter(|(_, reply)| !reply.is_closed())
            .collect();
        let Some(limit) = lists.iter().map(|(limit, _)| *limit).max() else {
            return;
        };
        // The store did not answer: the replies are dropped, and each page falls back on
        // the last list this instance had.
        let Some((count, rows)) = registry.list(limit).await else {
            return;
        };
        let users: Vec<Online> = rows
            .iter()
            .map(|(since, name)| online_row(*since, name))
            .collect();
        for (limit, reply) in lists {
            let users = users[..limit.min(users.len())].to_vec();
            let _ = reply.send(WhoIsOnline { count, users });
        }
    }
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    mut registry: Box<dyn PresenceRegistry>,
    ended: Arc<Revocations>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                // Everything that waited meanwhile goes together: after a stall, or in a
                // crowd, the store is asked once per batch, not once per login or page.
                let mut batch = Batch::default();
                batch.add(command);
                for _ in 1..BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.add(command),
                        Err(_) => break,
                    }
                }
                batch.run(registry.as_mut(), &ended).await;
            }
            at = tick.tick() => {
                for login in shared.take_gone(Instant::now()) {
                    registry.gone(&login);
                }
                let here = if registry.reads_here() { shared.connected_here() } else { Vec::new() };
                registry.tick(at, &here).await;
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
    use crate::domain::Kind;
    use crate::hub::HubHandle;
    use crate::metrics::Metrics;
    use crate::room::RoomSize;
    use crate::store::{PresenceSettings, FOLD_PERIOD_MAX};
    use crate::templates::Templates;

    const GRACE: Duration = Duration::from_secs(10);
    const POLL_WINDOW: Duration = Duration::from_secs(30);

    struct Room {
        hub: HubHandle,
        presence: Presence,
        ended: Arc<Revocations>,
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
            // Every notice a test makes stays in the snapshot it reads.
            cache_size: 2000,
            socket_backlog: 16,
            max_message_chars: 2000,
        };
        let room = crate::room::Room::start(backend.log, backend.start, size, templates, metrics);
        let ended = Arc::new(Revocations::default());
        let presence = Presence::start(POLL_WINDOW, backend.presence.unwrap(), ended.clone());
        Room {
            hub: room.hub,
            presence,
            ended,
        }
    }

    fn login(name: &str) -> Rc<Login> {
        Rc::new(Login::new(UserName::parse(name).unwrap()))
    }

    impl Room {
        /// The room's entries so far, once the presence task and the hub ran what is due.
        async fn entries(&self) -> Vec<Arc<crate::hub::Entry>> {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            self.hub.snapshot().await.unwrap().entries
        }

        /// The notices in the room so far, as "join Ann", "leave Ann".
        async fn notices(&self) -> Vec<String> {
            (self.entries().await.iter())
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

        /// The notices so far as (kind, names, count).
        async fn crowds(&self) -> Vec<(Kind, Vec<String>, u32)> {
            (self.entries().await.iter())
                .map(|e| {
                    let crowd = e.message.crowd.as_ref().expect("a notice has its crowd");
                    let names = crowd.names().iter().map(|n| n.to_string()).collect();
                    (e.message.kind, names, crowd.count())
                })
                .collect()
        }

        /// `n` logins `{prefix}0`, `{prefix}1`, ... each opening a socket, `gap` apart.
        async fn arrive(&self, n: usize, prefix: &str, gap: Duration) -> Vec<Option<Connection>> {
            let mut held = Vec::with_capacity(n);
            for i in 0..n {
                let login = login(&format!("{prefix}{i}"));
                held.push(self.presence.connect(&login, Via::Socket));
                wait(gap).await;
            }
            held
        }

        async fn online(&self) -> Vec<String> {
            let who = self.presence.who(Rows::MAX_ROWS).await.unwrap();
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
        let json = serde_json::to_value(room.presence.who(Rows::DEFAULT).await.unwrap()).unwrap();
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

    #[tokio::test(start_paused = true)]
    async fn a_crowd_is_folded_into_at_most_one_notice_of_each_kind_a_second() {
        let room = room().await;
        // 500 logins arriving over 5 s, one every 10 ms, then all gone at once.
        let held = room.arrive(500, "u", Duration::from_millis(10)).await;
        wait(Duration::from_secs(2)).await;
        let joins = room.crowds().await;
        // The first alone at once, then folded ones 1, 2 and 4 s apart.
        assert!(joins.len() <= 4, "{} entries", joins.len());
        assert_eq!(joins[0], (Kind::Join, vec!["u0".to_owned()], 1));
        assert_eq!(joins.iter().map(|c| c.2).sum::<u32>(), 500);
        let mut named = Vec::new();
        for (kind, names, count) in &joins {
            assert_eq!(*kind, Kind::Join);
            assert_eq!(names.len(), (*count as usize).min(20));
            named.extend(names.iter().cloned());
        }
        // Names in the order they arrived.
        let mut sorted = named.clone();
        sorted.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
        assert_eq!(named, sorted);
        drop(held);
        wait(GRACE + Duration::from_secs(3)).await;
        let leaves: Vec<_> = room.crowds().await.split_off(joins.len());
        assert_eq!(leaves.len(), 1, "all gone in one tick: one notice");
        assert_eq!(
            (leaves[0].0, leaves[0].1.len(), leaves[0].2),
            (Kind::Leave, 20, 500)
        );
        assert!(room.online().await.is_empty());
        // After a quiet while, one arrival is news at once again.
        wait(Duration::from_secs(10)).await;
        let late = room.arrive(1, "late", Duration::ZERO).await;
        wait(Duration::from_millis(10)).await;
        let last = room.crowds().await.pop().unwrap();
        assert_eq!(last, (Kind::Join, vec!["late0".to_owned()], 1));
        drop(late);
    }

    /// The list shows what the notices said: a page that fetched it and applies the
    /// notices after it counts every login once, whatever order logins come, go, come
    /// back and log out in while notices are folded. And it is true: a login connected
    /// for longer than the longest fold is listed.
    #[tokio::test(start_paused = true)]
    async fn the_list_always_agrees_with_the_notices() {
        let room = room().await;
        let mut logins: Vec<_> = (0..20).map(|i| login(&format!("u{i}"))).collect();
        // Each login's connection, and since when.
        let mut held: Vec<Option<(Connection, Duration)>> = (0..20).map(|_| None).collect();
        let mut seed: u64 = 7;
        let mut now = Duration::ZERO;
        for step in 0..3000 {
            // A deterministic shuffle of arrivals, departures, returns and logouts.
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let who = (seed >> 33) as usize % 20;
            match (seed >> 20) % 40 {
                0 => {
                    held[who] = None;
                    let login = &logins[who];
                    room.ended
                        .apply([(login.id, crate::auth::unix_now() + 3600)]);
                    room.presence.log_out(&login.id);
                    logins[who] = self::login(&format!("u{who}"));
                }
                1..=12 => {
                    held[who] = match held[who].take() {
                        Some(_) => None,
                        None => room
                            .presence
                            .connect(&logins[who], Via::Socket)
                            .map(|c| (c, now)),
                    }
                }
                _ => {}
            }
            wait(Duration::from_millis(100)).await;
            now += Duration::from_millis(100);
            let mut said: Vec<String> = Vec::new();
            for (kind, names, count) in room.crowds().await {
                assert_eq!(names.len(), count as usize, "a crowd of 20 is named whole");
                for name in names {
                    match kind {
                        Kind::Join => said.push(name),
                        _ => {
                            let at = said.iter().position(|n| *n == name);
                            said.remove(at.unwrap_or_else(|| panic!("{name} left unlisted")));
                        }
                    }
                }
            }
            let mut listed = room.online().await;
            said.sort();
            listed.sort();
            assert_eq!(said, listed, "step {step}");
            for (i, connection) in held.iter().enumerate() {
                if let Some((_, since)) = connection {
                    let name = format!("u{i}");
                    let settled = now - *since > FOLD_PERIOD_MAX + Duration::from_secs(1);
                    assert!(!settled || listed.contains(&name), "step {step}: {name}");
                }
            }
        }
        // Notices were folded, so the test saw folds pending.
        let crowds = room.crowds().await;
        assert!(crowds.iter().any(|c| c.2 > 1), "{crowds:?}");
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_logout_leaves_at_once_and_does_not_come_back() {
        let room = room().await;
        let ann = login("Ann");
        let tab = room.presence.connect(&ann, Via::Socket);
        wait(Duration::from_secs(2)).await;
        room.ended.apply([(ann.id, crate::auth::unix_now() + 3600)]);
        room.presence.log_out(&ann.id);
        wait(Duration::from_millis(10)).await;
        assert_eq!(room.notices().await, ["join Ann", "leave Ann"]);
        assert!(room.online().await.is_empty());
        // A request that passed the login check just before: it does not bring Ann back.
        let late = room.presence.connect(&ann, Via::Poll);
        wait(GRACE * 2).await;
        assert_eq!(room.notices().await, ["join Ann", "leave Ann"]);
        assert!(room.online().await.is_empty());
        drop((tab, late));
    }

    #[tokio::test(start_paused = true)]
    async fn the_list_gives_the_first_rows_and_the_whole_count() {
        let room = room().await;
        let held = room.arrive(150, "u", Duration::from_millis(5)).await;
        wait(Duration::from_secs(1)).await;
        let who = room.presence.who(Rows::DEFAULT).await.unwrap();
        assert_eq!((who.count, who.users.len()), (150, 100));
        assert_eq!(who.users[99].name, "u99");
        let rows = |raw: &str| Rows::try_from(raw.to_owned());
        let few = room.presence.who(rows("3").unwrap()).await.unwrap();
        assert_eq!((few.count, few.users.len()), (150, 3));
        assert_eq!(
            room.presence
                .who(rows("0").unwrap())
                .await
                .unwrap()
                .users
                .len(),
            0
        );
        assert_eq!(rows("5000"), Ok(Rows::MAX_ROWS));
        assert_eq!(rows("99999999999999999999999"), rows("x"));
        for bad in ["", "-1", "1.5", "x", "+3", " 3"] {
            assert!(rows(bad).is_err(), "{bad:?}");
        }
        drop(held);
    }

    #[tokio::test]
    async fn presence_off_counts_nothing() {
        let off = Presence::off();
        assert!(off.connect(&login("Ann"), Via::Socket).is_none());
        assert!(off.who(Rows::DEFAULT).await.is_none());
    }
}
