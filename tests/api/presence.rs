//! Who is online, end to end: `GET /a/presence`, and join/leave notices as entries of the
//! room, over real HTTP and WebSockets; then on two instances sharing one Redis.

use std::time::Duration;

use tokio::time::Instant;

use chatdemo::config::Backend;
use serde_json::Value;

use crate::helpers::{next_batch, Msg, TestApp, TestUser, Ws};
use crate::redis_server::RedisServer;

/// Presence with notices, a one-second grace and a one-second poll hold (so a poll-only
/// login counts as connected for 6 s after its last poll).
fn quick_presence(s: &mut chatdemo::Settings) {
    s.presence.notices = true;
    s.presence.leave_grace_secs = 1;
    s.room.poll_timeout_secs = 1;
}

async fn who(user: &TestUser) -> Value {
    let response = user.get("/a/presence").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn names(who: &Value) -> Vec<String> {
    who["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

/// How long the room is watched after the expected notices, to see that no other follows.
const QUIET: Duration = Duration::from_millis(700);

/// The next `count` notices on `ws` (as "join Ann", one per name: folded ones are
/// unfolded), waiting at most `limit` for them, and how long they took; then none more for
/// [`QUIET`].
async fn notices(ws: &mut Ws, count: usize, limit: Duration) -> (Vec<String>, Duration) {
    let (seen, arrived) = notices_arriving(ws, count, limit).await;
    (seen, arrived.elapsed() - QUIET.min(arrived.elapsed()))
}

/// As [`notices`], with the instant the last of them arrived.
async fn notices_arriving(ws: &mut Ws, count: usize, limit: Duration) -> (Vec<String>, Instant) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < count {
        let left = limit.saturating_sub(started.elapsed());
        let batch = tokio::time::timeout(left.min(Duration::from_secs(9)), next_batch(ws)).await;
        match batch {
            Ok(batch) => seen.extend(batch.messages.iter().flat_map(notice)),
            Err(_) if started.elapsed() >= limit => {
                panic!("{seen:?} within {limit:?}, wanted {count} notices")
            }
            Err(_) => {}
        }
    }
    let arrived = Instant::now();
    assert_quiet(ws, QUIET).await;
    (seen, arrived)
}

/// No notice (nor anything else) arrives on `ws` for `period`.
async fn assert_quiet(ws: &mut Ws, period: Duration) {
    if let Ok(batch) = tokio::time::timeout(period, next_batch(ws)).await {
        panic!(
            "nothing expected, got {:?}",
            batch.messages.iter().map(notice).collect::<Vec<_>>()
        );
    }
}

/// A notice of a few logins, each named: "join Ann", "join Bob".
fn notice(message: &Msg) -> Vec<String> {
    assert!(
        matches!(message.kind.as_str(), "join" | "leave"),
        "{message:?}"
    );
    assert_notice_markup(message);
    assert_eq!(
        message.count,
        Some(message.names.len() as u32),
        "{message:?}"
    );
    (message.names.iter())
        .map(|name| format!("{} {name}", message.kind))
        .collect()
}

/// A notice's body and markup: "<b>Ann</b> joined the room" alone (body "joined the
/// room"), "<b>Ann</b>, <b>Bob</b> and <b>Cy</b> joined the room" folded (the body the
/// same words), and past three names "<b>Ann</b>, <b>Bob</b> and 212 others ...".
pub fn assert_notice_markup(message: &Msg) {
    let verb = if message.kind == "join" {
        "joined the room"
    } else {
        "left the room"
    };
    let count = message.count.expect("a notice says how many") as usize;
    assert_eq!(message.from, message.names[0]);
    let shown = if count <= 3 { count } else { 2 };
    let names = &message.names[..shown];
    let others = count - shown;
    let mut words = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let then = match (shown - i, others) {
            (1, 0) => "",
            (1, _) | (2, 0) => " and",
            _ => ",",
        };
        words.push((name.clone(), then));
    }
    let rest = match others {
        0 => verb.to_owned(),
        n => format!("{n} other{} {verb}", if n == 1 { "" } else { "s" }),
    };
    let plain: Vec<String> = words.iter().map(|(n, then)| format!("{n}{then}")).collect();
    let bold: Vec<String> = words
        .iter()
        .map(|(n, then)| format!("<b>{n}</b>{then}"))
        .collect();
    if count == 1 {
        assert_eq!(message.body, verb);
    } else {
        assert_eq!(message.body, format!("{} {rest}", plain.join(" ")));
    }
    assert_eq!(
        message.html,
        format!(
            "<div class=\"notice\" id=\"m{}\"><time datetime=\"{}\">{}</time> {} {rest}",
            message.id,
            message.time,
            &message.time[11..16],
            bold.join(" "),
        ) + "</div>"
    );
}

#[tokio::test]
async fn who_is_online_needs_a_login_and_shows_names_only_oldest_first() {
    let app = TestApp::spawn_with(quick_presence).await;
    assert_eq!(app.anonymous().get("/a/presence").await.status(), 403);
    let ann = app.login(Some("Ann")).await;
    let _ann_socket = ann.socket(None).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bob = app.login(Some("Bob")).await;
    let _bob_socket = bob.socket(None).await;
    let mut online = who(&bob).await;
    for _ in 0..50 {
        if online["count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        online = who(&bob).await;
    }
    assert_eq!(online["count"], 2);
    assert_eq!(names(&online), ["Ann", "Bob"]);
    for user in online["users"].as_array().unwrap() {
        let keys: Vec<_> = user.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "since"], "names and times only");
        assert!(user["since"].as_str().unwrap().ends_with('Z'));
    }
    let text = online.to_string();
    for secret in [
        ann.cookie("user").unwrap(),
        bob.cookie("user").unwrap(),
        bob.xsrf(),
    ] {
        assert!(!text.contains(&secret));
    }
    // The page shows the same list and count.
    let page = bob.page().await;
    assert!(
        page.contains("<span id=\"online-count\">2</span>"),
        "{page}"
    );
    assert!(page.contains("<li>Ann</li><li>Bob</li>"), "{page}");
}

