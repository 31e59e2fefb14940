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
