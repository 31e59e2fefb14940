//! Real-browser tests: Debian's Chromium driven through chromedriver (WebDriver), two users
//! in two browser sessions, one of them without `WebSocket` so it must long-poll.
//!
//! Needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs them). Without them
//! the tests say so and pass, unless `BROWSER_TESTS=required` is set (as in CI), where a
//! missing browser is a failure.

// Test code: helpers unwrap (a panic is the failure report), and their `pub` is for the
// sibling test modules, not for users of a library.
#![allow(clippy::unwrap_used, unreachable_pub)]

#[path = "browser/all_day.rs"]
mod all_day;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/nginx.rs"]
mod nginx;
#[allow(dead_code)]
#[path = "api/redis_server.rs"]
mod redis_server;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use helpers::TestApp;
use nginx::{free_port, wait_listening, Nginx};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// chromedriver in its own process group: dropping this kills it and every Chromium it
/// started, even when a test panics.
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

fn browser_available() -> bool {
    let found = std::path::Path::new(CHROMIUM).exists()
        && Command::new(CHROMEDRIVER)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("BROWSER_TESTS").as_deref() != Ok("required"),
            "BROWSER_TESTS=required is set but chromium/chromedriver are missing"
        );
        eprintln!("skipping browser test: install chromium and chromium-driver to run it");
    }
    found
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    wait_listening(port, "chromedriver", Duration::from_secs(20)).await;
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profiles: tempfile::tempdir().unwrap(),
    }
}

