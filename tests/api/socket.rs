use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::{
    assert_one_order, close_code, follow_socket, next_batch, next_text, page_cursor, send_text,
    TestApp,
};

fn post_frame(body: &str, xsrf: &str) -> String {
    serde_json::json!({"body": body, "_xsrf": xsrf}).to_string()
}

fn status_of(result: Result<crate::helpers::Ws, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the socket opened"),
    }
}

#[tokio::test]
async fn the_upgrade_needs_a_login_and_a_trusted_origin() {
    let app = TestApp::spawn_with(|s| {
        s.security.allowed_origins =
            vec![chatdemo::config::Origin::parse("https://chat.example").unwrap()]
    })
    .await;
    let user = app.login(None).await;
    let anonymous = app.anonymous();
    assert_eq!(
        status_of(app.socket_with(&anonymous, None, Some(&app.address)).await),
        403
    );
    for origin in [
        None,
        Some("null"),
        Some("http://evil.example"),
        Some("http://127.0.0.1:1"),
        Some("https://127.0.0.1"),
        Some("http://127.0.0.1.evil.example"),
    ] {
        assert_eq!(
            status_of(app.socket_with(&user, None, origin).await),
            403,
            "{origin:?}"
        );
    }
    assert_eq!(app.metric("chatdemo_connected_sockets").await, 0);
    // The server's own origin and the allowlist pass.
    app.socket_with(&user, None, Some(&app.address))
        .await
        .unwrap();
    app.socket_with(&user, None, Some("https://chat.example"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cursor_replays_what_came_after_it_with_the_long_poll_rules() {
    let app = TestApp::spawn_with(|s| s.room.cache_size = 3).await;
    let user = app.login(None).await;
    let a = user.say_ok("a").await;
    let b = user.say_ok("b").await;
    let c = user.say_ok("c").await;
    let mut ws = app.socket(&user, Some(&a.id)).await;
    let batch = next_batch(&mut ws).await;
    assert_eq!(batch.messages, [b.clone(), c.clone()]);
    assert!(!batch.reset);

    let mut ws = app.socket(&user, Some("unknown")).await;
    let batch = next_batch(&mut ws).await;
    assert_eq!(batch.messages, [a, b, c.clone()]);
    assert!(batch.reset);

    // Up to date: nothing is replayed, the next post is pushed.
    let mut ws = app.socket(&user, Some(&c.id)).await;
    let d = user.say_ok("d").await;
    assert_eq!(next_batch(&mut ws).await.messages, [d]);
}

#[tokio::test]
async fn one_room_for_both_transports_with_the_sender_included() {
    let app = TestApp::spawn().await;
    let alice = app.login(Some("alice")).await;
    let bob = app.login(Some("bob")).await;
    let cursor = page_cursor(&bob.page().await);
    let mut alice_ws = app.socket(&alice, None).await;
    let mut bob_ws = app.socket(&bob, None).await;

    // Over HTTP: both sockets and a poll see it.
    let from_http = alice.say_ok("over http").await;
    assert_eq!(
        next_batch(&mut alice_ws).await.messages,
        std::slice::from_ref(&from_http)
    );
    assert_eq!(
        next_batch(&mut bob_ws).await.messages,
        std::slice::from_ref(&from_http)
    );
    assert_eq!(
        bob.poll_ok(Some(&cursor)).await.messages,
        std::slice::from_ref(&from_http)
    );

    // Over the socket: the sender gets it back through the room, as do others and polls.
    send_text(
        &mut alice_ws,
        &post_frame("  over the socket ", &alice.xsrf()),
    )
    .await;
    let echoed = next_batch(&mut alice_ws).await.messages;
    assert_eq!(echoed.len(), 1);
    assert_eq!(echoed[0].from, "alice");
    assert_eq!(echoed[0].body, "over the socket");
    assert_eq!(next_batch(&mut bob_ws).await.messages, echoed);
    assert_eq!(bob.poll_ok(Some(&from_http.id)).await.messages, echoed);
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    let mut ws = app.socket(&user, None).await;
    for bad in [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        r#"{"body": 5, "_xsrf": "x"}"#.to_owned(),
        serde_json::json!({"body": "hi", "_xsrf": xsrf, "from": "admin"}).to_string(),
        post_frame("   ", &xsrf),
        post_frame(&"x".repeat(2001), &xsrf),
    ] {
        send_text(&mut ws, &bad).await;
        let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert!(
            reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {reply}"
        );
    }
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 0);
    send_text(&mut ws, &post_frame("still open", &xsrf)).await;
    assert_eq!(next_batch(&mut ws).await.messages[0].body, "still open");
}

#[tokio::test]
async fn a_missing_or_wrong_xsrf_closes_with_1008() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let other = app.login(None).await;
    for frame in [
        r#"{"body": "hi"}"#.to_owned(),
        post_frame("hi", "made-up"),
        post_frame("hi", &other.xsrf()),
    ] {
        let mut ws = app.socket(&user, None).await;
        send_text(&mut ws, &frame).await;
        assert_eq!(close_code(&mut ws).await, 1008, "{frame}");
    }
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 0);
}

