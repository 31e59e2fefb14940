//! Several instances on one real Redis: one room, cursors valid everywhere, history that
//! outlives the instances, a Redis crash and a Redis that lost its data, one rate budget.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatdemo::config::Backend;

use crate::helpers::{
    assert_one_order, follow_socket, next_batch, page_cursor, page_message_ids, TestApp, TestUser,
};
use crate::redis_server::RedisServer;

/// An instance on `redis` with the room under `prefix`.
async fn instance(redis: &RedisServer, prefix: &str) -> TestApp {
    instance_with(redis, prefix, |_| {}).await
}

async fn instance_with(
    redis: &RedisServer,
    prefix: &str,
    adjust: impl FnOnce(&mut chatdemo::Settings),
) -> TestApp {
    let url = redis.url();
    let prefix = prefix.to_owned();
    TestApp::spawn_with(move |s| {
        s.store.backend = Backend::Redis;
        s.store.redis_url = url;
        s.store.key_prefix = prefix;
        adjust(s);
    })
    .await
}

/// An instance of the real binary on `redis` with the room under `prefix`: for tests that
/// pause (SIGSTOP) an instance or read its process's memory.
async fn process_instance(redis: &RedisServer, prefix: &str) -> crate::process::Server {
    let url = redis.url();
    crate::process::Server::start(&[
        ("CHATDEMO_STORE__BACKEND", "redis"),
        ("CHATDEMO_STORE__REDIS_URL", url.as_str()),
        ("CHATDEMO_STORE__KEY_PREFIX", prefix),
        (
            "CHATDEMO_SECURITY__COOKIE_SECRET",
            crate::helpers::TEST_SECRET,
        ),
    ])
    .await
}

