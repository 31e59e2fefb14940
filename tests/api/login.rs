use std::time::{Duration, Instant};

use crate::helpers::{close_code, TestApp, TEST_SECRET};

#[tokio::test]
async fn the_page_redirects_to_login_when_logged_out() {
    let app = TestApp::spawn().await;
    let response = app.anonymous().get("/").await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/auth/login?next=%2F");
}

#[tokio::test]
async fn login_sets_a_protected_user_cookie_and_an_xsrf_cookie() {
    let app = TestApp::spawn().await;
    let response = app.anonymous().get("/auth/login").await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let user = cookies
        .iter()
        .find(|c| c.starts_with("user="))
        .expect("user cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(user.contains(attribute), "{attribute} in {user}");
    }
    let xsrf = cookies
        .iter()
        .find(|c| c.starts_with("_xsrf="))
        .expect("xsrf cookie");
    assert!(
        !xsrf.contains("HttpOnly"),
        "the page's script must read {xsrf}"
    );
    assert!(xsrf.contains("Path=/"));
}

#[tokio::test]
async fn a_random_user_is_named_user_and_six_digits() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let page = user.page().await;
    let start = page.find("<b id=\"user\">").unwrap() + "<b id=\"user\">".len();
    let name = &page[start..start + 11];
    assert!(name.starts_with("user-"), "{name}");
    assert!(name[5..].chars().all(|c| c.is_ascii_digit()), "{name}");
    let message = user.say_ok("hello").await;
    assert_eq!(message.from, name);
}

#[tokio::test]
async fn a_chosen_name_is_used_and_a_bad_one_is_refused() {
    let app = TestApp::spawn().await;
    let alice = app.login(Some("Alice Smith")).await;
    assert_eq!(alice.say_ok("hi").await.from, "Alice Smith");
    for bad in [
        "",
        "Zo%C3%AB",
        "%3Cscript%3E",
        &"x".repeat(33),
        "a%2Fb",
        "a%ZZ",
        "%20",
        "%20%20%20",
        "+++",
    ] {
        let response = app
            .anonymous()
            .get(&format!("/auth/login?name={bad}"))
            .await;
        assert_eq!(response.status(), 400, "name {bad:?}");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "no login for {bad:?}"
        );
    }
}

#[tokio::test]
async fn a_padded_name_is_trimmed_and_its_inner_spaces_folded() {
    // " Ann" must not pass for "Ann", nor "Ann   Lee" for someone else.
    let app = TestApp::spawn().await;
    let ann = app.login(Some("  Ann  ")).await;
    assert_eq!(ann.say_ok("hi").await.from, "Ann");
    let ann_lee = app.login(Some(" Ann   Lee ")).await;
    assert_eq!(ann_lee.say_ok("hi").await.from, "Ann Lee");
    let page = ann_lee.page().await;
    assert!(
        page.contains("<b id=\"user\">Ann Lee</b>"),
        "the page names the folded name"
    );
}

#[tokio::test]
async fn login_returns_to_a_local_next_only() {
    let app = TestApp::spawn().await;
    for (next, location) in [
        ("%2F", "/"),
        ("%2Fsomewhere%3Fx%3D1", "/somewhere?x=1"),
        ("https%3A%2F%2Fevil.example%2F", "/"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%0D%0ASet-Cookie%3A+x", "/"),
    ] {
        let response = app
            .anonymous()
            .get(&format!("/auth/login?next={next}"))
            .await;
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], location, "next={next}");
    }
}

#[tokio::test]
async fn logout_clears_the_login() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    assert_eq!(user.get("/").await.status(), 200);
    let token = user.xsrf();
    let response = user.get("/auth/logout").await;
    assert_eq!(response.status(), 200);
    let removal = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("user="))
        .expect("the user cookie is cleared");
    assert!(
        removal.contains("Max-Age=0") || removal.contains("expires=Thu, 01 Jan 1970"),
        "{removal}"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("You are now logged out"));
    assert!(body.contains("href=\"/auth/login\""));
    assert_eq!(user.get("/").await.status(), 302);
    // With the login's own valid token, so the refusal is the login's, not the token's.
    let poll = user
        .client
        .post(app.url("/a/message/updates"))
        .header("Cookie", format!("_xsrf={token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("_xsrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 403);
    assert_eq!(poll.text().await.unwrap(), "login required");
}

