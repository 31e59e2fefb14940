use crate::helpers::{next_text, page_message_ids, send_text, TestApp};

#[tokio::test]
async fn a_post_answers_the_message_with_keys_in_order() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Dora")).await;
    let response = user.say("  hello\r\nworld  ").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let text = response.text().await.unwrap();
    let keys: Vec<usize> = [
        "\"id\"", "\"from\"", "\"body\"", "\"html\"", "\"time\"", "\"kind\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order in {text}");
    let message: crate::helpers::Msg = serde_json::from_str(&text).unwrap();
    assert_eq!(message.from, "Dora");
    assert_eq!(message.body, "hello\nworld");
    assert_eq!(message.kind, "message");
    // The time in the markup is UTC `HH:MM` of the message's own `time`.
    let clock = &message.time[11..16];
    assert_eq!(
        message.html,
        format!(
            "<div class=\"message\" id=\"m{}\"><time datetime=\"{}\">{clock}</time> <b>Dora: </b>hello\nworld</div>",
            message.id, message.time
        )
    );
    assert!(message
        .id
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == '-'));
}

#[tokio::test]
async fn the_sender_name_comes_from_the_login_not_the_request() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Eve")).await;
    let xsrf = user.xsrf();
    let response = user
        .post_form(
            "/a/message/new",
            &[("body", "hi"), ("from", "Admin"), ("_xsrf", &xsrf)],
        )
        .await;
    let message: crate::helpers::Msg = response.json().await.unwrap();
    assert_eq!(message.from, "Eve");
}

#[tokio::test]
async fn html_is_escaped_and_only_web_urls_become_links() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Finn")).await;
    let message = user
        .say_ok("<img src=x onerror=alert(1)> see https://example.com/a?b=1&c=2 and www.rust-lang.org, not javascript:alert(1)")
        .await;
    assert!(
        message.html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        message.html
    );
    assert!(message.html.contains(
        "<a href=\"https://example.com/a?b=1&amp;c=2\" rel=\"nofollow noopener\">https://example.com/a?b=1&amp;c=2</a>"
    ));
    assert!(message.html.contains(
        "<a href=\"http://www.rust-lang.org\" rel=\"nofollow noopener\">www.rust-lang.org</a>,"
    ));
    assert!(!message.html.contains("href=\"javascript"));
    assert_eq!(message.html.matches("<a ").count(), 2);
}

#[tokio::test]
async fn a_post_with_next_redirects_there_for_forms_without_javascript() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    let response = user
        .post_form(
            "/a/message/new",
            &[("body", "no js"), ("next", "/"), ("_xsrf", &xsrf)],
        )
        .await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/");
    let page = user.page().await;
    assert!(page.contains("</b>no js</div>"));
}

#[tokio::test]
async fn an_off_site_next_is_refused_and_nothing_is_posted() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    for next in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "evil",
        "/\r\nx",
    ] {
        let response = user
            .post_form(
                "/a/message/new",
                &[("body", "redirect me"), ("next", next), ("_xsrf", &xsrf)],
            )
            .await;
        assert_eq!(response.status(), 400, "next={next:?}");
    }
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 0);
}

