use std::time::Duration;

use crate::helpers::TestApp;

async fn assert_json_400(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), 400, "{case}");
    let error: serde_json::Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{case}: {error}"
    );
}

#[tokio::test]
async fn empty_blank_missing_and_over_long_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    for (case, body) in [
        ("empty", Some(String::new())),
        ("whitespace", Some(" \t\r\n ".to_owned())),
        ("controls only", Some("\u{1}\u{2}".to_owned())),
        ("too long", Some("x".repeat(2001))),
        ("missing", None),
    ] {
        let mut fields = vec![("_xsrf", xsrf.as_str())];
        if let Some(body) = &body {
            fields.push(("body", body));
        }
        assert_json_400(user.post_form("/a/message/new", &fields).await, case).await;
    }
    // Exactly at the limit (in characters, not bytes) is fine.
    user.say_ok(&"é".repeat(2000)).await;
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 1);
}

#[tokio::test]
async fn broken_encodings_are_400_and_huge_bodies_413() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    for (case, body) in [
        (
            "invalid utf-8",
            format!("body=%FF%FE&_xsrf={xsrf}").into_bytes(),
        ),
        (
            "raw invalid utf-8",
            [b"body=\xc3(&_xsrf=".as_slice(), xsrf.as_bytes()].concat(),
        ),
        (
            "broken percent",
            format!("body=100%&_xsrf={xsrf}").into_bytes(),
        ),
        (
            "short percent",
            format!("body=%4&_xsrf={xsrf}").into_bytes(),
        ),
    ] {
        let response = user.post_raw("/a/message/new", body).await;
        assert_eq!(response.status(), 400, "{case}");
    }
    let huge = format!("body={}&_xsrf={xsrf}", "x".repeat(200_000));
    assert_eq!(user.post_raw("/a/message/new", huge).await.status(), 413);
    let multipart = user
        .client
        .post(app.url("/a/message/new"))
        .header("Content-Type", "multipart/form-data; boundary=x")
        .header("X-Xsrftoken", &xsrf)
        .body("--x--")
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 415);
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 0);
    // And the server is fine afterwards.
    user.say_ok("still fine").await;
}

#[tokio::test]
async fn malformed_requests_never_get_a_5xx() {
    let app = TestApp::spawn_with(|s| s.room.poll_timeout_secs = 1).await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"&&&===&".to_vec(),
        b"body".to_vec(),
        format!("body=%00%01&_xsrf={xsrf}").into_bytes(),
        format!("cursor={}&_xsrf={xsrf}", "z".repeat(10_000)).into_bytes(),
        vec![0xff; 64],
    ];
    for body in bodies {
        for path in ["/a/message/new", "/a/message/updates"] {
            let status = user.post_raw(path, body.clone()).await.status();
            assert!(
                status.is_client_error() || status.is_success(),
                "{path}: {status}"
            );
        }
    }
    assert_eq!(app.anonymous().get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_body_that_never_comes_gets_408_and_the_connection_is_closed() {
    use reqwest::cookie::CookieStore;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|s| s.server.body_timeout_secs = 1).await;
    let user = app.login(None).await;
    let cookies = user
        .jar
        .cookies(&app.address.parse().unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for drip in [false, true] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .unwrap();
        let head = format!(
            "POST /a/message/new HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookies}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
            app.port
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let (mut reader, mut writer) = tcp.into_split();
        let dripping = tokio::spawn(async move {
            // Either nothing, or a byte now and then, never the whole body; the writing
            // side stays open either way (closing it would end the body early).
            loop {
                if drip && writer.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer))
            .await
            .expect("answered and closed within seconds")
            .unwrap();
        dripping.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "not before the timeout"
        );
    }
    // Nothing was posted.
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 0);
}
