//! Limits per client address: new logins, and posts across all of an address's logins.
//! Every client here is 127.0.0.1 unless a trusted proxy says otherwise.

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, TestUser};

/// An app with the shipped limits per address (the harness lifts them for other tests).
async fn app_with_address_limits(adjust: impl FnOnce(&mut chatdemo::Settings)) -> TestApp {
    let shipped = chatdemo::Settings::defaults();
    TestApp::spawn_with(move |s| {
        s.room.address_burst = shipped.room.address_burst;
        s.room.address_per_sec = shipped.room.address_per_sec;
        s.security.login_burst = shipped.security.login_burst;
        s.security.login_per_sec = shipped.security.login_per_sec;
        adjust(s);
    })
    .await
}

async fn log_in_from(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let user = app.anonymous();
    let mut request = user.client.get(app.url("/auth/login"));
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.unwrap()
}

/// Logs in from `forwarded_for` until refused; returns how many got in and the refusal.
async fn log_in_until_refused(
    app: &TestApp,
    forwarded_for: Option<&str>,
) -> (u32, reqwest::Response) {
    for admitted in 0..1000 {
        let response = log_in_from(app, forwarded_for).await;
        if response.status() != 302 {
            return (admitted, response);
        }
    }
    panic!("1000 logins and no limit");
}

#[tokio::test]
async fn new_logins_from_one_address_are_limited_to_the_burst_then_the_rate() {
    let app = app_with_address_limits(|_| {}).await;
    let started = Instant::now();
    let (admitted, refused) = log_in_until_refused(&app, None).await;
    let most = 60.0 + started.elapsed().as_secs_f64() * 1.0 + 1.0;
    assert!(
        (60..=most as u32).contains(&admitted),
        "{admitted} logins admitted"
    );
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    // A forwarded address counts only from a trusted proxy: this peer is not one.
    assert_eq!(log_in_from(&app, Some("203.0.113.9")).await.status(), 429);
    // One a second after that.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(log_in_from(&app, None).await.status(), 302);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_login_budget() {
    let app = app_with_address_limits(|s| {
        s.server.trusted_proxies = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    })
    .await;
    let (admitted, _) = log_in_until_refused(&app, Some("203.0.113.1")).await;
    assert!(admitted >= 60, "{admitted}");
    // What the client itself put in front of the proxy's entry does not count.
    assert_eq!(
        log_in_from(&app, Some("198.51.100.1, 203.0.113.1"))
            .await
            .status(),
        429
    );
    // Another client behind the same proxy is not affected.
    assert_eq!(log_in_from(&app, Some("203.0.113.2")).await.status(), 302);
}