#[tokio::test]
async fn one_join_one_leave_however_a_login_comes_and_goes() {
    // A grace longer than a tick, so a leave that skipped it would show.
    let app = TestApp::spawn_with(|s| {
        quick_presence(s);
        s.presence.leave_grace_secs = 3;
    })
    .await;
    let watcher = app.login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    assert_eq!(
        notices(&mut watch, 1, Duration::from_secs(2)).await.0,
        ["join Watcher"]
    );

    let ann = app.login(Some("Ann")).await;
    let first_tab = ann.socket(None).await;
    // A second tab on the other transport.
    let poll = {
        let ann = ann.at(&app.address);
        tokio::spawn(async move {
            ann.poll_ok(None).await;
            Instant::now()
        })
    };
    let (joined, took) = notices(&mut watch, 1, Duration::from_secs(2)).await;
    assert_eq!(joined, ["join Ann"]);
    assert!(took < Duration::from_secs(1), "a join within 1 s: {took:?}");
    // A reload: the socket closes and a new one opens within the grace.
    drop(first_tab);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reloaded = ann.socket(None).await;
    // Past the grace: nothing was said.
    assert_quiet(&mut watch, Duration::from_secs(4)).await;
    assert_eq!(names(&who(&watcher).await), ["Watcher", "Ann"]);

    // Gone for good: one leave, once the last connection's linger (the poll's window, 1 s
    // hold + 5 s, after its answer) and then the grace (3 s) are over, and not before;
    // each is looked at by a once-a-second tick.
    drop(reloaded);
    let dropped = Instant::now();
    let poll_answered = poll.await.unwrap();
    let (left, arrived) = notices_arriving(&mut watch, 1, Duration::from_secs(12)).await;
    assert_eq!(left, ["leave Ann"]);
    let due = (poll_answered + Duration::from_secs(6)).max(dropped) + Duration::from_secs(3);
    assert!(
        arrived + Duration::from_millis(50) >= due && arrived <= due + Duration::from_millis(2500),
        "the leave came {:?} after it was due",
        arrived.checked_duration_since(due).map_or_else(
            || format!("-{:?}", due - arrived),
            |late| format!("{late:?}")
        )
    );
    assert_eq!(names(&who(&watcher).await), ["Watcher"]);
}

#[tokio::test]
async fn without_notices_the_room_hears_nothing_but_the_list_is_kept() {
    let app = TestApp::spawn_with(|s| {
        quick_presence(s);
        s.presence.notices = false;
    })
    .await;
    let ann = app.login(Some("Ann")).await;
    let mut ws = ann.socket(None).await;
    let batch = tokio::time::timeout(Duration::from_millis(700), next_batch(&mut ws)).await;
    assert!(batch.is_err(), "no notice: {batch:?}");
    assert_eq!(names(&who(&ann).await), ["Ann"]);
}

