use std::time::{Duration, Instant};

use crate::helpers::{page_cursor, page_message_ids, TestApp};

#[tokio::test]
async fn a_known_cursor_gets_what_came_after_it_at_once() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let a = user.say_ok("a").await;
    let b = user.say_ok("b").await;
    let c = user.say_ok("c").await;
    let batch = user.poll_ok(Some(&a.id)).await;
    assert_eq!(batch.messages, [b, c]);
    assert!(!batch.reset);
}

#[tokio::test]
async fn a_poll_without_new_messages_is_held_until_the_next_post() {
    let app = TestApp::spawn().await;
    let reader = app.login(None).await;
    let writer = app.login(None).await;
    let first = writer.say_ok("first").await;
    let held = tokio::spawn(async move { reader.poll_ok(Some(&first.id)).await });
    let no_cursor_reader = app.login(None).await;
    let held_no_cursor = tokio::spawn(async move { no_cursor_reader.poll_ok(None).await });
    app.wait_for_metric("chatdemo_waiting_polls", 2, Duration::from_secs(5))
        .await;
    assert!(!held.is_finished());
    let second = writer.say_ok("second").await;
    assert_eq!(held.await.unwrap().messages, std::slice::from_ref(&second));
    assert_eq!(held_no_cursor.await.unwrap().messages, [second]);
}

#[tokio::test]
async fn an_unknown_cursor_gets_the_whole_cache_flagged_as_reset() {
    let app = TestApp::spawn_with(|s| s.room.cache_size = 3).await;
    let user = app.login(None).await;
    let mut posted = Vec::new();
    for i in 0..5 {
        posted.push(user.say_ok(&format!("m{i}")).await);
    }
    // A cursor before the newest evicted message may have missed it, and a made-up
    // cursor may have missed anything: both get the cache with `reset`.
    for cursor in [posted[0].id.as_str(), "not-a-message"] {
        let batch = user.poll_ok(Some(cursor)).await;
        assert!(batch.reset, "{cursor}");
        assert_eq!(batch.messages, posted[2..], "{cursor}");
    }
    // The newest evicted message's cursor has missed nothing: everything after it is cached.
    let batch = user.poll_ok(Some(&posted[1].id)).await;
    assert!(!batch.reset);
    assert_eq!(batch.messages, posted[2..]);
    let text = user.poll(Some("nope")).await.text().await.unwrap();
    assert!(text.contains("\"reset\":true"), "{text}");
}

#[tokio::test]
async fn an_unknown_cursor_with_an_empty_cache_is_held() {
    let app = TestApp::spawn_with(|s| s.room.poll_timeout_secs = 1).await;
    let user = app.login(None).await;
    let started = Instant::now();
    let batch = user.poll_ok(Some("from-before-a-restart")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held, not answered at once"
    );
    assert!(batch.messages.is_empty());
}

#[tokio::test]
async fn a_held_poll_ends_empty_after_the_hold_time() {
    let app = TestApp::spawn_with(|s| s.room.poll_timeout_secs = 1).await;
    let user = app.login(None).await;
    let started = Instant::now();
    let response = user.poll(None).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"messages":[]}"#);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    app.wait_for_metric("chatdemo_waiting_polls", 0, Duration::from_secs(3))
        .await;
}

#[tokio::test]
async fn a_message_posted_between_page_render_and_first_poll_is_not_missed() {
    let app = TestApp::spawn().await;
    let reader = app.login(None).await;
    let writer = app.login(None).await;

    // An empty room: the page's cursor still pins "everything from here on".
    let cursor = page_cursor(&reader.page().await);
    let in_gap = writer.say_ok("posted in the gap").await;
    let batch = reader.poll_ok(Some(&cursor)).await;
    assert_eq!(batch.messages, std::slice::from_ref(&in_gap));
    assert!(!batch.reset);

    // A room with history: the cursor is the newest rendered message.
    let page = reader.page().await;
    assert_eq!(page_cursor(&page), in_gap.id);
    let second_gap = writer.say_ok("another gap").await;
    let batch = reader.poll_ok(Some(&page_cursor(&page))).await;
    assert_eq!(batch.messages, [second_gap]);
}

#[tokio::test]
async fn after_250_posts_the_page_and_a_reset_show_exactly_the_last_200() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(user.say_ok(&format!("message {i}")).await.id);
    }
    let last_200 = &ids[50..];
    let page = user.page().await;
    assert_eq!(page_message_ids(&page), last_200);
    assert_eq!(page_cursor(&page), ids[249]);
    let batch = user.poll_ok(Some("unknown-cursor")).await;
    assert!(batch.reset);
    let polled: Vec<String> = batch.messages.into_iter().map(|m| m.id).collect();
    assert_eq!(polled, last_200);
    let batch = user.poll_ok(Some(&ids[0])).await;
    assert!(batch.reset, "an evicted cursor is unknown too");
    assert_eq!(batch.messages.len(), 200);
}

#[tokio::test]
async fn polls_whose_clients_went_away_leave_nothing_behind() {
    // Held for the shipped 25 s: only the hang-up watch can release them sooner.
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    let mut polls = Vec::new();
    for i in 0..200 {
        // 50 per login: one login may hold 64 polls and sockets together.
        if i % 50 == 0 {
            users.push(app.login(None).await);
        }
        let user = users.last().unwrap();
        let client = user.client.clone();
        let url = app.url("/a/message/updates");
        let xsrf = user.xsrf();
        polls.push(tokio::spawn(async move {
            client
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("_xsrf={xsrf}"))
                .send()
                .await
        }));
    }
    app.wait_for_metric("chatdemo_waiting_polls", 200, Duration::from_secs(10))
        .await;
    for poll in &polls {
        poll.abort();
    }
    // The hang-up watch looks every 500 ms; the hub's sweep follows within a second.
    app.wait_for_metric("chatdemo_waiting_polls", 0, Duration::from_secs(3))
        .await;
}

/// A cursor of the room's epoch far past anything posted (ms = 2^63): no instance issued
/// it, so it is a `reset` at once; held instead, 10,000 of them made every post re-check
/// them all (finding 6 of the second attack).
#[tokio::test]
async fn a_cursor_no_one_issued_is_a_reset_at_once_not_a_wait() {
    let app = TestApp::spawn_with(|s| s.room.poll_timeout_secs = 25).await;
    let user = app.login(None).await;
    let first = user.say_ok("first").await;
    let epoch = first.id.rsplitn(3, '-').nth(2).unwrap().to_owned();
    let future = format!("{epoch}-{}-0", 1u64 << 63);

    let started = Instant::now();
    let batch = tokio::time::timeout(Duration::from_secs(3), user.poll_ok(Some(&future)))
        .await
        .expect("answered at once, not held for the poll window");
    assert!(batch.reset, "a cursor no one issued is a reset");
    assert_eq!(
        batch.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
        [&first.id]
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(app.metric("chatdemo_waiting_polls").await, 0);

    // The cursor of the newest message, which was issued, still waits for the next one.
    let held = user.poll(Some(&first.id));
    let next = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        user.say_ok("second").await
    };
    let (held, second) = tokio::join!(held, next);
    let held: crate::helpers::Batch = held.json().await.unwrap();
    assert!(!held.reset);
    assert_eq!(held.messages[0].id, second.id);
}