/// `count` new logins at `base`, each logged out at once, from 8 tasks at a time.
async fn log_in_and_out(base: &str, count: usize) {
    const TASKS: usize = 8;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            for _ in (task..count).step_by(TASKS) {
                let user = TestUser::login_at(&base, None).await;
                assert_eq!(user.get("/auth/logout").await.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn two_instances_are_one_room_with_one_order() {
    let Some(redis) = RedisServer::start("two_instances_are_one_room_with_one_order").await else {
        return;
    };
    // Posting back to back on loopback outruns a debug-build poller by more than 200
    // entries; a cache that holds them all makes this about order, not eviction (the
    // polling tests cover eviction).
    let whole = |s: &mut chatdemo::Settings| s.room.cache_size = 1000;
    let a = instance_with(&redis, "one-room", whole).await;
    let b = instance_with(&redis, "one-room", whole).await;
    let poster = a.login(Some("poster")).await;
    let start = page_cursor(&poster.page().await);
    const COUNT: usize = 300;

    let mut receivers = Vec::new();
    for app in [&a, &b] {
        for _ in 0..3 {
            let user = app.login(None).await;
            let cursor = start.clone();
            receivers.push(tokio::spawn(async move {
                user.follow_polls(cursor, COUNT).await
            }));
            let user = app.login(None).await;
            let mut ws = user.socket(Some(&start)).await;
            receivers.push(tokio::spawn(
                async move { follow_socket(&mut ws, COUNT).await },
            ));
        }
    }
    // As fast as they go, spread over both instances by one login.
    let mut posts = Vec::new();
    for i in 0..COUNT {
        let user = poster.at(if i % 2 == 0 { &a.address } else { &b.address });
        posts.push(tokio::spawn(async move {
            user.say_ok(&format!("m{i}")).await.id
        }));
    }
    let mut posted = HashSet::new();
    for post in posts {
        posted.insert(post.await.unwrap());
    }
    let mut orders = Vec::new();
    for receiver in receivers {
        orders.push(
            tokio::time::timeout(Duration::from_secs(60), receiver)
                .await
                .expect("every receiver gets every message")
                .unwrap(),
        );
    }
    assert_one_order(&orders, COUNT);
    assert_eq!(orders[0].iter().cloned().collect::<HashSet<_>>(), posted);
    // The same ids, in the same order, on both pages.
    assert_eq!(
        page_message_ids(&poster.page().await),
        page_message_ids(&poster.at(&b.address).page().await)
    );
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_cursor_from_another_instance_waits_while_this_one_is_behind() {
    let Some(redis) = RedisServer::start("a_cursor_from_another_instance_waits").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "behind").await,
        instance(&redis, "behind").await,
    );
    let user = a.login(None).await;
    let on_b = user.at(&b.address);
    let first = user.say_ok("first").await;
    // B has the first message: its page shows it.
    wait_until_page_has(&on_b, &first.id).await;

    let pause = b.follower_pause.clone();
    pause.pause();
    let second = user.say_ok("second").await;
    // B has not read `second`: a poll on B from A's answer is held, not reset.
    let cursor = second.id.clone();
    let held = {
        let on_b = on_b.at(&b.address);
        tokio::spawn(async move { on_b.poll_ok(Some(&cursor)).await })
    };
    // And a poll on B from `first` is held too: B knows of nothing after it yet.
    let from_first = {
        let on_b = on_b.at(&b.address);
        let cursor = first.id.clone();
        tokio::spawn(async move { on_b.poll_ok(Some(&cursor)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "a cursor ahead of B waits");
    assert!(!from_first.is_finished());
    let third = user.say_ok("third").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "B's reader is paused");
    pause.resume();

    let batch = held.await.unwrap();
    assert!(!batch.reset);
    assert_eq!(
        batch.messages,
        std::slice::from_ref(&third),
        "after `second`: only `third`"
    );
    // At B's head, it is answered by the first entry that arrives; following on gives both.
    let batch = from_first.await.unwrap();
    assert!(!batch.reset);
    assert_eq!(batch.messages[0], second);
    let mut ids: Vec<_> = batch.messages.iter().map(|m| m.id.clone()).collect();
    if ids.len() == 1 {
        ids.extend(on_b.follow_polls(second.id.clone(), 1).await);
    }
    assert_eq!(ids, [second.id, third.id], "after `first`: both, in order");
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_socket_with_a_cursor_ahead_of_its_instance_waits_for_it_at_most_10_s() {
    let Some(redis) = RedisServer::start("a_socket_with_a_cursor_ahead").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "socket-behind").await,
        instance(&redis, "socket-behind").await,
    );
    let user = a.login(None).await;
    let on_b = user.at(&b.address);
    let first = user.say_ok("first").await;
    wait_until_page_has(&on_b, &first.id).await;

    let pause = b.follower_pause.clone();
    pause.pause();
    let second = user.say_ok("second").await;
    // The upgrade on B with A's newest id waits for B to read that far ...
    let upgrade = {
        let on_b = on_b.at(&b.address);
        let cursor = second.id.clone();
        tokio::spawn(async move { on_b.socket(Some(&cursor)).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!upgrade.is_finished(), "a cursor ahead of B waits");
    pause.resume();
    let mut ws = tokio::time::timeout(Duration::from_secs(5), upgrade)
        .await
        .expect("opens once B has read as far")
        .unwrap();
    // ... and then replays nothing (it has `second`) and carries on from there.
    let third = user.say_ok("third").await;
    let batch = next_batch(&mut ws).await;
    assert!(!batch.reset);
    assert_eq!(
        batch.messages,
        std::slice::from_ref(&third),
        "after `second`: `third` only"
    );

    // B never gets there: after 10 s the upgrade is refused (503), to be tried again.
    pause.pause();
    let fourth = user.say_ok("fourth").await;
    let started = std::time::Instant::now();
    let refused = on_b.socket_with(Some(&fourth.id), Some(&b.address)).await;
    let waited = started.elapsed();
    let status = match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("refused, not {other:?}"),
    };
    assert_eq!(status, 503);
    assert!(
        (Duration::from_secs(10)..Duration::from_millis(11_500)).contains(&waited),
        "after the 10 s bound: {waited:?}"
    );
    pause.resume();
}

async fn wait_until_page_has(user: &TestUser, id: &str) {
    for _ in 0..100 {
        if page_message_ids(&user.page().await).iter().any(|m| m == id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached {}", user.base);
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn the_history_outlives_every_instance() {
    let Some(redis) = RedisServer::start("the_history_outlives_every_instance").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "history").await,
        instance(&redis, "history").await,
    );
    let user = a.login(Some("Ann")).await;
    let mut posted = Vec::new();
    for i in 0..10 {
        let at = if i % 2 == 0 { &a } else { &b };
        posted.push(user.at(&at.address).say_ok(&format!("m{i}")).await.id);
    }
    a.shutdown.shutdown().await;
    b.shutdown.shutdown().await;

    let (a, b) = (
        instance(&redis, "history").await,
        instance(&redis, "history").await,
    );
    for app in [&a, &b] {
        let again = user.at(&app.address);
        assert_eq!(page_message_ids(&again.page().await), posted);
        // An old cursor resumes where it was, with no reset.
        let batch = again.poll_ok(Some(&posted[4])).await;
        assert!(!batch.reset);
        let ids: Vec<_> = batch.messages.into_iter().map(|m| m.id).collect();
        assert_eq!(ids, posted[5..]);
    }
    // And the room goes on from there, in order.
    let next = user.at(&b.address).say_ok("after the restart").await;
    let batch = user.at(&a.address).poll_ok(Some(&posted[9])).await;
    assert_eq!(batch.messages, [next]);
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_redis_crash_loses_no_acknowledged_message_and_duplicates_none() {
    let Some(mut redis) = RedisServer::start("a_redis_crash").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "crash").await,
        instance(&redis, "crash").await,
    );
    let poster = a.login(Some("poster")).await;
    let start = page_cursor(&poster.page().await);

    // Receivers on both instances and both transports, following their cursors.
    let done = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for app in [&a, &b] {
        let user = app.login(None).await;
        let (cursor, stop) = (start.clone(), done.clone());
        receivers.push(tokio::spawn(async move {
            follow_until(user, cursor, stop).await
        }));
        let user = app.login(None).await;
        let mut ws = user.socket(Some(&start)).await;
        let done = done.clone();
        receivers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Relaxed) {
                let batch = tokio::time::timeout(Duration::from_millis(500), next_batch(&mut ws));
                if let Ok(batch) = batch.await {
                    assert!(!batch.reset, "no data was lost: no reset");
                    seen.extend(batch.messages.into_iter().map(|m| m.id));
                }
            }
            seen
        }));
    }

    // A light steady load over both instances: every 503 is counted, every 200 kept.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0));
    let stop_posting = Arc::new(AtomicBool::new(false));
    let posting = {
        let (acknowledged, refused, stop) =
            (acknowledged.clone(), refused.clone(), stop_posting.clone());
        let users = [poster.at(&a.address), poster.at(&b.address)];
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Relaxed) {
                let response = users[i % 2].say(&format!("steady {i}")).await;
                match response.status().as_u16() {
                    200 => {
                        let message: crate::helpers::Msg = response.json().await.unwrap();
                        acknowledged.lock().unwrap().push(message.id);
                    }
                    503 => {
                        assert!(response.headers().contains_key("retry-after"));
                        *refused.lock().unwrap() += 1;
                    }
                    other => panic!("a post got {other}"),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.kill();
    wait_for_health(&a, 503).await;
    wait_for_health(&b, 503).await;
    assert_eq!(a.metric("chatdemo_store_up").await, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.launch().await;
    wait_for_health(&a, 200).await;
    wait_for_health(&b, 200).await;
    assert_eq!(a.metric("chatdemo_store_up").await, 1);
    assert!(a.metric("chatdemo_store_reconnects_total").await >= 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_posting.store(true, Relaxed);
    posting.await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let refused = *refused.lock().unwrap();
    assert!(refused > 0, "posts during the outage were refused");
    assert!(acknowledged.len() > 20, "{acknowledged:?}");
    // Wait until every receiver could have everything, then compare.
    let last = acknowledged.last().unwrap().clone();
    wait_until_page_has(&poster.at(&a.address), &last).await;
    wait_until_page_has(&poster.at(&b.address), &last).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Relaxed);
    for receiver in receivers {
        let seen = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .unwrap()
            .unwrap();
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicates");
        for id in &acknowledged {
            assert!(
                unique.contains(id),
                "{id} was acknowledged but never arrived"
            );
        }
        // A post refused while Redis died may still have been stored (its answer was what
        // got lost); nothing else arrives, and the acknowledged ones come in posting order.
        assert!(seen.len() <= acknowledged.len() + refused, "{seen:?}");
        let acked: HashSet<_> = acknowledged.iter().collect();
        let in_order: Vec<_> = seen
            .iter()
            .filter(|id| acked.contains(id))
            .cloned()
            .collect();
        assert_eq!(in_order, acknowledged);
    }
}

/// Follows the long poll from `cursor` until `done`; the ids in arrival order.
async fn follow_until(user: TestUser, mut cursor: String, done: Arc<AtomicBool>) -> Vec<String> {
    let mut seen = Vec::new();
    while !done.load(Relaxed) {
        let Ok(response) =
            tokio::time::timeout(Duration::from_millis(800), user.poll(Some(&cursor))).await
        else {
            continue; // held: ask again, from the same cursor
        };
        assert_eq!(response.status(), 200);
        let batch: crate::helpers::Batch = response.json().await.unwrap();
        assert!(!batch.reset, "no data was lost: no reset");
        if let Some(last) = batch.messages.last() {
            cursor = last.id.clone();
        }
        seen.extend(batch.messages.into_iter().map(|m| m.id));
    }
    seen
}

async fn wait_for_health(app: &TestApp, want: u16) {
    for _ in 0..200 {
        let status = reqwest::get(app.url("/healthz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/healthz never answered {want}");
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_redis_that_lost_its_data_resets_clients() {
    let Some(redis) = RedisServer::start("a_redis_that_lost_its_data_resets_clients").await else {
        return;
    };
    let a = instance(&redis, "flushed").await;
    let user = a.login(None).await;
    let mut old = Vec::new();
    for i in 0..3 {
        old.push(user.say_ok(&format!("before {i}")).await);
    }
    let newest = old[2].id.clone();
    let mut ws = user.socket(Some(&newest)).await;
    let held = {
        let user = user.at(&a.address);
        let cursor = newest.clone();
        tokio::spawn(async move { user.poll_ok(Some(&cursor)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: String = redis.command(&["FLUSHALL"]).await;
    let after = user.say_ok("after the flush").await;

    // The held poll and the socket hear that they may have missed messages.
    let batch = held.await.unwrap();
    assert!(batch.reset, "a held poll is told");
    assert_eq!(batch.messages, std::slice::from_ref(&after));
    let frame = next_batch(&mut ws).await;
    assert!(frame.reset, "a socket is told");
    assert_eq!(frame.messages, std::slice::from_ref(&after));
    // An old cursor is from another epoch now: reset, never silence.
    let batch = user.poll_ok(Some(&old[0].id)).await;
    assert!(batch.reset);
    assert_eq!(batch.messages, [after]);
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn one_login_has_one_rate_budget_across_instances() {
    let Some(redis) = RedisServer::start("one_login_has_one_rate_budget").await else {
        return;
    };
    let limited = |s: &mut chatdemo::Settings| {
        s.room.rate_burst = 4;
        s.room.rate_per_sec = 0.01;
    };
    let a = instance_with(&redis, "rate", limited).await;
    let b = instance_with(&redis, "rate", limited).await;
    let user = a.login(None).await;
    for at in [&a, &b, &a, &b] {
        user.at(&at.address).say_ok("within the burst").await;
    }
    for at in [&a, &b] {
        let refused = user.at(&at.address).say("over the budget").await;
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
    }
    // Another login has its own budget.
    let other = b.login(None).await;
    other.say_ok("mine").await;
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn one_address_has_one_posting_budget_across_instances_and_logins() {
    let Some(redis) = RedisServer::start("one_address_has_one_budget").await else {
        return;
    };
    let limited = |s: &mut chatdemo::Settings| {
        s.room.address_burst = 4;
        s.room.address_per_sec = 0.01;
    };
    let a = instance_with(&redis, "arate", limited).await;
    let b = instance_with(&redis, "arate", limited).await;
    // Four fresh logins, one post each, over both instances: the address's burst.
    for at in [&a, &b, &a, &b] {
        at.login(None).await.say_ok("within the burst").await;
    }
    for at in [&a, &b] {
        let refused = at.login(None).await.say("a fifth login").await;
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn an_outage_is_logged_once_however_many_retries_it_takes() {
    let Some(mut redis) = RedisServer::start("an_outage_is_logged_once").await else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = crate::process::Server::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_chatdemo")),
        cwd.path(),
        &[
            ("CHATDEMO_STORE__BACKEND", "redis"),
            ("CHATDEMO_STORE__REDIS_URL", url.as_str()),
            (
                "CHATDEMO_SECURITY__COOKIE_SECRET",
                crate::helpers::TEST_SECRET,
            ),
        ],
    )
    .await;
    let metric = |name: &'static str| {
        let url = server.url("/metrics");
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap()
        }
    };
    redis.kill();
    // Long enough for several reconnect attempts (0.1 s doubling).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(metric("chatdemo_store_reconnects_total").await >= 4);
    assert_eq!(metric("chatdemo_store_up").await, 0);
    redis.launch().await;
    for _ in 0..100 {
        if metric("chatdemo_store_up").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric("chatdemo_store_up").await, 1);
    let log = server.stop().await;
    let count = |text: &str| log.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("Redis unreachable"), 1, "{log:#?}");
    assert_eq!(count("Redis reachable again"), 1, "{log:#?}");
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn logout_on_one_instance_ends_the_login_on_all_and_after_restarts() {
    let Some(redis) = RedisServer::start("logout_ends_the_login_everywhere").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "logout").await,
        instance(&redis, "logout").await,
    );
    let user = a.login(Some("victim")).await;
    let thief = user.copy().at(&b.address);
    assert_eq!(thief.say("before").await.status(), 200);
    let mut socket_on_b = thief.socket(None).await;

    assert_eq!(user.get("/auth/logout").await.status(), 200);
    let started = std::time::Instant::now();
    assert_eq!(crate::helpers::close_code(&mut socket_on_b).await, 1008);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed on the other instance after {:?}",
        started.elapsed()
    );
    assert_eq!(thief.say("after").await.status(), 403);
    assert_eq!(thief.get("/").await.status(), 302);

    a.shutdown.shutdown().await;
    b.shutdown.shutdown().await;
    let c = instance(&redis, "logout").await;
    let thief = thief.at(&c.address);
    assert_eq!(thief.say("after a restart").await.status(), 403);
    assert_eq!(thief.get("/").await.status(), 302);
    // The revocation lasts until the cookie would have expired, and no longer.
    let score: Option<String> = redis
        .command(&["ZSCORE", "logout:revoked", &revoked_id(&redis).await])
        .await;
    let until: u64 = score.unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let max_age = u64::from(chatdemo::Settings::defaults().security.cookie_max_age_days) * 86_400;
    assert!(
        until > now + max_age - 60 && until <= now + max_age,
        "{until} vs {now}"
    );
}

/// The one login in the test's revocation set.
async fn revoked_id(redis: &RedisServer) -> String {
    let ids: Vec<String> = redis
        .command(&["ZRANGE", "logout:revoked", "0", "-1"])
        .await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// On Redis too, a cursor newer than the stream's newest entry is one no instance issued:
/// a `reset` at once, even on an instance that is behind (whose legitimate cursors ahead
/// wait, as the test above shows).
#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_cursor_newer_than_the_stream_is_a_reset_at_once() {
    let Some(redis) = RedisServer::start("a_cursor_newer_than_the_stream").await else {
        return;
    };
    let (a, b) = (
        instance(&redis, "future-cursor").await,
        instance(&redis, "future-cursor").await,
    );
    let user = a.login(None).await;
    let on_b = user.at(&b.address);
    let first = user.say_ok("first").await;
    wait_until_page_has(&on_b, &first.id).await;
    b.follower_pause.pause();
    let epoch = first.id.rsplitn(3, '-').nth(2).unwrap().to_owned();
    let future = format!("{epoch}-{}-0", 1u64 << 62);

    let batch = tokio::time::timeout(Duration::from_secs(3), on_b.poll_ok(Some(&future)))
        .await
        .expect("a reset at once, not a wait");
    assert!(batch.reset);
    assert_eq!(batch.messages.last().map(|m| &m.id), Some(&first.id));

    let mut ws = tokio::time::timeout(Duration::from_secs(3), on_b.socket(Some(&future)))
        .await
        .expect("the upgrade does not wait for a cursor no one issued");
    let replay = next_batch(&mut ws).await;
    assert!(replay.reset);
    b.follower_pause.resume();
}

/// A stalled Redis closes nothing, it just stops answering: `/healthz` says 503 within
/// 2 s of it (finding 5 of the second attack: it stayed 200 for 10 s), and 200 again once
/// Redis carries on.
#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn health_is_503_within_2_s_of_a_stalled_redis() {
    let Some(redis) = RedisServer::start("health_is_503_within_2_s").await else {
        return;
    };
    let app = instance(&redis, "stalled").await;
    wait_for_health(&app, 200).await;
    redis.pause(true);
    let stalled = std::time::Instant::now();
    let mut status = 200;
    while stalled.elapsed() < Duration::from_secs(2) {
        status = reqwest::get(app.url("/healthz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = stalled.elapsed();
    redis.pause(false);
    assert_eq!(status, 503, "/healthz still 200 {after:?} into the stall");
    wait_for_health(&app, 200).await;
}

/// Finding 2 of the second attack: Redis paused, a post answered 503 was stored anyway
/// when Redis ran the queued script on waking, and the resend `Retry-After` invites made a
/// second copy. Now a post answered with an error stored nothing, ever (the script refuses
/// past its deadline by Redis's clock), and the resend with the same key, on any
/// instance, stores it once.
#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_post_answered_503_is_never_stored_and_its_resend_is_stored_once() {
    let Some(redis) = RedisServer::start("a_post_answered_503_is_never_stored").await else {
        return;
    };
    let a = instance(&redis, "late").await;
    let b = instance(&redis, "late").await;
    let user = a.login(None).await;
    let mut ws = user.socket(None).await;
    // Each instance has run the script once: Redis has it, as in any room in use (a first
    // post's `EVALSHA` queued in a stall would find no script and store nothing anyway).
    user.say_ok("before").await;
    user.at(&b.address).say_ok("before").await;
    crate::helpers::next_batch(&mut ws).await;
    crate::helpers::next_batch(&mut ws).await;

    redis.pause(true);
    let stalled = std::time::Instant::now();
    let frame =
        serde_json::json!({"body": "sent over the socket", "_xsrf": user.xsrf(), "nonce": "ws-1"});
    let over_socket = async {
        crate::helpers::send_text(&mut ws, &frame.to_string()).await;
        let reply = crate::helpers::next_text(&mut ws).await;
        serde_json::from_str::<serde_json::Value>(&reply).unwrap()
    };
    let (over_http, unkeyed, error) = tokio::join!(
        user.say_with_key("sent over http", "http-1"),
        user.say("sent without a key"),
        over_socket
    );
    let answered = stalled.elapsed();
    // Long enough that each queued script is past its deadline when Redis wakes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.pause(false);
    assert_eq!(over_http.status(), 503);
    assert_eq!(unkeyed.status(), 503);
    assert_eq!(error["nonce"], "ws-1", "{error}");
    assert!(answered < Duration::from_secs(3), "503s took {answered:?}");
    wait_for_health(&a, 200).await;
    // Whatever Redis ran on waking has run by now: a write after it answers after it.
    user.say_ok("after the stall").await;
    for body in [
        "sent over http",
        "sent without a key",
        "sent over the socket",
    ] {
        assert_eq!(
            redis.copies_in_log("late", body).await,
            0,
            "{body:?} was stored"
        );
    }

    // The resends, on either instance, twice each: one copy each.
    let on_b = user.at(&b.address);
    let first = on_b.say_with_key_ok("sent over http", "http-1").await;
    let again = user.say_with_key_ok("sent over http", "http-1").await;
    assert_eq!(first.id, again.id);
    let mut ws_b = on_b.socket(None).await;
    let mut acks = Vec::new();
    for socket in [&mut ws, &mut ws_b] {
        crate::helpers::send_text(socket, &frame.to_string()).await;
        loop {
            let reply: serde_json::Value =
                serde_json::from_str(&crate::helpers::next_text(socket).await).unwrap();
            if reply.get("ack").is_some() {
                acks.push(reply["id"].as_str().unwrap().to_owned());
                break;
            }
        }
    }
    assert_eq!(acks[0], acks[1]);
    // The socket's nonce and the header are one key space: the socket's post resent over
    // HTTP is the same post.
    let over_http_again = user.say_with_key_ok("sent over the socket", "ws-1").await;
    assert_eq!(over_http_again.id, acks[0]);
    for body in ["sent over http", "sent over the socket"] {
        assert_eq!(redis.copies_in_log("late", body).await, 1, "{body:?}");
    }
}

/// Finding 4 of the second attack: instance B paused while the victim logs out on A and
/// 1,500 logouts follow; the announcements were trimmed past the victim's, B read on from
/// where it was, and the victim's copied cookie kept working on B until it restarted. Now
/// announcements are numbered, and B, finding numbers missing, reloads every ended login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn an_instance_that_lagged_past_trimmed_logouts_reloads_them() {
    let Some(redis) = RedisServer::start("lagged_logouts").await else {
        return;
    };
    let a = process_instance(&redis, "lagged").await;
    let b = process_instance(&redis, "lagged").await;
    let (on_a, on_b) = (a.url(""), b.url(""));
    let victim = TestUser::login_at(&on_a, Some("victim")).await;
    let thief = victim.copy().at(&on_b);
    assert_eq!(thief.get("/").await.status(), 200);

    b.pause(true);
    // B's read, blocked in Redis, is answered by the first logout (and waits in B's
    // socket); B will read on after it, and the victim's comes next.
    let first = TestUser::login_at(&on_a, None).await;
    assert_eq!(first.get("/auth/logout").await.status(), 200);
    assert_eq!(victim.get("/auth/logout").await.status(), 200);
    log_in_and_out(&on_a, 1500).await;
    let oldest: redis::streams::StreamRangeReply = redis
        .command(&["XRANGE", "lagged:revocations", "-", "+", "COUNT", "1"])
        .await;
    let first_kept: u64 = oldest.ids[0].get("n").unwrap();
    assert!(first_kept > 2, "the victim's announcement was trimmed");
    b.pause(false);

    let resumed = std::time::Instant::now();
    while thief.get("/").await.status() != 302 {
        assert!(
            resumed.elapsed() < Duration::from_secs(3),
            "the copied cookie still works on B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(thief.say("after").await.status(), 403);
    assert_eq!(
        crate::helpers::metric_at(&on_b, "chatdemo_logout_reloads_total").await,
        1
    );
}

/// Finding 5 of the second attack, its page half: during a Redis stall a page load waited
/// on the presence list's Redis call (8 of 300 answered in 20 s). Now pages and
/// `/a/presence` wait at most half a second for it and then answer with the last list
/// this instance had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_stalled_redis_holds_up_no_page_and_no_presence_list() {
    let Some(redis) = RedisServer::start("stalled_pages").await else {
        return;
    };
    let app = instance(&redis, "stalled-pages").await;
    let user = app.login(Some("reader")).await;
    let _online = user.socket(None).await;
    let listed = user.get("/a/presence").await.text().await.unwrap();
    assert!(listed.contains("reader"), "{listed}");

    redis.pause(true);
    let stalled = std::time::Instant::now();
    let mut loads = Vec::new();
    for i in 0..40 {
        let user = user.copy();
        loads.push(tokio::spawn(async move {
            let began = std::time::Instant::now();
            let path = if i % 2 == 0 { "/" } else { "/a/presence" };
            let response = user.get(path).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (path, status, text.contains("reader"), began.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for load in loads {
        let (path, status, lists_reader, took) = load.await.unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(lists_reader, "{path} lists who it knew was online");
        slowest = slowest.max(took);
    }
    let during = stalled.elapsed();
    redis.pause(false);
    eprintln!("40 loads during the stall; the slowest took {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "a load took {slowest:?}");
    assert!(during < Duration::from_secs(2), "{during:?}");
}

/// Finding 8, its second half: what a logout costs, measured. Each is kept until its
/// cookie would expire (30 days by default) in Redis's `P:revoked` and in every instance's
/// memory; docs/OPERATIONS.md states the bound these figures give. The logouts happen on
/// one instance and are measured on another, which learns them from the announcements
/// (the first also caches the decoded cookies it saw, a bounded cache of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_logout_costs_under_200_bytes_in_redis_and_under_300_in_each_instance() {
    const LOGOUTS: usize = 4000;
    let Some(redis) = RedisServer::start("logout_cost").await else {
        return;
    };
    let (a, b) = (
        process_instance(&redis, "cost").await,
        process_instance(&redis, "cost").await,
    );
    let (base, measured) = (a.url(""), b.url(""));
    // The first ones warm the allocator and the maps up.
    log_in_and_out(&base, 400).await;
    // The heap figure is read from the allocator at most once a second.
    let heap = || async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        crate::helpers::metric_at(&measured, "chatdemo_heap_in_use_bytes").await
    };
    let redis_bytes = || async {
        let bytes: u64 = redis
            .command(&["MEMORY", "USAGE", "cost:revoked", "SAMPLES", "0"])
            .await;
        bytes
    };
    let (heap_before, redis_before) = (heap().await, redis_bytes().await);
    log_in_and_out(&base, LOGOUTS).await;
    // B has read every announcement once the last logout's cookie is refused there.
    let last = TestUser::login_at(&base, None).await;
    let copy = last.copy().at(&measured);
    assert_eq!(last.get("/auth/logout").await.status(), 200);
    while copy.get("/").await.status() != 302 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (heap_after, redis_after) = (heap().await, redis_bytes().await);
    let in_redis = (redis_after - redis_before) / LOGOUTS as u64;
    let in_instance = heap_after.saturating_sub(heap_before) / LOGOUTS as u64;
    eprintln!(
        "per logout: {in_redis} B in Redis's set, {in_instance} B in another instance's heap"
    );
    assert!(in_redis < 200, "{in_redis} B per logout in Redis");
    assert!(
        in_instance < 300,
        "{in_instance} B per logout in the instance"
    );
    // The announcements are a bounded stream, whatever the number of logouts.
    let kept: u64 = redis.command(&["XLEN", "cost:revocations"]).await;
    assert!(kept <= 1100, "{kept} announcements kept");
}

/// A resend whose first post has left the cache is answered from what its key kept in
/// Redis: the first post's id, name and body (line breaks and all), stored once.
#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_resend_after_its_post_left_the_cache_is_the_first_post() {
    let Some(redis) = RedisServer::start("resend_after_eviction").await else {
        return;
    };
    let app = instance_with(&redis, "evicted", |s| s.room.cache_size = 2).await;
    let user = app.login(Some("Ann")).await;
    let body = "line one\nline two\n\nthree";
    let first = user.say_with_key_ok(body, "k-1").await;
    assert_eq!(first.body, body);
    for n in 0..3 {
        user.say_ok(&format!("filler {n}")).await;
    }
    assert!(!page_message_ids(&user.page().await).contains(&first.id));
    let again = user.say_with_key_ok("changed", "k-1").await;
    assert_eq!(again, first);
    assert_eq!(redis.copies_in_log("evicted", body).await, 1);
    assert_eq!(redis.copies_in_log("evicted", "changed").await, 0);
}