#[tokio::test]
async fn with_presence_off_there_is_no_list() {
    let app = TestApp::spawn_with(|s| s.presence.enabled = false).await;
    let ann = app.login(Some("Ann")).await;
    assert_eq!(ann.get("/a/presence").await.status(), 404);
    assert!(!ann.page().await.contains("id=\"presence\""));
}

/// An instance on `redis` with quick presence.
async fn instance(redis: &RedisServer) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(move |s| {
        quick_presence(s);
        s.store.backend = Backend::Redis;
        s.store.redis_url = url;
        s.store.key_prefix = "presence".into();
    })
    .await
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn across_instances_a_login_joins_once_and_leaves_once() {
    let Some(redis) = RedisServer::start("across_instances_a_login_joins_once").await else {
        return;
    };
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let watcher = b.login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    assert_eq!(
        notices(&mut watch, 1, Duration::from_secs(2)).await.0,
        ["join Watcher"]
    );
    // Ann: a socket on A and polls on B, at the same time.
    let ann = a.login(Some("Ann")).await;
    let socket = ann.socket(None).await;
    let polls = {
        let ann = ann.at(&b.address);
        tokio::spawn(async move {
            for _ in 0..3 {
                let _ = ann.poll_ok(None).await;
            }
        })
    };
    let (joined, took) = notices(&mut watch, 1, Duration::from_secs(3)).await;
    assert_eq!(joined, ["join Ann"]);
    assert!(took < Duration::from_secs(1), "a join within 1 s: {took:?}");
    assert_eq!(
        names(&who(&watcher.at(&a.address)).await),
        ["Watcher", "Ann"]
    );
    drop(socket);
    polls.await.unwrap();
    // Gone from both: one leave, from one of the two instances.
    let (left, _) = notices(&mut watch, 1, Duration::from_secs(20)).await;
    assert_eq!(left, ["leave Ann"]);
    assert_eq!(names(&who(&watcher).await), ["Watcher"]);
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn the_logins_of_a_killed_instance_leave_unless_connected_elsewhere() {
    let Some(redis) = RedisServer::start("the_logins_of_a_killed_instance_leave").await else {
        return;
    };
    let url = redis.url();
    let cwd = tempfile::tempdir().unwrap();
    let doomed = crate::process::Server::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_chatdemo")),
        cwd.path(),
        &[
            ("CHATDEMO_STORE__BACKEND", "redis"),
            ("CHATDEMO_STORE__REDIS_URL", url.as_str()),
            ("CHATDEMO_STORE__KEY_PREFIX", "presence"),
            (
                "CHATDEMO_SECURITY__COOKIE_SECRET",
                crate::helpers::TEST_SECRET,
            ),
            ("CHATDEMO_PRESENCE__NOTICES", "true"),
            ("CHATDEMO_PRESENCE__LEAVE_GRACE_SECS", "1"),
        ],
    )
    .await;
    let survivor = instance(&redis).await;
    let watcher = survivor.login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    let only_there = TestUser::login_at(&doomed.url(""), Some("Ann")).await;
    let _ann = only_there.socket(None).await;
    let both = TestUser::login_at(&doomed.url(""), Some("Bob")).await;
    let _bob_there = both.socket(None).await;
    let _bob_here = both.at(&survivor.address).socket(None).await;
    let (mut joined, _) = notices(&mut watch, 3, Duration::from_secs(3)).await;
    joined.sort();
    assert_eq!(joined, ["join Ann", "join Bob", "join Watcher"]);

    doomed.kill().await;
    // Ann leaves within the contract's bound (the grace + 10 s); Bob, still connected to
    // the survivor, stays (the quiet watch after the leave).
    let (left, took) = notices(&mut watch, 1, Duration::from_secs(20)).await;
    assert_eq!(left, ["leave Ann"]);
    assert!(
        took < Duration::from_secs(11),
        "within the grace + 10 s: {took:?}"
    );
    assert_eq!(names(&who(&watcher).await), ["Watcher", "Bob"]);
}

