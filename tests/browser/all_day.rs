//! The page people keep open all day (issue 18): where it opens, what it does with the
//! reader's own posts, a name picked on the page, the title while the tab is hidden, the
//! dark theme's contrast.

use super::*;

/// Sets the page's viewport to `width` × `height` CSS pixels (a phone when narrow).
async fn viewport(client: &Client, width: u32, height: u32) {
    client
        .issue_cmd(Cdp {
            cmd: "Emulation.setDeviceMetricsOverride",
            params: json!({
                "width": width, "height": height, "deviceScaleFactor": 1,
                "mobile": width < 600,
            }),
        })
        .await
        .expect("CDP viewport");
}

/// Makes the page see the system's colour scheme as `scheme` ("light" or "dark").
async fn color_scheme(client: &Client, scheme: &str) {
    client
        .issue_cmd(Cdp {
            cmd: "Emulation.setEmulatedMedia",
            params: json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        })
        .await
        .expect("CDP colour scheme");
}

/// Where the page is: [scrolled to the bottom, the "New messages" button hidden, the last
/// message whole above the input bar].
const POSITION: &str =
    "var last = document.querySelector('#inbox > :last-child').getBoundingClientRect(); \
    var bar = document.getElementById('input').getBoundingClientRect(); \
    return [window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40, \
            document.getElementById('new-messages').hidden, \
            last.top >= 0 && last.bottom <= bar.top + 1];";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_page_opens_at_the_newest_message_and_shows_your_own_post_at_every_size() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let writer = app.login(Some("Writer")).await;
    // A history taller than either screen.
    for i in 0..80 {
        writer.say_ok(&format!("history {i}")).await;
    }
    for (width, height) in [(1280, 720), (390, 844)] {
        let reader = browser(&driver, &format!("reader{width}"), true).await;
        viewport(&reader, width, height).await;
        reader
            .goto(&app.url(&format!("/auth/login?name=Reader{width}")))
            .await
            .unwrap();
        wait_for_transport(&reader, "websocket", "the reader").await;
        let at = reader.execute(POSITION, vec![]).await.unwrap();
        assert_eq!(
            at,
            json!([true, true, true]),
            "{width}×{height}: opens at the newest"
        );

        // Reading older messages: another's post does not move the page ...
        reader
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        writer.say_ok(&format!("while reading {width}")).await;
        wait_for_message(&reader, &format!("while reading {width}"), "the reader").await;
        let still = reader
            .execute(
                "return [window.scrollY, document.getElementById('new-messages').hidden];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            still,
            json!([0, false]),
            "{width}×{height}: the reader stays"
        );

        // ... but the reader's own post always comes into view, marked as theirs.
        type_and_send(&reader, &format!("my own {width}")).await;
        wait_for_message(&reader, &format!("my own {width}"), "the reader").await;
        // Scrolled in the same step that showed it.
        let own = reader.execute(POSITION, vec![]).await.unwrap();
        assert_eq!(
            own,
            json!([true, true, true]),
            "{width}×{height}: the own post in view"
        );
        let marked = reader
            .execute(
                "return Array.from(document.querySelectorAll('#inbox .message.mine'))\
                 .map(m => m.lastChild.textContent);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            marked,
            json!([format!("my own {width}")]),
            "only the own post is marked"
        );
        reader.close().await.unwrap();
    }
}