#[tokio::test]
async fn binary_oversized_and_invalid_utf8_frames_close_with_their_codes() {
    let app = TestApp::spawn_with(|s| s.websocket.max_frame_bytes = 4096).await;
    let user = app.login(None).await;

    let mut ws = app.socket(&user, None).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1003);

    let mut ws = app.socket(&user, None).await;
    send_text(&mut ws, &"x".repeat(5000)).await;
    assert_eq!(close_code(&mut ws).await, 1009);

    // Fragments that are each small but too big together.
    let mut ws = app.socket(&user, None).await;
    let chunk = vec![b'x'; 1500];
    ws.send(Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    for _ in 0..2 {
        ws.send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
    }
    ws.send(Message::Frame(Frame::message(
        chunk,
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);

    let mut ws = app.socket(&user, None).await;
    ws.send(Message::Frame(Frame::message(
        vec![0xff, 0xfe, b'a'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1007);

    // None of it disturbed anyone.
    let mut ws = app.socket(&user, None).await;
    let message = user.say_ok("fine").await;
    assert_eq!(next_batch(&mut ws).await.messages, [message]);
}

#[tokio::test]
async fn posting_over_the_rate_gets_an_error_naming_the_wait() {
    let app = TestApp::spawn_with(|s| {
        s.room.rate_burst = 2;
        s.room.rate_per_sec = 0.2;
    })
    .await;
    let user = app.login(None).await;
    let mut ws = app.socket(&user, None).await;
    for i in 0..2 {
        send_text(&mut ws, &post_frame(&format!("ok {i}"), &user.xsrf())).await;
        next_batch(&mut ws).await;
    }
    send_text(&mut ws, &post_frame("too fast", &user.xsrf())).await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("wait 5 s"), "{error}");
    // The rate is shared with HTTP posts.
    assert_eq!(user.say("over http").await.status(), 429);
}

#[tokio::test]
async fn the_server_answers_pings_and_pings_itself() {
    let app = TestApp::spawn_with(|s| s.websocket.ping_interval_secs = 1).await;
    let user = app.login(None).await;
    let mut ws = app.socket(&user, None).await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let mut got_pong = false;
    let mut got_ping = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(got_pong && got_ping) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Pong(payload)))) => got_pong |= &payload[..] == b"are you there",
            Ok(Some(Ok(Message::Ping(_)))) => got_ping = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_pong && got_ping);
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_closed() {
    let app = TestApp::spawn_with(|s| s.websocket.ping_interval_secs = 1).await;
    let user = app.login(None).await;
    // A socket that is never read again: it neither answers pings nor closes.
    let silent = app.socket(&user, None).await;
    app.wait_for_metric("chatdemo_connected_sockets", 1, Duration::from_secs(5))
        .await;
    app.wait_for_metric("chatdemo_connected_sockets", 0, Duration::from_secs(10))
        .await;
    drop(silent);
}

/// Only the echo of the server's latest ping proves a client reads: one that sends pongs of
/// its own (or anything else) but never reads is still closed.
#[tokio::test]
async fn unasked_pongs_do_not_keep_a_peer_that_never_reads() {
    let app = TestApp::spawn_with(|s| s.websocket.ping_interval_secs = 1).await;
    let user = app.login(None).await;
    let mut writer = app.socket(&user, None).await;
    app.wait_for_metric("chatdemo_connected_sockets", 1, Duration::from_secs(5))
        .await;
    let pongs = tokio::spawn(async move {
        // Never read: the server's pings go unanswered.
        while writer
            .send(Message::Pong(b"not the ping's payload".to_vec().into()))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    app.wait_for_metric("chatdemo_connected_sockets", 0, Duration::from_secs(10))
        .await;
    pongs.abort();
}

#[tokio::test]
async fn a_client_that_vanishes_without_a_close_frame_is_cleaned_up() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let sockets: Vec<_> =
        futures_util::future::join_all((0..5).map(|_| app.socket(&user, None))).await;
    app.wait_for_metric("chatdemo_connected_sockets", 5, Duration::from_secs(5))
        .await;
    drop(sockets); // TCP closed, no close frame
    app.wait_for_metric("chatdemo_connected_sockets", 0, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn hundreds_of_sockets_from_one_login_are_capped_without_hurting_others() {
    let app = TestApp::spawn().await;
    let greedy = app.login(None).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match app.socket_with(&greedy, None, Some(&app.address)).await {
            Ok(ws) => held.push(ws),
            Err(WsError::Http(response)) if response.status() == 429 => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(held.len(), 64);
    assert_eq!(refused, 236);
    let other = app.login(None).await;
    let mut ws = app.socket(&other, None).await;
    let message = other.say_ok("unaffected").await;
    assert_eq!(next_batch(&mut ws).await.messages, [message]);
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(app.socket(&user, None).await);
    }
    let shutdown = app.shutdown.clone();
    let stopping = tokio::spawn(async move { shutdown.shutdown().await });
    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, 1001);
    }
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_dropped_while_50_others_get_everything() {
    let app = TestApp::spawn().await;
    let poster = app.login(None).await;
    let stalled_user = app.login(None).await;
    let mut stalled = app.socket(&stalled_user, None).await;
    let mut receivers = Vec::new();
    for _ in 0..50 {
        let user = app.login(None).await;
        let mut ws = app.socket(&user, None).await;
        receivers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut worst = Duration::ZERO;
            while seen.len() < 2500 {
                for message in next_batch(&mut ws).await.messages {
                    // Each body carries its send time in microseconds since the epoch.
                    let sent: u128 = message.body.split(' ').next().unwrap().parse().unwrap();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap();
                    worst = worst.max(Duration::from_micros((now.as_micros() - sent) as u64));
                    seen.push(message.id);
                }
            }
            (seen, worst)
        }));
    }
    // Big messages fill the stalled client's buffers sooner.
    let padding = "p".repeat(1900);
    let mut posted = Vec::new();
    for _ in 0..2500 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        posted.push(
            poster
                .say_ok(&format!("{} {padding}", now.as_micros()))
                .await
                .id,
        );
    }
    let mut worst_overall = Duration::ZERO;
    for receiver in receivers {
        let (seen, worst) = tokio::time::timeout(Duration::from_secs(60), receiver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, posted);
        worst_overall = worst_overall.max(worst);
    }
    assert!(
        app.metric("chatdemo_slow_disconnects_total").await >= 1,
        "the stalled socket was dropped"
    );
    assert!(
        worst_overall < Duration::from_secs(2),
        "no added delay: worst {worst_overall:?}"
    );
    // The stalled client finds it was dropped: with 1013 if the close frame could still be
    // queued, else (its buffers full, as here) by a reset. Never a clean end without a
    // word, never another code. It would resume with its cursor.
    let ending = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stalled.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return format!("close {:?}", frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                // The server's reset, told apart from a plain end of the stream (which
                // tungstenite also words as a "reset without closing handshake").
                Some(Err(tokio_tungstenite::tungstenite::Error::Io(error)))
                    if error.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return "reset".to_owned()
                }
                Some(Err(error)) => return format!("error {error}"),
                None => return "ended".to_owned(),
            }
        }
    })
    .await
    .expect("the stalled socket is dropped");
    assert!(
        ending == "close Some(1013)" || ending == "reset",
        "dropped with 1013 or a reset: {ending}"
    );
    // The receivers have hung up; the stalled client still holds its end, but the server
    // has let go of it.
    app.wait_for_metric("chatdemo_connected_sockets", 0, Duration::from_secs(5))
        .await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sockets_and_three_pollers_see_the_same_200_messages_in_one_order() {
    let app = TestApp::spawn().await;
    let mut receivers = Vec::new();
    for _ in 0..3 {
        let user = app.login(None).await;
        let mut ws = app.socket(&user, None).await;
        receivers.push(tokio::spawn(
            async move { follow_socket(&mut ws, 200).await },
        ));
    }
    for _ in 0..3 {
        let user = app.login(None).await;
        let cursor = page_cursor(&user.page().await);
        receivers.push(tokio::spawn(
            async move { user.follow_polls(cursor, 200).await },
        ));
    }
    // Two posters over HTTP and two over sockets, all at once.
    let mut posters = Vec::new();
    for p in 0..2 {
        let user = app.login(None).await;
        posters.push(tokio::spawn(async move {
            for i in 0..50 {
                user.say_ok(&format!("http {p}/{i}")).await;
            }
        }));
    }
    for p in 0..2 {
        let user = app.login(None).await;
        let mut ws = app.socket(&user, None).await;
        posters.push(tokio::spawn(async move {
            for i in 0..50 {
                send_text(&mut ws, &post_frame(&format!("ws {p}/{i}"), &user.xsrf())).await;
            }
            // Keep the socket open until its own last message is back.
            let mut own = 0;
            while own < 50 {
                own += next_batch(&mut ws)
                    .await
                    .messages
                    .iter()
                    .filter(|m| m.body.starts_with(&format!("ws {p}/")))
                    .count();
            }
        }));
    }
    for poster in posters {
        tokio::time::timeout(Duration::from_secs(60), poster)
            .await
            .unwrap()
            .unwrap();
    }
    let mut orders = Vec::new();
    for receiver in receivers {
        orders.push(
            tokio::time::timeout(Duration::from_secs(60), receiver)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_one_order(&orders, 200);
}

#[tokio::test]
async fn forwarded_headers_count_for_the_origin_only_from_a_trusted_proxy() {
    let behind_proxy = [
        ("X-Forwarded-Host", "chat.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    // Not configured: anyone could send these headers, so they change nothing.
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let refused = user
        .socket_with_headers(None, Some("https://chat.example"), &behind_proxy)
        .await;
    assert!(refused.is_err(), "an untrusted X-Forwarded-Host is ignored");
    assert!(user
        .socket_with_headers(None, Some(&app.address), &behind_proxy)
        .await
        .is_ok());

    // With the proxy trusted, the origin is the one the browser addressed through it.
    let app = TestApp::spawn_with(|s| {
        s.server.trusted_proxies = vec![std::net::IpAddr::from([127, 0, 0, 1])]
    })
    .await;
    let user = app.login(None).await;
    assert!(user
        .socket_with_headers(None, Some("https://chat.example"), &behind_proxy)
        .await
        .is_ok());
    let refused = user
        .socket_with_headers(None, Some(&app.address), &behind_proxy)
        .await;
    assert!(
        refused.is_err(),
        "the inner address is not the public origin"
    );
}

#[tokio::test]
async fn reserved_bits_without_an_extension_close_with_1002() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    for rsv in 1..=3 {
        let mut ws = app.socket(&user, None).await;
        let mut frame = Frame::message(b"hello".to_vec(), OpCode::Data(Data::Text), true);
        let header = frame.header_mut();
        (header.rsv1, header.rsv2, header.rsv3) = (rsv == 1, rsv == 2, rsv == 3);
        ws.send(Message::Frame(frame)).await.unwrap();
        assert_eq!(close_code(&mut ws).await, 1002, "RSV{rsv}");
    }
}

#[tokio::test]
async fn a_post_with_a_nonce_is_acknowledged_to_its_sender_alone_with_its_id() {
    let app = TestApp::spawn_with(|s| {
        s.room.rate_burst = 2;
        s.room.rate_per_sec = 0.2;
    })
    .await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    let mut ws = app.socket(&user, None).await;
    let other = app.login(None).await;
    let mut theirs = app.socket(&other, None).await;

    let post = serde_json::json!({"body": "hello", "_xsrf": xsrf, "nonce": "n-1"});
    send_text(&mut ws, &post.to_string()).await;
    // The ack and the message itself, in either order.
    let mut ack = None;
    let mut delivered = None;
    while ack.is_none() || delivered.is_none() {
        let frame: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        if frame.get("ack").is_some() {
            ack = Some(frame);
        } else {
            delivered = Some(frame["messages"][0]["id"].as_str().unwrap().to_owned());
        }
    }
    let ack = ack.unwrap();
    assert_eq!(ack["ack"], "n-1");
    assert_eq!(ack["id"].as_str(), delivered.as_deref());
    assert_eq!(ack.as_object().unwrap().len(), 2, "{ack}");
    // Another socket gets the message and no ack.
    let frame: serde_json::Value = serde_json::from_str(&next_text(&mut theirs).await).unwrap();
    assert!(frame.get("messages").is_some(), "{frame}");

    // A refused post names its nonce in the error: an empty body, then over the rate.
    let empty = serde_json::json!({"body": " ", "_xsrf": xsrf, "nonce": "n-2"});
    send_text(&mut ws, &empty.to_string()).await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(reply["nonce"], "n-2", "{reply}");
    assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    send_text(&mut ws, &post_frame("second", &xsrf)).await;
    next_batch(&mut ws).await;
    let over = serde_json::json!({"body": "third", "_xsrf": xsrf, "nonce": "n-3"});
    send_text(&mut ws, &over.to_string()).await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(reply["nonce"], "n-3", "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("wait"), "{reply}");

    // A nonce over 64 characters is a bad frame (with no nonce to echo); the socket stays.
    let long = serde_json::json!({"body": "x", "_xsrf": xsrf, "nonce": "n".repeat(65)});
    send_text(&mut ws, &long.to_string()).await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert!(reply["error"].as_str().unwrap().contains("64"), "{reply}");
    assert!(reply.get("nonce").is_none());
    let exact = serde_json::json!({"body": "x", "_xsrf": xsrf, "nonce": "é".repeat(64)});
    send_text(&mut ws, &exact.to_string()).await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        reply["nonce"].as_str().unwrap().chars().count(),
        64,
        "64 characters are fine"
    );
}

/// The cap is on a login's held polls and sockets together: 64 held polls leave no room
/// for a 65th poll or a socket (429 with `Retry-After`), while another login is served as
/// usual; once the polls are answered the login has its room back (finding 3 of the second
/// attack: 18,500 polls from one login took every connection slot).
#[tokio::test]
async fn a_logins_held_polls_and_sockets_share_one_cap() {
    let app = TestApp::spawn_with(|s| s.room.poll_timeout_secs = 25).await;
    let greedy = app.login(None).await;
    let start = greedy.say_ok("start").await;
    let mut held = Vec::new();
    for _ in 0..64 {
        let greedy = greedy.at(&app.address);
        let cursor = start.id.clone();
        held.push(tokio::spawn(async move {
            greedy.poll(Some(&cursor)).await.status()
        }));
    }
    app.wait_for_metric("chatdemo_waiting_polls", 64, Duration::from_secs(10))
        .await;

    let refused = greedy.poll(Some(&start.id)).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    match app.socket_with(&greedy, None, Some(&app.address)).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 429),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a socket past the cap was opened"),
    }

    // Someone else is not affected, and the message answers the greedy login's polls.
    let other = app.login(None).await;
    assert_eq!(other.get("/").await.status(), 200);
    let message = other.say_ok("unaffected").await;
    assert_eq!(other.poll_ok(Some(&start.id)).await.messages, [message]);
    for poll in held {
        assert_eq!(poll.await.unwrap(), 200);
    }
    app.wait_for_metric("chatdemo_waiting_polls", 0, Duration::from_secs(5))
        .await;
    assert_eq!(greedy.poll(Some(&start.id)).await.status(), 200);
}