#[tokio::test]
async fn a_tampered_user_cookie_is_logged_out() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let token = user.xsrf();
    let original = user.cookie("user").unwrap();
    let mut bytes = original.into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    // A fresh client, so only the tampered cookie rides along.
    let client = app.anonymous().client;
    let page = client
        .get(app.url("/"))
        .header("Cookie", format!("user={tampered}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 302);
    // With the login's own valid token, so the refusal is the cookie's, not the token's.
    let post = client
        .post(app.url("/a/message/new"))
        .header("Cookie", format!("user={tampered}; _xsrf={token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("body=hi&_xsrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert_eq!(post.text().await.unwrap(), "login required");
    // The untampered cookie with the same token posts: the test's request is right.
    let good = client
        .post(app.url("/a/message/new"))
        .header(
            "Cookie",
            format!("user={}; _xsrf={token}", user.cookie("user").unwrap()),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("body=hi&_xsrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
}

/// Builds the cookie an attacker holding the server key could make, with any issue time:
/// the server must still refuse a login older than `cookie_max_age_days`.
fn forged_user_cookie(issued_at: u64) -> String {
    use actix_web::cookie::{Cookie, CookieJar, Key};
    let login =
        serde_json::json!({"name": "Mallory", "id": "00ff".repeat(8), "issued_at": issued_at});
    let mut jar = CookieJar::new();
    jar.private_mut(&Key::derive_from(TEST_SECRET.as_bytes()))
        .add(Cookie::new("user", login.to_string()));
    jar.get("user").unwrap().value().to_owned()
}

#[tokio::test]
async fn an_expired_login_is_refused_by_the_server() {
    let app = TestApp::spawn().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let get_with = |cookie: String| {
        let client = app.anonymous().client;
        let url = app.url("/");
        async move {
            client
                .get(url)
                .header("Cookie", format!("user={cookie}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The forging is right: a fresh forged login is accepted ...
    assert_eq!(get_with(forged_user_cookie(now - 60)).await, 200);
    // ... and one older than 30 days is not, whatever the browser kept.
    assert_eq!(get_with(forged_user_cookie(now - 31 * 86_400)).await, 302);
}

#[tokio::test]
async fn logout_ends_every_copy_of_the_login_and_closes_its_sockets() {
    let app = TestApp::spawn().await;
    let user = app.login(Some("victim")).await;
    let thief = user.copy();
    assert_eq!(
        thief.get("/").await.status(),
        200,
        "the copy works before logout"
    );
    let mut socket = thief.socket(None).await;
    let mut own_socket = user.socket(None).await;
    let other = app.login(Some("bystander")).await;
    let mut bystander = other.socket(None).await;

    assert_eq!(user.get("/auth/logout").await.status(), 200);
    let started = Instant::now();
    assert_eq!(close_code(&mut socket).await, 1008);
    assert_eq!(close_code(&mut own_socket).await, 1008);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The copy's token is valid: the refusals below are the login's.
    let post = thief.say("after logout").await;
    assert_eq!(post.status(), 403);
    assert_eq!(post.text().await.unwrap(), "login required");
    let page = thief.get("/").await;
    assert_eq!(page.status(), 302);
    assert!(page.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/auth/login"));
    let poll = thief.poll(None).await;
    assert_eq!(poll.status(), 403);
    assert_eq!(poll.text().await.unwrap(), "login required");
    assert!(
        thief.socket_with(None, Some(&app.address)).await.is_err(),
        "no new socket"
    );
    // Another login is untouched: its socket still gets the room.
    let said = other.say_ok("still here").await;
    let batch = crate::helpers::next_batch(&mut bystander).await;
    assert_eq!(batch.messages, [said]);
    // Logging in again makes a new login that works.
    let again = app.login(Some("victim")).await;
    assert_eq!(again.say("back").await.status(), 200);
}