/// The rename form: a new name from the page, with or without JavaScript; the page comes
/// back under it, and the reader's earlier posts (under the old name) are not theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_name_is_picked_on_the_page_with_or_without_javascript() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    for javascript in [true, false] {
        let client = browser(&driver, &format!("rename{javascript}"), javascript).await;
        client.goto(&app.url("/auth/login")).await.unwrap();
        let before = client
            .find(Locator::Css("#user"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(before.starts_with("user-"), "a random name first: {before}");
        let new_name = if javascript { "Ann Smith" } else { "Bo" };
        let field = client.find(Locator::Css("#rename-name")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(new_name).await.unwrap();
        client
            .find(Locator::Css("#rename button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let shown = wait_for(
            &client,
            &format!("var u = document.getElementById('user'); return u && u.textContent === {} && location.pathname === '/';", json!(new_name)),
            "the page under the new name",
        )
        .await;
        assert_eq!(shown, json!(true));
        if javascript {
            wait_for_transport(&client, "websocket", new_name).await;
            type_and_send(&client, "after the rename").await;
            wait_for_message(&client, "after the rename", new_name).await;
            let from = client
                .execute(
                    "return document.querySelector('#inbox .message:last-child b').textContent;",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(from, json!(format!("{new_name}: ")));
        }
        client.close().await.unwrap();
    }
}

/// While the tab is hidden its title counts the messages it has not shown yet; showing the
/// tab clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_hidden_tab_counts_new_messages_in_its_title() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let writer = app.login(Some("Writer")).await;
    let reader = browser(&driver, "reader", true).await;
    reader
        .goto(&app.url("/auth/login?name=Reader"))
        .await
        .unwrap();
    wait_for_transport(&reader, "websocket", "the reader").await;
    // Minimized, the page is hidden (headless Chromium keeps a tab in the background
    // visible, but not a minimized window).
    reader.minimize_window().await.unwrap();
    wait_for(
        &reader,
        "return document.visibilityState === 'hidden';",
        "the chat's tab hidden",
    )
    .await;
    writer.say_ok("one").await;
    writer.say_ok("two").await;
    wait_for(
        &reader,
        "return document.title === '(2) Chat';",
        "the title counting two",
    )
    .await;
    reader.set_window_size(1000, 800).await.unwrap();
    wait_for(
        &reader,
        "return document.visibilityState === 'visible' && document.title === 'Chat';",
        "the title cleared when shown",
    )
    .await;
    reader.close().await.unwrap();
}

/// Every piece of text on the page (messages, own ones, notices, times, the badge, the
/// list, the form) has a contrast of at least 4.5:1 against what is behind it, in the
/// light theme and in the dark one the page takes from the system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn text_contrast_is_at_least_4_5_in_light_and_dark() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = with_notices().await;
    let writer = app.login(Some("Writer")).await;
    for i in 0..3 {
        writer
            .say_ok(&format!("visit https://example.com/{i}"))
            .await;
    }
    for scheme in ["light", "dark"] {
        let reader = browser(&driver, &format!("contrast-{scheme}"), true).await;
        color_scheme(&reader, scheme).await;
        reader
            .goto(&app.url("/auth/login?name=Reader"))
            .await
            .unwrap();
        wait_for_transport(&reader, "websocket", "the reader").await;
        type_and_send(&reader, "my own words").await;
        wait_for_message(&reader, "my own words", "the reader").await;
        wait_for_notice(&reader, "Reader joined the room").await;
        let report = reader.execute(CONTRAST, vec![]).await.unwrap();
        let (background, worst) = (report[0].as_f64().unwrap(), &report[1]);
        if scheme == "dark" {
            assert!(
                background < 0.05,
                "the dark theme is dark: luminance {background}"
            );
        } else {
            assert!(
                background > 0.8,
                "the light theme is light: luminance {background}"
            );
        }
        assert!(
            worst[0].as_f64().unwrap() >= 4.5,
            "{scheme}: the lowest contrast is {worst}"
        );
        assert!(
            report[2].as_u64().unwrap() >= 10,
            "measured {} texts",
            report[2]
        );
        reader.close().await.unwrap();
    }
}

/// [body's luminance, [lowest contrast, what, colour, background], how many measured].
const CONTRAST: &str = r#"
function rgba(text) {
  var m = text.match(/rgba?\(([^)]*)\)/);
  if (!m) return [0, 0, 0, 0];
  var p = m[1].split(',').map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function luminance(c) {
  var s = c.slice(0, 3).map(function (v) {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * s[0] + 0.7152 * s[1] + 0.0722 * s[2];
}
function behind(element) {
  for (var e = element; e; e = e.parentElement) {
    var c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) return c;
  }
  return rgba(getComputedStyle(document.documentElement).backgroundColor);
}
var worst = [99, '', '', ''];
var measured = 0;
document.querySelectorAll('body *').forEach(function (e) {
  var own = Array.from(e.childNodes).some(function (n) {
    return n.nodeType === 3 && n.textContent.trim();
  });
  if (!own || !e.getClientRects().length || e.disabled) return;
  if (e.closest('[hidden]') || e.closest('.visually-hidden')) return;
  var fg = rgba(getComputedStyle(e).color), bg = behind(e);
  var a = luminance(fg), b = luminance(bg);
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  measured += 1;
  if (ratio < worst[0]) {
    worst = [ratio, e.tagName + '#' + e.id + '.' + e.className, getComputedStyle(e).color,
             getComputedStyle(e).backgroundColor];
  }
});
return [luminance(behind(document.body)), worst, measured];
"#;

/// A logout leaves the online list at once (not after the grace), on every page: Bob signs
/// out in one of his two tabs; Alice's list drops him within 3 s though the grace is 60 s,
/// and his other tab stops at "logged out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_logout_leaves_every_list_at_once() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn_with(|s| {
        s.presence.notices = true;
        s.presence.leave_grace_secs = 60;
    })
    .await;
    let (alice, bob) = tokio::join!(
        browser(&driver, "alice", true),
        browser(&driver, "bob", true)
    );
    alice
        .goto(&app.url("/auth/login?name=Alice"))
        .await
        .unwrap();
    bob.goto(&app.url("/auth/login?name=Bob")).await.unwrap();
    wait_for_transport(&bob, "websocket", "Bob").await;
    let first = bob.window().await.unwrap();
    let second = bob.new_window(true).await.unwrap();
    bob.switch_to_window(second.handle.clone()).await.unwrap();
    bob.goto(&app.url("/")).await.unwrap();
    wait_for_transport(&bob, "websocket", "Bob's second tab").await;
    let listed = "return Array.from(document.querySelectorAll('#online li')).map(li => li.textContent).sort().join(',');";
    wait_for(
        &alice,
        &format!("return (function () {{ {listed} }})() === 'Alice,Bob';"),
        "Alice sees Bob",
    )
    .await;

    bob.switch_to_window(first).await.unwrap();
    let signed_out = Instant::now();
    bob.find(Locator::Css("#nav a[href='/auth/logout']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_within(
        &alice,
        &format!(
            "return (function () {{ {listed} }})() === 'Alice' \
             && document.getElementById('online-count').textContent === '1';"
        ),
        "Alice's list without Bob",
        Duration::from_secs(3),
    )
    .await;
    eprintln!(
        "Bob left Alice's list {:?} after signing out",
        signed_out.elapsed()
    );
    bob.switch_to_window(second.handle).await.unwrap();
    wait_for(
        &bob,
        "return document.getElementById('status').dataset.state === 'logged out';",
        "Bob's other tab at its dead end",
    )
    .await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// axe-core (pinned in tests/js/package-lock.json) finds no serious or critical WCAG 2.1
/// A/AA violation on the page, light and dark, at desktop and phone sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver and axe-core (npm ci --prefix tests/js); run with --include-ignored"]
async fn axe_finds_no_serious_violation() {
    if !browser_available() {
        return;
    }
    let axe_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js/node_modules/axe-core/axe.min.js");
    let Ok(axe) = std::fs::read_to_string(&axe_path) else {
        assert!(
            std::env::var("BROWSER_TESTS").as_deref() != Ok("required"),
            "BROWSER_TESTS=required is set but axe-core is not installed (npm ci --prefix tests/js)"
        );
        eprintln!("skipping the axe audit: npm ci --prefix tests/js installs axe-core");
        return;
    };
    let driver = start_driver().await;
    let app = with_notices().await;
    let writer = app.login(Some("Writer")).await;
    for i in 0..5 {
        writer.say_ok(&format!("see https://example.com/{i}")).await;
    }
    for (scheme, width, height) in [("light", 1280, 720), ("dark", 390, 844)] {
        let reader = browser(&driver, &format!("axe-{scheme}"), true).await;
        viewport(&reader, width, height).await;
        color_scheme(&reader, scheme).await;
        reader
            .goto(&app.url(&format!("/auth/login?name=Axe{width}")))
            .await
            .unwrap();
        wait_for_transport(&reader, "websocket", "the reader").await;
        type_and_send(&reader, "my own words").await;
        wait_for_message(&reader, "my own words", "the reader").await;
        // Someone posts while the reader is scrolled up: the button shows too.
        reader
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        writer.say_ok("while scrolled up").await;
        wait_for_message(&reader, "while scrolled up", "the reader").await;
        reader.execute(&axe, vec![]).await.unwrap();
        let script = "const done = arguments[arguments.length - 1]; \
            axe.run(document, {runOnly: {type: 'tag', values: \
                ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}}) \
              .then(r => done({passes: r.passes.length, bad: r.violations \
                  .filter(v => v.impact === 'serious' || v.impact === 'critical') \
                  .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))}), \
                    e => done({error: String(e)}));";
        let report = reader.execute_async(script, vec![]).await.unwrap();
        assert_eq!(report["error"], Value::Null, "{report}");
        assert!(
            report["passes"].as_u64().unwrap() > 10,
            "axe ran its rules: {report}"
        );
        assert_eq!(report["bad"], json!([]), "{scheme} {width}×{height}");
        reader.close().await.unwrap();
    }
}

/// The page works from the keyboard alone: Tab reaches every control in order, each shows
/// where the focus is, and Enter posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_page_works_from_the_keyboard_alone() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let reader = browser(&driver, "keys", true).await;
    reader
        .goto(&app.url("/auth/login?name=Keys"))
        .await
        .unwrap();
    wait_for_transport(&reader, "websocket", "the reader").await;
    // The message input has the focus at once: type and press Enter.
    let active = reader.active_element().await.unwrap();
    assert_eq!(active.attr("id").await.unwrap().as_deref(), Some("message"));
    active.send_keys("typed only\u{E007}").await.unwrap();
    wait_for_message(&reader, "typed only", "the reader").await;
    wait_for_input_cleared(&reader, "the reader").await;
    // Tab on from the input: every control of the page in reading order, round to the
    // input again, each showing where the focus is. (Between the last control and the
    // first the focus leaves the page for the browser's own controls: "BODY".)
    let mut order = Vec::new();
    for _ in 0..7 {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: '\u{E004}' })
            .then(KeyAction::Up { value: '\u{E004}' });
        reader.perform_actions(tab).await.unwrap();
        let focused = reader
            .execute(
                "var e = document.activeElement, s = getComputedStyle(e); \
                 return [e.id || e.getAttribute('href') || e.getAttribute('type') || e.tagName, \
                         s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2];",
                vec![],
            )
            .await
            .unwrap();
        let name = focused[0].as_str().unwrap().to_owned();
        if name != "BODY" {
            assert_eq!(focused[1], json!(true), "visible focus on {name}");
            order.push(name);
        }
    }
    assert_eq!(
        order,
        [
            "submit",
            "/auth/logout",
            "rename-name",
            "submit",
            "presence-summary",
            "message"
        ]
    );
    reader.close().await.unwrap();
}

