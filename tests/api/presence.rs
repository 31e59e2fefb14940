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

/// The next `count` notices on `ws` (as "join Ann"), waiting at most `limit` for them, and
/// how long they took; then none more for [`QUIET`].
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
            Ok(batch) => seen.extend(batch.messages.iter().map(notice)),
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

fn notice(message: &Msg) -> String {
    assert!(
        matches!(message.kind.as_str(), "join" | "leave"),
        "{message:?}"
    );
    assert_notice_markup(message);
    format!("{} {}", message.kind, message.from)
}

fn assert_notice_markup(message: &Msg) {
    let verb = if message.kind == "join" {
        "joined"
    } else {
        "left"
    };
    assert_eq!(message.body, format!("{verb} the room"));
    assert_eq!(
        message.html,
        format!(
            "<div class=\"notice\" id=\"m{}\"><time datetime=\"{}\">{}</time> <b>{}</b> {}",
            message.id,
            message.time,
            &message.time[11..16],
            message.from,
            message.body
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