/// The notices on `ws` until their `count`s add up to `joins` joins and `leaves` leaves,
/// waiting at most `limit`: every transition is counted in exactly one notice.
async fn crowd_notices(ws: &mut Ws, joins: u32, leaves: u32, limit: Duration) -> Vec<Msg> {
    let started = Instant::now();
    let mut seen: Vec<Msg> = Vec::new();
    let sum = |seen: &[Msg], kind: &str| -> u32 {
        (seen.iter().filter(|m| m.kind == kind))
            .map(|m| m.count.unwrap())
            .sum()
    };
    while sum(&seen, "join") < joins || sum(&seen, "leave") < leaves {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, next_batch(ws)).await {
            Ok(batch) => {
                for message in batch.messages {
                    assert_notice_markup(&message);
                    assert!(
                        message.names.len() <= 20
                            && message.names.len() as u32 <= message.count.unwrap()
                    );
                    seen.push(message);
                }
            }
            Err(_) => panic!(
                "{} joins and {} leaves counted in {limit:?}, wanted {joins} and {leaves}",
                sum(&seen, "join"),
                sum(&seen, "leave")
            ),
        }
    }
    assert_eq!((sum(&seen, "join"), sum(&seen, "leave")), (joins, leaves));
    seen
}

/// Logins `c{from}` onwards, `n` of them, each with a socket to one of `apps` in turn,
/// opened as fast as the test can.
async fn crowd(apps: &[&TestApp], from: usize, n: usize) -> Vec<(TestUser, Ws)> {
    let mut crowd = Vec::with_capacity(n);
    for i in from..from + n {
        let app = apps[i % apps.len()];
        let user = app.login(Some(&format!("c{i}"))).await;
        let socket = user.socket(None).await;
        crowd.push((user, socket));
    }
    crowd
}