/// Screenshots of the page at desktop and phone sizes, light and dark: each is a PNG of
/// exactly the viewport. With `WRITE_SCREENSHOTS=1` they replace the ones in
/// `docs/screenshots/` that the README shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn screenshots_of_the_page_light_and_dark() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    // Without notices, so each shot's page is the same room: three online, four posts.
    let app = TestApp::spawn_with(|s| s.presence.leave_grace_secs = 1).await;
    let ada = app.login(Some("Ada")).await;
    let grace = app.login(Some("Grace")).await;
    let _sockets = (ada.socket(None).await, grace.socket(None).await);
    for (who, text) in [
        (&ada, "Morning! Did the deploy go out?"),
        (
            &grace,
            "It did, 09:12. The dashboard is at https://example.com/status",
        ),
        (&ada, "Thanks. Reading the <b>release notes</b> now."),
        (
            &grace,
            "Long words wrap: supercalifragilisticexpialidocious-and-then-some",
        ),
    ] {
        who.say_ok(text).await;
    }
    // Under the reader's name: marked as their own.
    app.login(Some("Lin"))
        .await
        .say_ok("Hi all, just joined.")
        .await;
    let write = std::env::var("WRITE_SCREENSHOTS").is_ok_and(|v| v == "1");
    for (scheme, width, height) in [
        ("light", 1280, 720),
        ("dark", 1280, 720),
        ("light", 390, 844),
        ("dark", 390, 844),
    ] {
        let reader = browser(&driver, &format!("shot-{scheme}-{width}"), true).await;
        viewport(&reader, width, height).await;
        color_scheme(&reader, scheme).await;
        reader.goto(&app.url("/auth/login?name=Lin")).await.unwrap();
        wait_for_transport(&reader, "websocket", "the reader").await;
        wait_for(
            &reader,
            "return document.getElementById('online-count').textContent === '3';",
            "Ada, Grace and the reader online",
        )
        .await;
        let png = reader.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!(
            (dimension(16), dimension(20)),
            (width, height),
            "the whole viewport"
        );
        if write {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{width}x{height}-{scheme}.png")), &png).unwrap();
        }
        reader.close().await.unwrap();
        // The next shot's reader is the only Lin: this one's grace is over.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

/// A proxy between the browser and the server that can go down: then it cuts every
/// connection through it and drops each new one at once, counting them.
struct Outage {
    url: String,
    down: tokio::sync::watch::Sender<bool>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Outage {
    async fn start(upstream: u16) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (down, watch) = tokio::sync::watch::channel(false);
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = dropped.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    counter.fetch_add(1, Relaxed);
                    drop(client);
                    continue;
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            down,
            dropped,
        }
    }
}

