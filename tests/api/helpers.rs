//! The test harness: the real application on port 0, and logged-in users with a real HTTP
//! client (cookie jar, no redirect following, so redirects and cookies are visible).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chatdemo::{Application, Settings, ShutdownHandle};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use serde::Deserialize;

/// A fixed secret, so tests can forge cookies the way an attacker with the key could.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-test-secret-test-secret-0123";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        chatdemo::telemetry::init(chatdemo::config::LogFormat::Text);
    }
});

pub struct TestApp {
    pub address: String,
    /// Used by the WebSocket tests.
    #[allow(dead_code)]
    pub port: u16,
    pub shutdown: ShutdownHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Holds this instance's follower of the log still.
    #[allow(dead_code)]
    pub follower_pause: chatdemo::room::FollowerPause,
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    pub from: String,
    pub body: String,
    pub html: String,
    pub time: String,
    pub kind: String,
    /// Notices only: the first names (up to 20) and how many in all.
    #[serde(default)]
    pub names: Vec<String>,
    pub count: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Batch {
    pub messages: Vec<Msg>,
    #[serde(default)]
    pub reset: bool,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns the app with test settings (port 0, two workers, no rate limit in the way)
    /// after `adjust` has had its say.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        LazyLock::force(&TRACING);
        let mut settings = Settings::defaults();
        settings.server.port = 0;
        settings.server.workers = 2;
        settings.security.cookie_secret = chatdemo::config::Secret::new(TEST_SECRET.into());
        settings.room.rate_burst = 100_000;
        settings.room.rate_per_sec = 100_000.0;
        // Every test client comes from 127.0.0.1; the limits per address have their own
        // tests (`limits`).
        settings.room.address_burst = 1_000_000;
        settings.room.address_per_sec = 1_000_000.0;
        settings.security.login_burst = 1_000_000;
        settings.security.login_per_sec = 1_000_000.0;
        settings.server.max_connections_per_address = usize::MAX;
        // Join and leave notices are entries of the room; tests about messages count the
        // room exactly, so only the presence tests turn them on.
        settings.presence.notices = false;
        adjust(&mut settings);
        let app = Application::build(settings).await.expect("app builds");
        let port = app.port();
        let shutdown = app.shutdown_handle();
        let follower_pause = app.follower_pause();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            shutdown,
            server,
            follower_pause,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A client with no login and no cookies.
    pub fn anonymous(&self) -> TestUser {
        TestUser::anonymous_at(&self.address)
    }

    /// Logs in (as `name`, or a random user) and returns the user's client.
    pub async fn login(&self, name: Option<&str>) -> TestUser {
        TestUser::login_at(&self.address, name).await
    }

    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(&self.address, name).await
    }

    /// Waits until `metric` reads `want`, or panics after `limit`.
    pub async fn wait_for_metric(&self, metric: &str, want: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let value = self.metric(metric).await;
            if value == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{metric} stayed at {value}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The value of metric `name` on the server at `base`.
pub async fn metric_at(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} in {text}"))
}

pub fn client(jar: Arc<Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub struct TestUser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
}

impl TestUser {
    /// A client of the server at `base` with no login and no cookies.
    pub fn anonymous_at(base: &str) -> Self {
        let jar = Arc::new(Jar::default());
        Self {
            client: client(jar.clone()),
            jar,
            base: base.to_owned(),
        }
    }

    /// Logs in at `base` (as `name`, or a random user) and returns the user's client.
    pub async fn login_at(base: &str, name: Option<&str>) -> Self {
        let user = Self::anonymous_at(base);
        let path = match name {
            Some(name) => format!("/auth/login?name={}", urlencode(name)),
            None => "/auth/login".to_owned(),
        };
        let response = user.get(&path).await;
        assert_eq!(response.status(), 302, "login redirects");
        user
    }

    /// Another client holding a copy of this one's cookies, as a thief would.
    pub fn copy(&self) -> Self {
        let thief = Self::anonymous_at(&self.base);
        let url: url::Url = self.base.parse().unwrap();
        if let Some(cookies) = self.jar.cookies(&url) {
            for pair in cookies.to_str().unwrap().split("; ") {
                thief.jar.add_cookie_str(&format!("{pair}; Path=/"), &url);
            }
        }
        thief
    }

    /// The same login (cookies do not separate ports) talking to another server.
    pub fn at(&self, base: &str) -> Self {
        Self {
            client: self.client.clone(),
            jar: self.jar.clone(),
            base: base.to_owned(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().unwrap().split("; ").find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.trim_matches('"').to_owned())
        })
    }

    pub fn xsrf(&self) -> String {
        self.cookie("_xsrf").expect("an _xsrf cookie")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as a urlencoded form, exactly as given.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.post_raw(path, body).await
    }

    /// Posts a message with this user's XSRF token.
    pub async fn say(&self, text: &str) -> reqwest::Response {
        let xsrf = self.xsrf();
        self.post_form("/a/message/new", &[("body", text), ("_xsrf", &xsrf)])
            .await
    }