#[tokio::test]
async fn many_fresh_logins_from_one_address_share_one_posting_budget() {
    // The reported attack: 129 fresh logins posting 20 each at once (2,580 posts) replaced
    // the whole cache in a fraction of a second.
    let app = app_with_address_limits(|s| s.security.login_burst = 1000).await;
    let mut users = Vec::new();
    for _ in 0..129 {
        users.push(app.login(None).await);
    }
    let watcher = app.login(Some("watcher")).await;
    let before = watcher.say_ok("before the flood").await;
    let started = Instant::now();
    let mut posts = Vec::new();
    for user in users {
        posts.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                let response: reqwest::Response = TestUser::say(&user, &format!("spam {i}")).await;
                let retry = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                statuses.push((response.status().as_u16(), retry));
            }
            statuses
        }));
    }
    let mut accepted = 0;
    let mut refused = 0;
    for post in posts {
        for (status, retry) in post.await.unwrap() {
            match status {
                200 => accepted += 1,
                429 => {
                    assert!(retry.is_some(), "429 names the wait");
                    refused += 1;
                }
                other => panic!("status {other}"),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst (120, one already spent) and 20 a second since.
    let most = 120.0 + 20.0 * elapsed + 1.0;
    assert!(
        f64::from(accepted) <= most,
        "{accepted} accepted in {elapsed:.1} s (at most {most:.0})"
    );
    assert!(accepted >= 100, "{accepted} accepted");
    assert_eq!(accepted + refused, 129 * 20);
    // The message from before is still in the 200-message cache.
    let page = watcher.page().await;
    assert!(page.contains(&before.id), "the flood replaced the cache");
}

#[tokio::test]
async fn past_the_connection_limit_requests_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.server.max_connections = 3).await;
    let user = app.login(None).await;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let user = user.at(&app.address);
            // A poll that arrives while the check below holds a slot is refused too:
            // it tries again, as a client would.
            tokio::spawn(async move {
                loop {
                    let status = user.poll(None).await.status();
                    if status != 503 {
                        return status;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    // Once the three polls are held, the next request is refused (even `/metrics`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let refused = loop {
        let response = app.anonymous().get("/healthz").await;
        if response.status() == 503 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "5");
    for poll in held {
        poll.abort();
    }
    // The refusal was the limit's: with the polls gone, the same request is served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.anonymous().get("/healthz").await.status() != 200 {
        assert!(std::time::Instant::now() < deadline, "served again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Finding 3 of the second attack, the address half: held polls from one address took
/// every connection slot, and the server answered 503 to everyone. Now one address holds
/// at most its share (`server.max_connections_per_address`), sockets and requests
/// together; past it, that address gets 429 and everyone else is served as usual.
#[tokio::test]
async fn one_address_at_its_share_gets_429_while_another_chats_as_usual() {
    const SHARE: usize = 8;
    let app = TestApp::spawn_with(|s| {
        s.server.max_connections = 100;
        s.server.max_connections_per_address = SHARE;
        s.server.trusted_proxies = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    })
    .await;
    let from = |address: &'static str| {
        move |request: reqwest::RequestBuilder| request.header("X-Forwarded-For", address)
    };
    let attacker = from("192.0.2.1");
    let mut logins = Vec::new();
    for _ in 0..2 {
        let user = app.anonymous();
        let response = attacker(user.client.get(app.url("/auth/login")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        logins.push(user);
    }
    // Its share in held polls (from two logins) and one socket.
    let poll = |user: &TestUser| {
        attacker(user.client.post(app.url("/a/message/updates")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("_xsrf={}", user.xsrf()))
            .send()
    };
    let mut held = Vec::new();
    for i in 0..SHARE - 1 {
        held.push(tokio::spawn(poll(&logins[i % 2])));
    }
    app.wait_for_metric(
        "chatdemo_waiting_polls",
        (SHARE - 1) as u64,
        Duration::from_secs(5),
    )
    .await;
    let _socket = logins[0]
        .socket_with_headers(
            None,
            Some(&app.address),
            &[("X-Forwarded-For", "192.0.2.1")],
        )
        .await
        .expect("the last of its share");
    for refused in [
        poll(&logins[1]).await.unwrap(),
        attacker(logins[0].client.get(app.url("/")))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "5");
    }
    let upgrade = logins[1]
        .socket_with_headers(
            None,
            Some(&app.address),
            &[("X-Forwarded-For", "192.0.2.1")],
        )
        .await;
    assert!(
        matches!(&upgrade, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 429),
        "{upgrade:?}"
    );

    // Someone else, meanwhile: logs in, loads the page, posts, and a poll gets the post.
    let neighbour = from("198.51.100.7");
    let other = app.anonymous();
    let response = neighbour(other.client.get(app.url("/auth/login")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let page = neighbour(other.client.get(app.url("/")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cursor = crate::helpers::page_cursor(&page.text().await.unwrap());
    let posted = neighbour(other.client.post(app.url("/a/message/new")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("body=still+here&_xsrf={}", other.xsrf()))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let polled = neighbour(other.client.post(app.url("/a/message/updates")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("_xsrf={}&cursor={cursor}", other.xsrf()))
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), 200);
    assert!(polled.text().await.unwrap().contains("still here"));
    // The attacker's held polls were answered with that post too, as anyone's.
    for poll in held {
        assert_eq!(poll.await.unwrap().unwrap().status(), 200);
    }
}
