use crate::helpers::TestApp;

async fn assert_refused(app: &TestApp, response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), 403, "{case}");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{case}"
    );
    assert!(
        !response.text().await.unwrap().is_empty(),
        "{case}: a short reason"
    );
    assert_eq!(
        app.metric("chatdemo_messages_posted_total").await,
        0,
        "{case}: nothing posted"
    );
}

#[tokio::test]
async fn posts_without_a_valid_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let other = app.login(None).await;
    let token = user.xsrf();

    let missing = user.post_form("/a/message/new", &[("body", "hi")]).await;
    assert_refused(&app, missing, "missing token").await;

    let mut tampered = token.clone().into_bytes();
    tampered[0] = if tampered[0] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let wrong = user
        .post_form("/a/message/new", &[("body", "hi"), ("_xsrf", &tampered)])
        .await;
    assert_refused(&app, wrong, "tampered token").await;

    let foreign = user
        .post_form(
            "/a/message/new",
            &[("body", "hi"), ("_xsrf", &other.xsrf())],
        )
        .await;
    assert_refused(&app, foreign, "another login's token").await;
}

#[tokio::test]
async fn a_made_up_cookie_and_field_pair_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let user_cookie = user.cookie("user").unwrap();
    // As if planted from a sibling subdomain: the attacker controls both halves.
    let response = app
        .anonymous()
        .client
        .post(app.url("/a/message/new"))
        .header("Cookie", format!("user={user_cookie}; _xsrf=attacker"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("body=hi&_xsrf=attacker")
        .send()
        .await
        .unwrap();
    assert_refused(&app, response, "attacker-chosen pair").await;

    // Another login's valid token and cookie, replayed together with this login.
    let other = app.login(None).await;
    let other_token = other.xsrf();
    let response = app
        .anonymous()
        .client
        .post(app.url("/a/message/new"))
        .header("Cookie", format!("user={user_cookie}; _xsrf={other_token}"))
        .header("X-Xsrftoken", &other_token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("body=hi")
        .send()
        .await
        .unwrap();
    assert_refused(&app, response, "a pair issued to another login").await;
}

#[tokio::test]
async fn the_token_may_come_as_either_header() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    for header in ["X-Xsrftoken", "X-CSRFToken"] {
        let response = user
            .client
            .post(app.url("/a/message/new"))
            .header(header, user.xsrf())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("body=via+header")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{header}");
    }
}

#[tokio::test]
async fn the_long_poll_needs_the_token_too() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let response = user.post_form("/a/message/updates", &[]).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_page_on_another_port_cannot_post_even_with_the_token() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let xsrf = user.xsrf();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = user
            .client
            .post(app.url("/a/message/new"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("body=hi&_xsrf={xsrf}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // What the other page's fetch carries: its own origin, a valid token read from
    // `document.cookie`, the victim's cookies.
    let other_port = "http://127.0.0.1:1".to_owned();
    for headers in [
        vec![("Origin", other_port.clone())],
        vec![("Origin", "null".to_owned())],
        vec![("Sec-Fetch-Site", "same-site".to_owned())],
        vec![("Sec-Fetch-Site", "cross-site".to_owned())],
        vec![
            ("Origin", app.address.clone()),
            ("Sec-Fetch-Site", "same-site".to_owned()),
        ],
    ] {
        let response = post(headers.clone()).await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
    }
    // The long poll too.
    let poll = user
        .client
        .post(app.url("/a/message/updates"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", other_port)
        .body(format!("_xsrf={xsrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 403);
    // Our own page, a same-origin fetch, and a script with no Origin all pass.
    for headers in [
        vec![("Origin", app.address.clone())],
        vec![("Sec-Fetch-Site", "same-origin".to_owned())],
        vec![("Sec-Fetch-Site", "none".to_owned())],
        vec![],
    ] {
        let response = post(headers.clone()).await.unwrap();
        assert_eq!(response.status(), 200, "{headers:?}");
    }
    // Nothing the refused requests sent was posted.
    assert_eq!(app.metric("chatdemo_messages_posted_total").await, 4);
}