/// A new browser with its own profile (so its own cookies).
async fn browser(driver: &Driver, name: &str, javascript: bool) -> Client {
    let profile = driver.profiles.path().join(name);
    let mut options = json!({
        "binary": CHROMIUM,
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if !javascript {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    let capabilities = json!({"browserName": "chrome", "goog:chromeOptions": options});
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Chrome DevTools through chromedriver's vendor endpoint.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params}).to_string();
        (http::Method::POST, Some(body))
    }
}

/// Removes `WebSocket` before any page script runs, on every page of this browser.
async fn remove_websocket(client: &Client) {
    client
        .issue_cmd(Cdp {
            cmd: "Page.addScriptToEvaluateOnNewDocument",
            params: json!({"source": "delete window.WebSocket;"}),
        })
        .await
        .expect("CDP injection");
}

/// Freezes the current tab's scripts (timers, network callbacks) as a browser freezes a
/// tab in the background, or lets them run again (`frozen` false).
async fn freeze(client: &Client, frozen: bool) {
    client
        .issue_cmd(Cdp {
            cmd: "Page.setWebLifecycleState",
            params: json!({"state": if frozen { "frozen" } else { "active" }}),
        })
        .await
        .expect("CDP lifecycle state");
}

/// Waits until `script` (a function body) returns a truthy value; returns it.
async fn wait_for(client: &Client, script: &str, what: &str) -> Value {
    wait_for_within(client, script, what, Duration::from_secs(30)).await
}

/// `wait_for`, with another limit.
async fn wait_for_within(client: &Client, script: &str, what: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        let truthy = !matches!(&value, Value::Null | Value::Bool(false))
            && value != json!("")
            && value != json!(0);
        if truthy {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (last: {value})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_transport(client: &Client, transport: &str, who: &str) {
    let script = format!(
        "var s = document.getElementById('status'); \
         return s && s.getAttribute('data-transport') === '{transport}' \
             && s.getAttribute('data-state') === 'connected';"
    );
    wait_for(
        client,
        &script,
        &format!("{who} connected over {transport}"),
    )
    .await;
}

/// How many messages in the inbox have exactly this body text (after the name).
fn count_script(text: &str) -> String {
    format!(
        "var want = {}; return Array.from(document.querySelectorAll('#inbox .message'))\
         .filter(function (m) {{ return m.lastChild && m.lastChild.textContent === want; }}).length;",
        json!(text)
    )
}

async fn count(client: &Client, text: &str) -> u64 {
    client
        .execute(&count_script(text), vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn wait_for_message(client: &Client, text: &str, who: &str) {
    wait_for(
        client,
        &count_script(text),
        &format!("{who} to show {text:?}"),
    )
    .await;
}

/// A presence notice (`<div class="notice">`) ending with `text` is in the inbox.
async fn wait_for_notice(client: &Client, text: &str) {
    let script = format!(
        "var want = {}; return Array.from(document.querySelectorAll('#inbox .notice'))\
         .some(function (n) {{ return n.textContent.endsWith(want); }});",
        json!(text)
    );
    wait_for(client, &script, &format!("a notice {text:?}")).await;
}

/// The input is cleared once the server has accepted the message.
async fn wait_for_input_cleared(client: &Client, who: &str) {
    let script = "return document.getElementById('message').value === '';";
    wait_for(client, script, &format!("{who}'s input cleared")).await;
}

/// A visible "you may have missed messages" line is in the inbox.
const GAP_SHOWN: &str = "var gap = document.querySelector('#inbox .gap'); \
                         return !!gap && gap.offsetHeight > 0 && gap.textContent.includes('missed');";

/// The browser's cookies for the app, as a `Cookie` header (a copy of the login).
async fn cookie_header(client: &Client) -> String {
    client
        .get_all_cookies()
        .await
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Calls `function` of the page's client core (`chat-core.js`, the same module instance
/// the page runs) with `args` (JSON) and returns its result.
async fn call_module(client: &Client, function: &str, args: &str) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1]; \
         const boot = new URL(document.querySelector('script[type=module]').src); \
         import(new URL('chat-core.js' + boot.search, boot)) \
           .then(m => done(m.{function}(...{args})), e => done('error: ' + e));"
    );
    client.execute_async(&script, vec![]).await.unwrap()
}

/// Alice on the WebSocket and Bob (whose browser has no WebSocket) long polling, both
/// logged in at `base` and connected.
async fn alice_and_bob(driver: &Driver, base: &str) -> (Client, Client) {
    let (alice, bob) = tokio::join!(browser(driver, "alice", true), browser(driver, "bob", true));
    remove_websocket(&bob).await;
    alice
        .goto(&format!("{base}/auth/login?name=Alice"))
        .await
        .unwrap();
    bob.goto(&format!("{base}/auth/login?name=Bob"))
        .await
        .unwrap();
    wait_for_transport(&alice, "websocket", "Alice").await;
    wait_for_transport(&bob, "longpoll", "Bob").await;
    (alice, bob)
}

async fn type_and_send(client: &Client, text: &str) {
    let input = client.find(Locator::Css("#message")).await.unwrap();
    input.send_keys(text).await.unwrap();
    client
        .find(Locator::Css("#messageform input[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn two_users_on_two_transports_chat_and_survive_a_restart() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let (alice, bob) = alice_and_bob(&driver, &app.address).await;
    let bob_has_socket = bob
        .execute("return typeof window.WebSocket;", vec![])
        .await
        .unwrap();
    assert_eq!(bob_has_socket, json!("undefined"));

    // A types, B sees it; B types, A sees it. The input is cleared once accepted.
    type_and_send(&alice, "hello from Alice").await;
    wait_for_message(&bob, "hello from Alice", "Bob").await;
    wait_for_message(&alice, "hello from Alice", "Alice").await;
    wait_for_input_cleared(&alice, "Alice").await;
    type_and_send(&bob, "hello from Bob").await;
    wait_for_message(&alice, "hello from Bob", "Alice").await;
    wait_for_message(&bob, "hello from Bob", "Bob").await;
    wait_for_input_cleared(&bob, "Bob").await;

    // A second tab of Alice's updates too.
    let first_tab = alice.window().await.unwrap();
    let second_tab = alice.new_window(true).await.unwrap().handle;
    alice.switch_to_window(second_tab.clone()).await.unwrap();
    alice.goto(&app.url("/")).await.unwrap();
    wait_for_transport(&alice, "websocket", "Alice's second tab").await;
    type_and_send(&bob, "to both tabs").await;
    wait_for_message(&alice, "to both tabs", "Alice's second tab").await;
    alice.switch_to_window(first_tab.clone()).await.unwrap();
    wait_for_message(&alice, "to both tabs", "Alice's first tab").await;

    // Restart the server on the same port and post before the pages come back. Were a
    // page to reach the new, empty room first, its old cursor would be held as no cursor
    // is (the contract), and the post would come without `reset`; so the pages are frozen
    // meanwhile, as a tab in the background is, and reconnect once thawed.
    let port = app.port;
    freeze(&alice, true).await;
    freeze(&bob, true).await;
    app.shutdown.shutdown().await;
    let _ = app.server.await;
    let app = TestApp::spawn_with(|s| s.server.port = port).await;
    let carol = app.login(Some("Carol")).await;
    carol.say_ok("posted during the restart").await;
    freeze(&alice, false).await;
    freeze(&bob, false).await;
    for (client, who) in [(&alice, "Alice"), (&bob, "Bob")] {
        wait_for_message(client, "posted during the restart", who).await;
        wait_for(
            client,
            "return document.getElementById('status').getAttribute('data-state') === 'connected';",
            who,
        )
        .await;
    }
    // The restarted in-memory room is a new log: each page says it may have missed some.
    for (client, who) in [(&alice, "Alice"), (&bob, "Bob")] {
        wait_for(client, GAP_SHOWN, &format!("{who}'s missed-messages line")).await;
    }
    alice.switch_to_window(second_tab).await.unwrap();
    wait_for_message(&alice, "posted during the restart", "Alice's second tab").await;
    // Give duplicates a chance to show up, then check there are none anywhere.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&alice, "posted during the restart").await, 1);
    alice.switch_to_window(first_tab).await.unwrap();
    for client in [&alice, &bob] {
        assert_eq!(count(client, "posted during the restart").await, 1);
        assert_eq!(count(client, "hello from Alice").await, 1);
        assert_eq!(count(client, "hello from Bob").await, 1);
    }
    // And they still talk to each other after the restart.
    type_and_send(&bob, "after the restart").await;
    wait_for_message(&alice, "after the restart", "Alice").await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_form_posts_with_javascript_disabled() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let browser = browser(&driver, "no-js", false).await;
    browser
        .goto(&app.url("/auth/login?name=NoScript"))
        .await
        .unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/");
    type_and_send(&browser, "posted without javascript").await;
    // The POST answers 302 to `next`, and the page that comes back shows the message.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let source = browser.source().await.unwrap();
        if source.contains("<b>NoScript: </b>posted without javascript</div>") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message shows after the redirect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.current_url().await.unwrap().path(), "/");
    let status = browser
        .find(Locator::Css("#status"))
        .await
        .unwrap()
        .attr("data-state")
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("connecting"), "no script ran");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver, redis-server and nginx; run with --include-ignored"]
async fn two_users_chat_through_nginx_over_two_instances_without_sticky_sessions() {
    if !browser_available() || !Nginx::available() {
        return;
    }
    let Some(redis) = redis_server::RedisServer::start("the balancer test").await else {
        return;
    };
    let instance = || {
        let url = redis.url();
        TestApp::spawn_with(move |s| {
            s.store.backend = chatdemo::config::Backend::Redis;
            s.store.redis_url = url;
            s.store.key_prefix = "balanced".into();
            s.server.trusted_proxies = vec![std::net::IpAddr::from([127, 0, 0, 1])];
        })
    };
    let (a, b) = (instance().await, instance().await);
    let nginx = Nginx::start([a.port, b.port]).await;
    let driver = start_driver().await;
    let (alice, bob) = alice_and_bob(&driver, &nginx.url).await;

    for round in 0..3 {
        let from_alice = format!("Alice says {round}");
        type_and_send(&alice, &from_alice).await;
        wait_for_message(&bob, &from_alice, "Bob").await;
        wait_for_message(&alice, &from_alice, "Alice").await;
        wait_for_input_cleared(&alice, "Alice").await;
        let from_bob = format!("Bob says {round}");
        type_and_send(&bob, &from_bob).await;
        wait_for_message(&alice, &from_bob, "Alice").await;
        wait_for_message(&bob, &from_bob, "Bob").await;
        wait_for_input_cleared(&bob, "Bob").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for client in [&alice, &bob] {
        for round in 0..3 {
            assert_eq!(count(client, &format!("Alice says {round}")).await, 1);
            assert_eq!(count(client, &format!("Bob says {round}")).await, 1);
        }
    }
    // The balancer really did alternate: Bob's polls, each from the cursor of the one
    // before, went to both instances.
    let instances = |path| {
        let mut seen = nginx.upstreams_of(path);
        seen.sort();
        seen.dedup();
        seen
    };
    assert_eq!(
        instances("/a/message/updates").len(),
        2,
        "polls on both instances"
    );
    assert_eq!(
        instances("/a/message/new").len(),
        2,
        "posts on both instances"
    );

    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn times_show_in_the_readers_time_zone() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let poster = app.login(Some("Poster")).await;
    let rendered = poster.say_ok("rendered into the page").await;
    let reader = browser(&driver, "reader", true).await;
    // India: UTC+5:30, so a wrong offset or a UTC fallback cannot pass by accident.
    for (cmd, params) in [
        (
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": "Asia/Kolkata"}),
        ),
        ("Emulation.setLocaleOverride", json!({"locale": "en-GB"})),
    ] {
        reader.issue_cmd(Cdp { cmd, params }).await.unwrap();
    }
    reader
        .goto(&app.url("/auth/login?name=Reader"))
        .await
        .unwrap();
    wait_for_message(&reader, "rendered into the page", "Reader").await;
    let live = poster.say_ok("arrived live").await;
    wait_for_message(&reader, "arrived live", "Reader").await;

    for message in [rendered, live] {
        let minutes: u32 = message.time[11..13].parse::<u32>().unwrap() * 60
            + message.time[14..16].parse::<u32>().unwrap();
        let local = (minutes + 5 * 60 + 30) % (24 * 60);
        let expected = format!("{:02}:{:02}", local / 60, local % 60);
        let script = format!(
            "var t = document.getElementById('m{}').querySelector('time'); \
             return [t.textContent, t.title, t.getAttribute('datetime')];",
            message.id
        );
        let shown = reader.execute(&script, vec![]).await.unwrap();
        assert_eq!(shown[0], json!(expected), "{}: {shown}", message.body);
        assert_eq!(shown[2], json!(message.time));
        let title = shown[1].as_str().unwrap();
        assert!(
            title.contains(&expected[..2]) && title.len() > 10,
            "full date on hover: {title}"
        );
    }
    reader.close().await.unwrap();
}

/// A room with presence notices and a one-second grace.
async fn with_notices() -> TestApp {
    TestApp::spawn_with(|s| {
        s.presence.notices = true;
        s.presence.leave_grace_secs = 1;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_reader_sees_who_joins_and_leaves_without_reloading() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = with_notices().await;
    let (alice, bob) = tokio::join!(
        browser(&driver, "alice", true),
        browser(&driver, "bob", true)
    );
    let online = "return [document.getElementById('online-count').textContent, \
                  Array.from(document.querySelectorAll('#online li')).map(li => li.textContent)];";
    let wait_online = |client: &Client, count: &'static str, names: Value, who: &'static str| {
        let client = client.clone();
        async move {
            let script = format!(
                "var s = (function () {{ {online} }})(); return s[0] === '{count}' && \
                 JSON.stringify(s[1]) === '{names}';"
            );
            wait_for(&client, &script, who).await;
        }
    };

    bob.goto(&app.url("/auth/login?name=Bob")).await.unwrap();
    wait_for_transport(&bob, "websocket", "Bob").await;
    wait_online(&bob, "1", json!(["Bob"]), "Bob alone").await;

    alice
        .goto(&app.url("/auth/login?name=Alice"))
        .await
        .unwrap();
    wait_for_transport(&alice, "websocket", "Alice").await;
    // Bob's page, never reloaded, grows the list and shows the notice.
    wait_online(&bob, "2", json!(["Bob", "Alice"]), "Bob sees Alice").await;
    wait_for_notice(&bob, "Alice joined the room").await;
    wait_online(&alice, "2", json!(["Bob", "Alice"]), "Alice sees both").await;

    // Alice closes her browser: after the grace, Bob sees her leave.
    alice.close().await.unwrap();
    wait_for_notice(&bob, "Alice left the room").await;
    wait_online(&bob, "1", json!(["Bob"]), "Bob alone again").await;
    let notice = bob
        .execute(
            "return document.querySelector('#inbox .notice:last-child').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        notice.as_str().unwrap().ends_with("Alice left the room"),
        "{notice}"
    );
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_crowd_shows_as_the_first_names_and_how_many_more() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = with_notices().await;
    // 104 others online before the page opens: it lists the first 100.
    let mut crowd = Vec::new();
    for i in 0..104 {
        let user = app.login(Some(&format!("p{i:03}"))).await;
        let socket = user.socket(None).await;
        crowd.push((user, socket));
    }
    let bob = browser(&driver, "bob", true).await;
    let shown = "var more = document.getElementById('online-more');                  return [document.getElementById('online-count').textContent,                  document.querySelectorAll('#online li').length,                  more.hidden ? '' : more.textContent];";
    let wait_shown = |want: Value, what: &'static str| {
        let bob = bob.clone();
        async move {
            let script = format!(
                "var s = (function () {{ {shown} }})(); return JSON.stringify(s) === '{want}';"
            );
            wait_for(&bob, &script, what).await;
        }
    };
    bob.goto(&app.url("/auth/login?name=Bob")).await.unwrap();
    wait_for_transport(&bob, "websocket", "Bob").await;
    // Bob's own join may come folded with nothing else; either way he counts.
    wait_shown(json!(["105", 100, "and 5 more"]), "the page's first names").await;
    let first = bob
        .execute(
            "return document.querySelector('#online li').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, json!("p000"), "oldest first");

    // Three more arrive together: one folded notice, the count follows.
    for i in 104..107 {
        let user = app.login(Some(&format!("p{i:03}"))).await;
        let socket = user.socket(None).await;
        crowd.push((user, socket));
    }
    wait_shown(json!(["108", 100, "and 8 more"]), "three more").await;
    wait_for_notice(&bob, "joined the room").await;

    // Ten of the listed ones leave: they go from the list, and the count is exact.
    for _ in 0..10 {
        crowd.remove(0);
    }
    wait_shown(json!(["98", 90, "and 8 more"]), "ten fewer").await;
    wait_for_notice(&bob, "and 8 others left the room").await;
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn on_a_narrow_screen_the_list_folds_behind_the_count() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let state = "var box = document.getElementById('presence'); \
                 return [box.open, document.getElementById('online-count').offsetWidth > 0];";
    for (name, width, open) in [("wide", 1200, true), ("narrow", 420, false)] {
        let client = browser(&driver, name, true).await;
        client.set_window_size(width, 900).await.unwrap();
        client
            .goto(&app.url(&format!("/auth/login?name={name}")))
            .await
            .unwrap();
        wait_for_transport(&client, "websocket", name).await;
        let shown = client.execute(state, vec![]).await.unwrap();
        assert_eq!(shown, json!([open, true]), "{name}: open, count visible");
        client.close().await.unwrap();
    }
}

/// The page is logged out, offers the login link, and stops trying.
const DEAD_END: &str = "var s = document.getElementById('status'); \
    var link = document.querySelector('#error a'); \
    return s.getAttribute('data-state') === 'logged out' && !!link \
        && link.getAttribute('href') === '/auth/login?next=%2F' && link.offsetHeight > 0 \
        && document.querySelector('#messageform input[type=submit]').disabled;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_logout_elsewhere_is_a_dead_end_on_both_transports_not_a_retry_loop() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let (alice, bob) = alice_and_bob(&driver, &app.address).await;

    // Each login is ended from another device holding the same cookie.
    let http = reqwest::Client::new();
    for client in [&alice, &bob] {
        let cookies = cookie_header(client).await;
        let logout = http
            .get(app.url("/auth/logout"))
            .header("Cookie", cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 200);
    }
    // Alice's socket is closed with 1008: a dead end at once.
    wait_for(&alice, DEAD_END, "Alice's page to show the login link").await;
    // Bob's held poll ends with the next message; the poll after it is refused.
    let carol = app.login(Some("Carol")).await;
    carol.say_ok("wakes the held polls").await;
    wait_for(&bob, DEAD_END, "Bob's page to show the login link").await;
    // Neither page keeps trying: no socket, no held poll, for a while.
    for _ in 0..15 {
        assert_eq!(app.metric("chatdemo_connected_sockets").await, 0);
        assert_eq!(app.metric("chatdemo_waiting_polls").await, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The link leads back in.
    alice
        .find(Locator::Css("#error a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_transport(&alice, "websocket", "Alice, logged in again").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn close_codes_decide_between_a_dead_end_at_once_and_a_backoff() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let client = browser(&driver, "policy", true).await;
    client.goto(&app.url("/auth/login")).await.unwrap();
    wait_for_transport(&client, "websocket", "the page").await;
    // The same module instance the page runs.
    assert_eq!(
        call_module(&client, "afterClose", "[1008]").await,
        json!("dead")
    );
    assert_eq!(
        call_module(&client, "afterClose", "[1013]").await,
        json!("now")
    );
    assert_eq!(
        call_module(&client, "afterClose", "[1001]").await,
        json!("later")
    );
    assert_eq!(
        call_module(&client, "afterClose", "[1006]").await,
        json!("later")
    );
    for (attempt, low, high) in [
        (0, 250.0, 500.0),
        (3, 2000.0, 4000.0),
        (20, 15000.0, 30000.0),
    ] {
        let delay = call_module(&client, "backoff", &format!("[{attempt}]")).await;
        let delay = delay.as_f64().unwrap();
        assert!((low..=high).contains(&delay), "attempt {attempt}: {delay}");
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_cursor_is_the_scripts_own_not_read_back_from_the_page() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let reader = browser(&driver, "reader", true).await;
    remove_websocket(&reader).await;
    reader
        .goto(&app.url("/auth/login?name=Reader"))
        .await
        .unwrap();
    wait_for_transport(&reader, "longpoll", "the reader").await;
    let writer = app.login(Some("Writer")).await;
    writer.say_ok("first").await;
    wait_for_message(&reader, "first", "the reader").await;
    // Something on the page (an extension, a stray script) empties the inbox and its
    // attribute: the next polls still go on from the script's cursor, so the next message
    // comes alone, with no reset and no replay of the first.
    reader
        .execute(
            "var inbox = document.getElementById('inbox'); inbox.replaceChildren(); \
             inbox.setAttribute('data-cursor', 'nonsense');",
            vec![],
        )
        .await
        .unwrap();
    let second = writer.say_ok("second").await;
    wait_for_message(&reader, "second", "the reader").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shown = reader
        .execute(
            "return Array.from(document.getElementById('inbox').children).map(e => e.id);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([format!("m{}", second.id)]));
    reader.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_refused_socket_post_keeps_its_text_and_an_accepted_one_clears_it() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let client = browser(&driver, "poster", true).await;
    client
        .goto(&app.url("/auth/login?name=Poster"))
        .await
        .unwrap();
    wait_for_transport(&client, "websocket", "the poster").await;
    // Too long: the server refuses it with an error frame naming this post's nonce.
    let long = "x".repeat(2001);
    client
        .execute(
            "document.getElementById('message').value = arguments[0];",
            vec![json!(long)],
        )
        .await
        .unwrap();
    client
        .find(Locator::Css("#messageform input[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &client,
        "var e = document.getElementById('error'); return !e.hidden && e.textContent.startsWith('Not sent');",
        "the refusal shown",
    )
    .await;
    let kept = client
        .execute(
            "return document.getElementById('message').value.length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        kept,
        json!(2001),
        "the refused text stays for the user to fix"
    );
    // A good post clears the input (on its own ack) and the error.
    client
        .execute("document.getElementById('message').value = '';", vec![])
        .await
        .unwrap();
    type_and_send(&client, "this one is fine").await;
    wait_for_input_cleared(&client, "the poster").await;
    wait_for_message(&client, "this one is fine", "the poster").await;
    let error_hidden = client
        .execute("return document.getElementById('error').hidden;", vec![])
        .await
        .unwrap();
    assert_eq!(error_hidden, json!(true));
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_inbox_keeps_the_last_thousand_and_follows_only_a_reader_at_the_bottom() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let reader = browser(&driver, "reader", true).await;
    reader.set_window_size(900, 700).await.unwrap();
    reader
        .goto(&app.url("/auth/login?name=Reader"))
        .await
        .unwrap();
    wait_for_transport(&reader, "websocket", "the reader").await;
    let writer = app.login(Some("Writer")).await;
    for i in 0..1050 {
        writer.say_ok(&format!("m{i}")).await;
    }
    wait_for_message(&reader, "m1049", "the reader").await;
    let state = "var inbox = document.getElementById('inbox'); \
        return [inbox.childElementCount, inbox.firstElementChild.lastChild.textContent, \
                window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40, \
                document.getElementById('new-messages').hidden];";
    let shown = reader.execute(state, vec![]).await.unwrap();
    // The oldest 50 are gone from the page; the reader was at the bottom and followed.
    assert_eq!(shown, json!([1000, "m50", true, true]));

    // Reading older messages: a new one neither scrolls the page nor is missed.
    reader
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap();
    writer.say_ok("while you read").await;
    wait_for_message(&reader, "while you read", "the reader").await;
    let scrolled = reader
        .execute(
            "return [window.scrollY, document.getElementById('new-messages').hidden];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        scrolled,
        json!([0, false]),
        "stays put, with the button shown"
    );
    reader
        .find(Locator::Css("#new-messages"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = reader.execute(state, vec![]).await.unwrap();
    assert_eq!(shown[2], json!(true), "the button goes to the bottom");
    assert_eq!(shown[3], json!(true), "and hides");
    reader.close().await.unwrap();
}

/// A proxy in front of the server that refuses every WebSocket upgrade with 503 while
/// `refusing` is set, and passes everything else (each connection's bytes, both ways).
/// Counts the upgrades it refused and let through.
struct UpgradeGate {
    url: String,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    passed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl UpgradeGate {
    async fn start(upstream: u16) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Self {
            url: format!("http://127.0.0.1:{port}"),
            refusing: std::sync::Arc::new(true.into()),
            refused: std::sync::Arc::default(),
            passed: std::sync::Arc::default(),
        };
        let (refusing, refused, passed) = (
            gate.refusing.clone(),
            gate.refused.clone(),
            gate.passed.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (refusing, refused, passed) =
                    (refusing.clone(), refused.clone(), passed.clone());
                tokio::spawn(async move {
                    // The first request's head decides (browsers open a connection of its
                    // own for each WebSocket).
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match client.read(&mut byte).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&byte[..n]),
                        }
                    }
                    let upgrade = String::from_utf8_lossy(&head)
                        .to_ascii_lowercase()
                        .contains("upgrade: websocket");
                    if upgrade && refusing.load(Relaxed) {
                        refused.fetch_add(1, Relaxed);
                        let _ = client
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    if upgrade {
                        passed.fetch_add(1, Relaxed);
                    }
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    if server.write_all(&head).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        gate
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn after_three_failed_sockets_the_page_long_polls_and_upgrades_again_later() {
    use std::sync::atomic::Ordering::Relaxed;
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let gate = UpgradeGate::start(app.port).await;
    let writer = app.login(Some("Writer")).await;
    let reader = browser(&driver, "reader", true).await;
    reader
        .goto(&format!("{}/auth/login?name=Reader", gate.url))
        .await
        .unwrap();
    // Three refused sockets in a row, then long polling, which works.
    wait_for_transport(&reader, "longpoll", "the reader").await;
    assert_eq!(gate.refused.load(Relaxed), 3, "it gave up after three");
    writer.say_ok("while polling").await;
    wait_for_message(&reader, "while polling", "the reader").await;
    // Upgrades work again: within a minute (and a bit) the page is back on a socket, and
    // the room comes through it, nothing lost or doubled in the switch.
    gate.refusing.store(false, Relaxed);
    let switched = Instant::now();
    wait_for_within(
        &reader,
        "var s = document.getElementById('status'); \
         return s.getAttribute('data-transport') === 'websocket' \
             && s.getAttribute('data-state') === 'connected';",
        "the reader back on a socket",
        Duration::from_secs(75),
    )
    .await;
    eprintln!(
        "upgraded again {:?} after sockets worked",
        switched.elapsed()
    );
    assert_eq!(gate.refused.load(Relaxed), 3, "no more tries while polling");
    // The probe that found sockets working is the socket: one upgrade, not two.
    assert_eq!(gate.passed.load(Relaxed), 1, "the probe is reused");
    writer.say_ok("over the socket again").await;
    wait_for_message(&reader, "over the socket again", "the reader").await;
    assert_eq!(count(&reader, "while polling").await, 1);
    reader.close().await.unwrap();
}

/// Every post is resent with its key until the server answers it (issue 16, finding 2):
/// a post whose socket closed before its ack goes again over HTTP, and a post refused with
/// 503 while Redis is stalled goes again by itself once Redis is back. Each is in the room
/// once, and its input is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver and redis-server; run with --include-ignored"]
async fn a_post_is_resent_with_its_key_until_it_is_in_exactly_once() {
    if !browser_available() {
        return;
    }
    let Some(redis) = redis_server::RedisServer::start("the resend test").await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(move |s| {
        s.store.backend = chatdemo::config::Backend::Redis;
        s.store.redis_url = url;
        s.store.key_prefix = "resend".into();
    })
    .await;
    let driver = start_driver().await;
    let client = browser(&driver, "resender", true).await;
    client
        .goto(&app.url("/auth/login?name=Resender"))
        .await
        .unwrap();
    wait_for_transport(&client, "websocket", "the resender").await;

    // The socket closes right after carrying the post: no ack can come back on it.
    client
        .execute(
            "const send = WebSocket.prototype.send; \
             WebSocket.prototype.send = function (data) { \
               WebSocket.prototype.send = send; send.call(this, data); this.close(); };",
            vec![],
        )
        .await
        .unwrap();
    type_and_send(&client, "sent as the socket closed").await;
    wait_for_message(&client, "sent as the socket closed", "the resender").await;
    wait_for_input_cleared(&client, "the resender").await;

    // Redis stalls: the post is refused (503), then resent by itself once Redis is back.
    wait_for_transport(&client, "websocket", "the resender").await;
    redis.pause(true);
    type_and_send(&client, "sent during a stall").await;
    wait_for(
        &client,
        "return document.getElementById('error').textContent.includes('sent again');",
        "the page saying it will resend",
    )
    .await;
    // The post shows as pending, and the badge tells reading (still live) from posting.
    wait_for(
        &client,
        "var item = document.querySelector('#outbox li'); \
         var badge = document.getElementById('status'); \
         return !document.getElementById('outbox').hidden && !!item \
           && item.textContent === 'sent during a stall \u{2014} not sent yet, will retry by itself' \
           && badge.dataset.state === 'connected' && badge.dataset.store === 'down' \
           && badge.textContent === 'WebSocket \u{00b7} connected, messages can\u{2019}t be sent right now';",
        "the post pending and the badge saying posts cannot go",
    )
    .await;
    // Someone arriving during the stall gets the page at once, with who is online.
    let visitor = browser(&driver, "visitor", true).await;
    let arrived = Instant::now();
    visitor
        .goto(&app.url("/auth/login?name=Visitor"))
        .await
        .unwrap();
    let online = visitor
        .execute(
            "return [document.getElementById('online-count').textContent, \
                     Array.from(document.querySelectorAll('#online li')).map(li => li.textContent)];",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        arrived.elapsed() < Duration::from_secs(5),
        "{:?}",
        arrived.elapsed()
    );
    assert_eq!(
        online,
        json!(["1", ["Resender"]]),
        "the list, not \"0 online\""
    );
    redis.pause(false);
    wait_for_message(&client, "sent during a stall", "the resender").await;
    wait_for_input_cleared(&client, "the resender").await;
    let error_hidden = client
        .execute("return document.getElementById('error').hidden;", vec![])
        .await
        .unwrap();
    assert_eq!(error_hidden, json!(true));
    wait_for(
        &client,
        "var badge = document.getElementById('status'); \
         return document.getElementById('outbox').hidden && badge.dataset.store === 'up' \
           && badge.textContent === 'WebSocket \u{00b7} connected';",
        "the badge back to connected, nothing pending",
    )
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    for text in ["sent as the socket closed", "sent during a stall"] {
        assert_eq!(count(&client, text).await, 1, "{text:?} in the inbox");
        assert_eq!(
            redis.copies_in_log("resend", text).await,
            1,
            "{text:?} in Redis"
        );
    }
    client.close().await.unwrap();
}
