use crate::helpers::{page_cursor, page_message_ids, TestApp};

#[tokio::test]
async fn the_page_shows_the_user_the_form_and_the_cached_messages() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Carol")).await;
    let first = user.say_ok("first <b>bold</b>").await;
    let second = user.say_ok("second").await;
    let response = user.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("<b id=\"user\">Carol</b>"));
    assert!(page.contains("href=\"/auth/logout\""));
    assert!(page.contains("action=\"/a/message/new\" method=\"post\""));
    assert!(page.contains("name=\"body\""));
    assert!(page.contains("<input type=\"hidden\" name=\"next\" value=\"/\">"));
    assert!(page.contains(&format!("name=\"_xsrf\" value=\"{}\"", user.xsrf())));
    // Each message exactly as its html, oldest first, and the newest id as the cursor.
    assert!(page.contains(&format!("{}{}", first.html, second.html)));
    assert!(!page.contains("<b>bold</b>"), "bodies are escaped");
    assert_eq!(
        page_message_ids(&page),
        [first.id.clone(), second.id.clone()]
    );
    assert_eq!(page_cursor(&page), second.id);
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let response = user.get("/").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    for directive in [
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["referrer-policy"], "same-origin");
    let logout = user.get("/auth/logout").await;
    assert!(logout.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // JSON answers are not documents, but are never sniffed either.
    let other = app.login(None).await;
    let posted = other.say("hi").await;
    assert_eq!(posted.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn pages_json_answers_and_errors_are_never_cached() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let said = user.say("hi").await;
    let cursor = said.json::<crate::helpers::Msg>().await.unwrap().id;
    let login = app.anonymous().get("/auth/login").await;
    let answers = [
        ("page", user.get("/").await),
        ("post", user.say("again").await),
        ("poll", user.poll(Some("not-a-cursor")).await),
        ("presence", user.get("/a/presence").await),
        ("login", login),
        ("bad post (400)", user.say("").await),
        (
            "no token (403)",
            user.post_form("/a/message/new", &[("body", "x")]).await,
        ),
        ("logout", user.get("/auth/logout").await),
    ];
    for (what, response) in answers {
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}: {}",
            response.status()
        );
    }
    assert!(!cursor.is_empty());
}

#[tokio::test]
async fn cookies_are_secure_only_when_configured() {
    let set_cookies = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    for secure in [false, true] {
        let app = TestApp::spawn_with(|s| s.security.cookie_secure = secure).await;
        let response = app.anonymous().get("/auth/login").await;
        let cookies = set_cookies(&response);
        for name in ["user=", "_xsrf="] {
            let cookie = cookies
                .iter()
                .find(|c| c.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {cookies:?}"));
            assert_eq!(
                cookie.split("; ").any(|a| a.eq_ignore_ascii_case("secure")),
                secure,
                "cookie_secure = {secure}: {cookie}"
            );
        }
    }
}

#[tokio::test]
async fn static_files_are_served_with_cache_headers() {
    let app = TestApp::spawn().await;
    let user = app.anonymous();
    for (path, kind) in [
        ("/static/chat.js", "javascript"),
        ("/static/chat.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let response = user.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains(kind),
            "{path}"
        );
        assert!(
            response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age"),
            "{path}"
        );
        assert!(response.headers().contains_key("etag"), "{path}");
    }
    // HEAD: the same headers, no body.
    let head = user
        .client
        .head(app.url("/static/chat.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
    let length: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        length,
        user.get("/static/chat.js")
            .await
            .bytes()
            .await
            .unwrap()
            .len()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(user.get("/static/nothing.js").await.status(), 404);
    assert_eq!(user.get("/static/../Cargo.toml").await.status(), 404);
}

/// The page names its icon, and a browser or tool asking for the classic `/favicon.ico`
/// is sent to it rather than given a 404.
#[tokio::test]
async fn the_page_has_an_icon_and_favicon_ico_leads_to_it() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Carol")).await;
    let page = user.get("/").await.text().await.unwrap();
    assert!(page.contains("<link rel=\"icon\" href=\"/static/favicon.svg?v="));
    let classic = app.anonymous().get("/favicon.ico").await;
    assert_eq!(classic.status(), 301);
    assert_eq!(classic.headers()["location"], "/static/favicon.svg");
    let icon = app.anonymous().get("/static/favicon.svg").await;
    assert_eq!(icon.status(), 200);
    assert!(icon.text().await.unwrap().starts_with("<svg"));
}

/// The page's accessible names: the message input and the rename field are labelled, the
/// message list is a log (a polite live region that does not read the history out), the
/// badge a status.
#[tokio::test]
async fn the_page_labels_its_controls_and_regions() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("Carol")).await;
    let page = user.get("/").await.text().await.unwrap();
    for needle in [
        "<label for=\"message\"",
        "<label for=\"rename-name\"",
        "id=\"inbox\" role=\"log\" aria-label=\"Messages\"",
        "id=\"status\" role=\"status\"",
        "<form id=\"rename\" action=\"/auth/login\" method=\"get\">",
        "name=\"name\" value=\"Carol\"",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
}

#[tokio::test]
async fn health_and_metrics_report_the_room() {
    let app = TestApp::spawn().await;
    let health = app.anonymous().get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let user = app.login(None).await;
    user.say_ok("one").await;
    user.say_ok("two").await;
    let text = app.anonymous().get("/metrics").await.text().await.unwrap();
    for name in [
        "chatdemo_connected_sockets",
        "chatdemo_waiting_polls",
        "chatdemo_messages_posted_total",
        "chatdemo_messages_delivered_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name}")), "{name} in {text}");
    }
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 2);
    // The allocator's own counts, where it can give them (glibc).
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let mapped = app.metric("chatdemo_heap_mapped_bytes").await;
        let in_use = app.metric("chatdemo_heap_in_use_bytes").await;
        assert!(in_use > 0 && in_use <= mapped, "{in_use} of {mapped}");
    }
}

#[tokio::test]
async fn metrics_are_served_only_to_the_allowlisted_addresses() {
    // The default allowlist is loopback, which is where the tests connect from.
    let app = TestApp::spawn().await;
    let metrics = app.anonymous().get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("chatdemo_connected_sockets"));

    // Off the list: 403, and no counter in the answer.
    let app = TestApp::spawn_with(|s| s.server.metrics_allow = vec![[10, 0, 0, 1].into()]).await;
    let refused = app.anonymous().get("/metrics").await;
    assert_eq!(refused.status(), 403);
    assert!(!refused.text().await.unwrap().contains("chatdemo_"));

    // Behind a trusted proxy the client's address decides, not the proxy's: loopback
    // forwarding for someone else is refused, forwarding for an allowed client is served.
    let app = TestApp::spawn_with(|s| {
        s.server.trusted_proxies = vec![[127, 0, 0, 1].into()];
        s.server.metrics_allow = vec![[127, 0, 0, 1].into(), [10, 0, 0, 7].into()];
    })
    .await;
    let user = app.anonymous();
    let forwarded = |client: &'static str| {
        user.client
            .get(format!("{}/metrics", app.address))
            .header("X-Forwarded-For", client)
            .send()
    };
    assert_eq!(forwarded("203.0.113.9").await.unwrap().status(), 403);
    assert_eq!(forwarded("10.0.0.7").await.unwrap().status(), 200);
}