/// After the network comes back the page reconnects at once, not at the end of a backoff
/// that has grown to 15–30 s: the browser's `online` event cuts the wait short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn the_page_reconnects_at_once_when_the_network_returns() {
    use std::sync::atomic::Ordering::Relaxed;
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let outage = Outage::start(app.port).await;
    let reader = browser(&driver, "returning", true).await;
    reader
        .goto(&format!("{}/auth/login?name=Returning", outage.url))
        .await
        .unwrap();
    wait_for_transport(&reader, "websocket", "the reader").await;
    outage.down.send(true).unwrap();
    // Three sockets (each followed by a look at whether the login is gone), then polls
    // backing off: 0.25–0.5 s doubling. After the thirteenth connection dropped, the seventh
    // poll, the page waits 15–30 s before the next.
    let started = Instant::now();
    while outage.dropped.load(Relaxed) < 13 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the page stopped trying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let network = |offline: bool| Cdp {
        cmd: "Network.emulateNetworkConditions",
        params: json!({"offline": offline, "latency": 0, "downloadThroughput": -1,
                       "uploadThroughput": -1}),
    };
    // The browser goes offline and comes back (its `online` event), and so does the way to
    // the server.
    reader.issue_cmd(network(true)).await.unwrap();
    outage.down.send(false).unwrap();
    reader.issue_cmd(network(false)).await.unwrap();
    let back = Instant::now();
    let writer = app.login(Some("Writer")).await;
    writer.say_ok("after the outage").await;
    wait_for_within(
        &reader,
        &count_script("after the outage"),
        "the message on the page",
        Duration::from_secs(5),
    )
    .await;
    eprintln!("a message {:?} after the network returned", back.elapsed());
    reader.close().await.unwrap();
}