/// A crowd's arrival and departure on `apps`, watched from the first: every transition in
/// exactly one notice, and at most one notice of each kind a second (plus the first one,
/// alone, at once).
async fn a_crowd_comes_and_goes(apps: &[&TestApp], n: usize) {
    let watcher = apps[0].login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    assert_eq!(
        notices(&mut watch, 1, Duration::from_secs(3)).await.0,
        ["join Watcher"]
    );
    let started = Instant::now();
    let crowd = crowd(apps, 0, n).await;
    let joins = crowd_notices(&mut watch, n as u32, 0, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let bound = took.as_secs() as usize + 2;
    assert!(
        joins.len() <= bound,
        "{} join notices for {n} logins in {took:?}",
        joins.len()
    );
    let named: Vec<&str> = joins
        .iter()
        .flat_map(|m| &m.names)
        .map(String::as_str)
        .collect();
    assert_eq!(named[0], "c0", "the first arrival is named first");
    let who = who(&watcher).await;
    assert_eq!(
        (who["count"].as_u64(), names(&who).len()),
        (Some(n as u64 + 1), 100.min(n + 1))
    );

    drop(crowd);
    let leaves = crowd_notices(&mut watch, 0, n as u32, Duration::from_secs(30)).await;
    assert!(
        leaves.len() <= 3,
        "{} leave notices for {n} going together",
        leaves.len()
    );
    assert_eq!(names(&who_when(&watcher, 1).await), ["Watcher"]);
}

/// `/a/presence` once it counts `count`.
async fn who_when(user: &TestUser, count: u64) -> Value {
    for _ in 0..100 {
        let online = who(user).await;
        if online["count"] == count {
            return online;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {count} online: {}", who(user).await);
}

#[tokio::test]
async fn a_crowd_is_folded_into_a_few_notices_each_transition_counted_once() {
    let app = TestApp::spawn_with(quick_presence).await;
    a_crowd_comes_and_goes(&[&app], 1500).await;
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn across_instances_a_crowd_is_folded_once() {
    let Some(redis) = RedisServer::start("across_instances_a_crowd_is_folded_once").await else {
        return;
    };
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    a_crowd_comes_and_goes(&[&a, &b], 1000).await;
}

/// How many online the notices on `ws` have said, and the watcher's count of them.
struct Said {
    count: i64,
}

impl Said {
    /// Applies what arrives on `ws` within `period`.
    async fn hear(&mut self, ws: &mut Ws, period: Duration) {
        let until = Instant::now() + period;
        while let Ok(batch) = tokio::time::timeout_at(until, next_batch(ws)).await {
            for message in batch.messages {
                let count = i64::from(message.count.unwrap());
                self.count += if message.kind == "join" {
                    count
                } else {
                    -count
                };
            }
        }
    }

    /// Listens until the notices have said `listed` (at least that many while logins
    /// arrive, at most while they go), for at most the delay of a notice on its way.
    async fn reach(&mut self, ws: &mut Ws, listed: i64, arriving: bool, step: usize) {
        let until = Instant::now() + Duration::from_millis(600);
        let reached = |said: i64| {
            if arriving {
                said >= listed
            } else {
                said <= listed
            }
        };
        while !reached(self.count) && Instant::now() < until {
            self.hear(ws, Duration::from_millis(20)).await;
        }
        assert!(
            reached(self.count),
            "step {step}: the list counts {listed}, the notices said {}",
            self.count
        );
    }
}

/// The list says what the notices said, even while they are folded: a page that fetched it
/// and applies the notices after it counts each login once. Logins arrive (and then go) a
/// few tens of milliseconds apart, so most wait in a fold for a second or more; after each,
/// the list (read from the other instance) is never ahead of the notices the watcher hears.
async fn the_list_is_never_ahead_of_the_notices(apps: &[&TestApp]) {
    let watcher = apps[0].login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    let mut said = Said { count: 0 };
    said.hear(&mut watch, Duration::from_millis(1500)).await;
    assert_eq!(said.count, 1, "the watcher's own join");
    let listed = |i: usize| {
        let at = watcher.at(&apps[(i + 1) % apps.len()].address);
        async move { who(&at).await["count"].as_i64().unwrap() }
    };
    let mut crowd = Vec::new();
    for i in 0..24 {
        let (user, socket) = self::crowd(apps, i, 1).await.pop().unwrap();
        if i % 6 == 5 {
            // Gone before its join is said: the leave must come after that join.
            assert_eq!(user.get("/auth/logout").await.status(), 200);
        } else {
            crowd.push((user, socket));
        }
        let count = listed(i).await;
        said.reach(&mut watch, count, true, i).await;
    }
    // Every transition said within the longest fold (4 s).
    said.hear(&mut watch, Duration::from_secs(5)).await;
    assert_eq!((said.count, listed(0).await), (21, 21));
    for (i, (user, socket)) in crowd.into_iter().enumerate() {
        if i % 3 == 0 {
            // A logout: a leave at once (or right after a pending join).
            assert_eq!(user.get("/auth/logout").await.status(), 200);
        }
        drop(socket);
        let count = listed(i).await;
        said.reach(&mut watch, count, false, i).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The grace (1 s), then folds of up to 4 s.
    let until = Instant::now() + Duration::from_secs(15);
    while said.count > 1 && Instant::now() < until {
        let count = listed(0).await;
        said.reach(&mut watch, count, false, 99).await;
        said.hear(&mut watch, Duration::from_millis(200)).await;
    }
    assert_eq!((said.count, listed(0).await), (1, 1));
}

#[tokio::test]
async fn the_list_is_never_ahead_of_the_notices_in_memory() {
    let app = TestApp::spawn_with(quick_presence).await;
    the_list_is_never_ahead_of_the_notices(&[&app]).await;
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn across_instances_the_list_is_never_ahead_of_the_notices() {
    let Some(redis) = RedisServer::start("across_instances_the_list_is_never_ahead").await else {
        return;
    };
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    the_list_is_never_ahead_of_the_notices(&[&a, &b]).await;
}

/// A logout leaves at once: Ann, with a socket on one instance (or the only one) and a
/// poll on the other, logs out; the watcher hears one leave within 2 s and neither list
/// has her.
async fn a_logout_is_a_leave_at_once(a: &TestApp, b: &TestApp) {
    let watcher = b.login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    let ann = a.login(Some("Ann")).await;
    let _socket = ann.socket(None).await;
    let _ = ann.at(&b.address).poll_ok(None).await;
    let mut joined = notices(&mut watch, 2, Duration::from_secs(3)).await.0;
    joined.sort();
    assert_eq!(joined, ["join Ann", "join Watcher"]);
    let started = Instant::now();
    assert_eq!(ann.get("/auth/logout").await.status(), 200);
    let (left, _) = notices(&mut watch, 1, Duration::from_secs(2)).await;
    assert_eq!(left, ["leave Ann"]);
    assert!(started.elapsed() < Duration::from_secs(2) + QUIET);
    for app in [a, b] {
        assert_eq!(names(&who(&watcher.at(&app.address)).await), ["Watcher"]);
    }
    // Nothing more about Ann once her poll's window and the grace are over.
    assert_quiet(&mut watch, Duration::from_secs(8)).await;
}

#[tokio::test]
async fn a_logout_leaves_at_once() {
    let app = TestApp::spawn_with(quick_presence).await;
    a_logout_is_a_leave_at_once(&app, &app).await;
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn across_instances_a_logout_leaves_at_once_everywhere() {
    let Some(redis) = RedisServer::start("across_instances_a_logout_leaves").await else {
        return;
    };
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    a_logout_is_a_leave_at_once(&a, &b).await;
}

#[tokio::test]
async fn the_list_gives_the_first_rows_asked_for_and_the_whole_count() {
    let app = TestApp::spawn_with(quick_presence).await;
    let first = crowd(&[&app], 0, 5).await;
    let user = &first[0].0;
    who_when(user, 5).await;
    let rows = |who: Value| (who["count"].as_u64().unwrap(), names(&who));
    let limited = user.get("/a/presence?limit=2").await;
    assert_eq!(limited.status(), 200);
    assert_eq!(
        rows(limited.json().await.unwrap()),
        (5, vec!["c0".into(), "c1".into()])
    );
    let counted = user.get("/a/presence?limit=0").await.json().await.unwrap();
    assert_eq!(rows(counted), (5, vec![]));
    let all = user
        .get("/a/presence?limit=99999")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rows(all).1.len(), 5);
    for bad in ["x", "-1", "1.5", ""] {
        let response = user.get(&format!("/a/presence?limit={bad}")).await;
        assert_eq!(response.status(), 400, "limit={bad}");
        let text = response.text().await.unwrap();
        assert!(text.contains("limit is a whole number"), "{text}");
    }
    // The page lists the first 100 and says how many more.
    let more = crowd(&[&app], 5, 100).await;
    who_when(user, 105).await;
    let page = user.page().await;
    assert!(
        page.contains("<span id=\"online-count\">105</span>"),
        "{page}"
    );
    assert_eq!(page.matches("<li>").count(), 100);
    assert!(
        page.contains("<p id=\"online-more\">and <span id=\"online-more-count\">5</span> more</p>"),
        "{page}"
    );
    drop((first, more));
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_store_outage_is_not_a_transition() {
    let Some(mut redis) = RedisServer::start("a_store_outage_is_not_a_transition").await else {
        return;
    };
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let watcher = b.login(Some("Watcher")).await;
    let mut watch = watcher.socket(None).await;
    // Sockets that are read all along (so they answer the server's pings): kept open.
    let ann = a.login(Some("Ann")).await;
    let ann_socket = reading(ann.socket(None).await);
    let bob = b.login(Some("Bob")).await;
    let bob_socket = reading(bob.socket(None).await);
    let cy = a.login(Some("Cy")).await;
    let cy_socket = reading(cy.socket(None).await);
    // Pat long-polls, on either instance in turn, all along.
    let pat = a.login(Some("Pat")).await;
    let polling = {
        let (pat_a, pat_b) = (pat.at(&a.address), pat.at(&b.address));
        tokio::spawn(async move {
            for round in 0.. {
                let pat = if round % 2 == 0 { &pat_a } else { &pat_b };
                let _ = pat.poll(None).await;
            }
        })
    };
    let mut joined = notices(&mut watch, 5, Duration::from_secs(5)).await.0;
    joined.sort();
    assert_eq!(
        joined,
        [
            "join Ann",
            "join Bob",
            "join Cy",
            "join Pat",
            "join Watcher"
        ]
    );

    // Redis goes away for 30 s and comes back with its data; Cy really leaves during it.
    redis.kill();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cy_socket.abort();
    tokio::time::sleep(Duration::from_secs(20)).await;
    redis.launch().await;

    // Cy leaves once; nobody else comes or goes.
    let (left, _) = notices(&mut watch, 1, Duration::from_secs(15)).await;
    assert_eq!(left, ["leave Cy"]);
    assert_quiet(&mut watch, Duration::from_secs(10)).await;
    let online = names(&who(&watcher.at(&a.address)).await);
    assert_eq!(online, ["Watcher", "Ann", "Bob", "Pat"]);
    for task in [polling, ann_socket, bob_socket] {
        assert!(
            !task.is_finished(),
            "a connection that should have stayed ended"
        );
        task.abort();
    }
}

/// Reads `ws` until the task is aborted (which closes it): it answers the server's pings.
fn reading(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt;
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}