#[tokio::test]
async fn posting_without_login_is_forbidden_not_redirected() {
    let app = TestApp::spawn().await;
    let response = app
        .anonymous()
        .post_form("/a/message/new", &[("body", "hi")])
        .await;
    assert_eq!(response.status(), 403);
    let response = app.anonymous().post_form("/a/message/updates", &[]).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_flood_from_one_user_is_rate_limited_without_touching_others() {
    let app = TestApp::spawn_with(|s| {
        s.room.rate_burst = 3;
        s.room.rate_per_sec = 0.5;
    })
    .await;
    let flooder = app.login(None).await;
    for i in 0..3 {
        flooder.say_ok(&format!("burst {i}")).await;
    }
    let response = flooder.say("one too many").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let error: serde_json::Value = response.json().await.unwrap();
    assert!(error["error"].is_string());
    // Someone else still posts, and the refused message is nowhere.
    app.login(None).await.say_ok("still here").await;
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 4);
    assert!(!flooder.page().await.contains("one too many"));
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, exactly.
fn is_rfc3339_utc_millis(time: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    time.len() == shape.len()
        && time
            .chars()
            .zip(shape.chars())
            .all(|(c, s)| if s == 'd' { c.is_ascii_digit() } else { c == s })
}

#[tokio::test]
async fn every_message_has_the_time_the_room_accepted_it_in_utc() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let before = std::time::SystemTime::now();
    let mut times = Vec::new();
    for i in 0..20 {
        let message = user.say_ok(&format!("m{i}")).await;
        assert!(is_rfc3339_utc_millis(&message.time), "{}", message.time);
        times.push(message.time);
    }
    // Non-decreasing in room order (the strings sort as the times do).
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // And it is now: the first is within a minute of the clock here.
    let secs = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (h, m) = ((secs / 3600) % 24, (secs / 60) % 60);
    let now = format!("{h:02}:{m:02}");
    let one_minute_on = format!("{:02}:{:02}", (h + (m + 1) / 60) % 24, (m + 1) % 60);
    assert!(
        times[0][11..16] == now || times[0][11..16] == one_minute_on,
        "{} vs {now}",
        times[0]
    );
}

#[tokio::test]
async fn reversed_and_invisible_text_cannot_disguise_a_message() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    // "exe.png" on screen, a .exe in fact: the override is dropped, href and text alike.
    let message = user.say_ok("http://a.com/\u{202e}gnp.exe").await;
    assert_eq!(message.body, "http://a.com/gnp.exe");
    assert!(!message.html.contains('\u{202e}'), "{}", message.html);
    assert!(message.html.contains(
        "<a href=\"http://a.com/gnp.exe\" rel=\"nofollow noopener\">http://a.com/gnp.exe</a>"
    ));
    for invisible in [
        "\u{200b}",
        "\u{feff}",
        " \u{200b}\u{200d} ",
        "\u{2066}\u{2069}",
    ] {
        let response = user.say(invisible).await;
        assert_eq!(response.status(), 400, "{invisible:?}");
    }
}

/// A post resent with its `Idempotency-Key` (over HTTP, or as a socket frame's nonce) is
/// the same post: the first one's message again, nothing stored, nothing charged. Another
/// key, or another login's same key, is another post; a malformed key is 400.
#[tokio::test]
async fn a_resend_with_the_same_idempotency_key_is_the_same_post() {
    let app = TestApp::spawn_with(|s| {
        s.room.rate_burst = 2;
        s.room.rate_per_sec = 0.01;
    })
    .await;
    let user = app.login(None).await;
    let first = user.say_with_key_ok("hello", "k-1").await;
    // Three resends, whatever they say: more than the budget allows, were each charged.
    for body in ["hello", "changed", "again"] {
        let again = user.say_with_key_ok(body, "k-1").await;
        assert_eq!(
            (again.id.as_str(), again.body.as_str()),
            (first.id.as_str(), "hello")
        );
    }
    // The socket's nonce is the same key.
    let mut ws = app.socket(&user, Some(&first.id)).await;
    let frame = serde_json::json!({"body": "hello", "_xsrf": user.xsrf(), "nonce": "k-1"});
    send_text(&mut ws, &frame.to_string()).await;
    let ack: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(ack["id"].as_str(), Some(first.id.as_str()), "{ack}");
    // Another key is another post; another login's k-1 is its own.
    let second = user.say_with_key_ok("hello", "k-2").await;
    assert_ne!(second.id, first.id);
    let other = app.login(None).await;
    let theirs = other.say_with_key_ok("hello", "k-1").await;
    assert_ne!(theirs.id, first.id);
    // Malformed keys: 400, and nothing stored.
    for bad in ["", "a b", "k.1", &"x".repeat(65)] {
        let response = user.say_with_key("bad key", bad).await;
        assert_eq!(response.status(), 400, "key {bad:?}");
    }
    let ids = page_message_ids(&user.page().await);
    assert_eq!(ids, [first.id, second.id, theirs.id]);
}