/// A bug in showing a batch is a bug, not a lost connection: the page says so and stops,
/// rather than polling again and again as "reconnecting".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run with --include-ignored"]
async fn a_rendering_bug_surfaces_instead_of_a_reconnect_loop() {
    if !browser_available() {
        return;
    }
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let reader = browser(&driver, "buggy", true).await;
    remove_websocket(&reader).await;
    reader
        .goto(&app.url("/auth/login?name=Buggy"))
        .await
        .unwrap();
    let writer = app.login(Some("Writer")).await;
    writer.say_ok("first").await;
    wait_for_message(&reader, "first", "the reader").await;
    // The bug: adding to the inbox throws.
    reader
        .execute(
            "document.getElementById('inbox').append = () => { throw new Error('boom'); };",
            vec![],
        )
        .await
        .unwrap();
    writer.say_ok("trigger").await;
    let shown = wait_for(
        &reader,
        "var e = document.getElementById('error'); return !e.hidden && e.textContent;",
        "the error shown",
    )
    .await;
    assert_eq!(
        shown,
        json!("The page stopped on an error: boom. Reload to go on.")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = reader
        .execute(
            "return document.getElementById('status').dataset.state;",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(state, json!("reconnecting"), "not a retry loop");
    reader.close().await.unwrap();
}