    /// Posts a message with this user's XSRF token and `key` as its `Idempotency-Key`.
    pub async fn say_with_key(&self, text: &str, key: &str) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("body", text), ("_xsrf", &self.xsrf())])
            .finish();
        self.client
            .post(format!("{}/a/message/new", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a message with `key` that must be answered 200; returns the message.
    pub async fn say_with_key_ok(&self, text: &str, key: &str) -> Msg {
        let response = self.say_with_key(text, key).await;
        assert_eq!(response.status(), 200, "posting {text:?} with key {key:?}");
        response.json().await.unwrap()
    }

    /// Posts a message that must be accepted; returns it.
    pub async fn say_ok(&self, text: &str) -> Msg {
        let response = self.say(text).await;
        assert_eq!(response.status(), 200, "posting {text:?}");
        response.json().await.unwrap()
    }

    pub async fn poll(&self, cursor: Option<&str>) -> reqwest::Response {
        let xsrf = self.xsrf();
        let mut fields = vec![("_xsrf", xsrf.as_str())];
        if let Some(cursor) = cursor {
            fields.push(("cursor", cursor));
        }
        self.post_form("/a/message/updates", &fields).await
    }

    pub async fn poll_ok(&self, cursor: Option<&str>) -> Batch {
        let response = self.poll(cursor).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn page(&self) -> String {
        let response = self.get("/").await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }
}

/// The `data-cursor` of the page's inbox.
pub fn page_cursor(html: &str) -> String {
    let start = html.find("data-cursor=\"").expect("inbox has a cursor") + "data-cursor=\"".len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

/// The message ids rendered in the page's inbox, in order.
pub fn page_message_ids(html: &str) -> Vec<String> {
    html.match_indices("<div class=\"message\" id=\"m")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl TestApp {
    /// Opens `/a/message/socket` as `user` (cookies from the jar) with the given Origin.
    pub async fn socket_with(
        &self,
        user: &TestUser,
        cursor: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        user.socket_with(cursor, origin).await
    }

    /// A same-origin socket that must open.
    pub async fn socket(&self, user: &TestUser, cursor: Option<&str>) -> Ws {
        user.socket(cursor).await
    }
}

impl TestUser {
    /// Opens `/a/message/socket` on this user's server (cookies from the jar) with the
    /// given Origin.
    pub async fn socket_with(
        &self,
        cursor: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        self.socket_with_headers(cursor, origin, &[]).await
    }

    /// `socket_with`, sending `headers` too.
    pub async fn socket_with_headers(
        &self,
        cursor: Option<&str>,
        origin: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let host = self.base.trim_start_matches("http://");
        let mut url = format!("ws://{host}/a/message/socket");
        if let Some(cursor) = cursor {
            url.push_str(&format!("?cursor={}", urlencode(cursor)));
        }
        let mut request = url.into_client_request().unwrap();
        let cookies = self
            .jar
            .cookies(&self.base.parse().unwrap())
            .map(|h| h.to_str().unwrap().to_owned());
        if let Some(cookies) = cookies {
            request
                .headers_mut()
                .insert("Cookie", cookies.parse().unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
        }
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(ws, _)| ws)
    }

    /// A same-origin socket that must open.
    pub async fn socket(&self, cursor: Option<&str>) -> Ws {
        self.socket_with(cursor, Some(&self.base))
            .await
            .expect("socket opens")
    }
}

/// Reads frames until a `{"messages": ...}` one arrives (pings and pongs are skipped).
pub async fn next_batch(ws: &mut Ws) -> Batch {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub async fn next_text(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("no protocol error");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket failed instead of closing: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
}

impl TestUser {
    /// Follows the long poll from `cursor` like a client would, until `count` messages
    /// have arrived; returns their ids in arrival order.
    pub async fn follow_polls(&self, mut cursor: String, count: usize) -> Vec<String> {
        let mut seen = Vec::new();
        while seen.len() < count {
            let batch = self.poll_ok(Some(&cursor)).await;
            assert!(
                !batch.reset,
                "a cursor-following client never resets: {cursor} got {:?}",
                batch.messages.iter().map(|m| &m.id).collect::<Vec<_>>()
            );
            if let Some(last) = batch.messages.last() {
                cursor = last.id.clone();
            }
            seen.extend(batch.messages.into_iter().map(|m| m.id));
        }
        seen
    }
}

/// Reads a socket until `count` messages have arrived; returns their ids in order.
pub async fn follow_socket(ws: &mut Ws, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        seen.extend(next_batch(ws).await.messages.into_iter().map(|m| m.id));
    }
    seen
}

/// Every receiver saw the same `count` distinct messages in the same order.
pub fn assert_one_order(orders: &[Vec<String>], count: usize) {
    let mut unique = orders[0].clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), count, "exactly once");
    for order in orders {
        assert_eq!(order, &orders[0], "one order for all receivers");
    }
}
