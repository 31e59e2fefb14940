//! The binary as people deploy it: copied alone somewhere (or `cargo install`ed) and run
//! from any directory; its logs (one line per request with an id, never a secret); and a
//! theme directory in place of the built-in files.

use std::path::{Path, PathBuf};

use futures_util::SinkExt;
use serde_json::Value;

use crate::helpers::{next_batch, page_cursor, TestApp, TestUser};
use crate::process::Server;

const CHAT_JS: &[u8] = include_bytes!("../../static/chat.js");
const CHAT_CSS: &[u8] = include_bytes!("../../static/chat.css");

/// The binary under test: `TEST_RELEASE_BINARY` when set (CI points it at the release
/// binary that `cargo install` made), else the one cargo built for these tests.
fn binary_under_test() -> PathBuf {
    std::env::var_os("TEST_RELEASE_BINARY")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chatdemo")))
}

/// The `href`/`src` in `html` that starts with `prefix`, up to its closing quote.
fn link(html: &str, prefix: &str) -> String {
    let start = html
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {html}"));
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_copied_binary_serves_the_whole_page_from_any_directory() {
    let binary = binary_under_test();
    eprintln!("testing {}", binary.display());
    let install = tempfile::tempdir().unwrap();
    let copied = install.path().join("chatdemo");
    std::fs::copy(&binary, &copied).unwrap();
    assert_eq!(std::fs::read_dir(install.path()).unwrap().count(), 1);
    // A working directory with unrelated `templates/` and `static/` folders: the binary
    // must serve its own files, not whatever it finds where it was started.
    let cwd = tempfile::tempdir().unwrap();
    for (dir, file) in [("templates", "index.html"), ("static", "chat.js")] {
        std::fs::create_dir(cwd.path().join(dir)).unwrap();
        std::fs::write(cwd.path().join(dir).join(file), "decoy").unwrap();
    }
    let server = Server::start_with(&copied, cwd.path(), &[]).await;
    let user = TestUser::login_at(&server.url(""), None).await;

    let page = user.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"messageform\""), "{html}");
    for (prefix, kind, bytes) in [
        ("/static/chat.js?v=", "text/javascript", CHAT_JS),
        ("/static/chat.css?v=", "text/css", CHAT_CSS),
    ] {
        let response = user.get(&link(&html, prefix)).await;
        assert_eq!(response.status(), 200, "{prefix}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert!(headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=86400"));
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert_eq!(&response.bytes().await.unwrap()[..], bytes, "{prefix}");
        let again = user
            .client
            .get(user.base.clone() + &link(&html, prefix))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{prefix} with its ETag");
    }

    let cursor = page_cursor(&html);
    let posted = user.say_ok("from a copied binary").await;
    let batch = user.poll_ok(Some(&cursor)).await;
    assert_eq!(batch.messages, [posted]);
    server.stop().await;
}

#[tokio::test]
async fn each_request_logs_one_line_with_its_id_and_never_a_secret() {
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        Path::new(env!("CARGO_BIN_EXE_chatdemo")),
        cwd.path(),
        &[("CHATDEMO_LOG__FORMAT", "json"), ("RUST_LOG", "debug")],
    )
    .await;
    let user = TestUser::login_at(&server.url(""), Some("Logged User")).await;
    let user_cookie = user.cookie("user").unwrap();
    let xsrf = user.xsrf();
    let http_body = format!("http secret {}", uuid::Uuid::new_v4());
    let socket_body = format!("socket secret {}", uuid::Uuid::new_v4());

    // (request id, route, status) of each request made below.
    let mut requests = Vec::new();
    let mut record = |response: &reqwest::Response, route: &str| {
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        requests.push((id, route.to_owned(), response.status().as_u16()));
    };
    let page = user.get("/").await;
    record(&page, "/");
    let cursor = page_cursor(&page.text().await.unwrap());
    let posted = user.say(&http_body).await;
    record(&posted, "/a/message/new");
    let polled = user.poll(Some(&cursor)).await;
    record(&polled, "/a/message/updates");
    assert!(polled.text().await.unwrap().contains(&http_body));
    let refused = user
        .post_form(
            "/a/message/new",
            &[("body", &http_body), ("_xsrf", "forged")],
        )
        .await;
    record(&refused, "/a/message/new");
    assert_eq!(refused.status(), 403);

    let mut ws = user.socket(None).await;
    let frame = serde_json::json!({"body": socket_body, "_xsrf": xsrf}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(frame.into()))
        .await
        .unwrap();
    assert_eq!(next_batch(&mut ws).await.messages[0].body, socket_body);
    ws.close(None).await.unwrap();

    // An id from a proxy in front is kept and echoed; a malformed one is replaced.
    let chosen = user
        .client
        .get(server.url("/healthz"))
        .header("X-Request-Id", "edge-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.headers()["x-request-id"], "edge-42.a_b");
    record(&chosen, "/healthz");
    let replaced = user
        .client
        .get(server.url("/healthz"))
        .header("X-Request-Id", "bad id\twith=signs")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id\twith=signs");
    record(&replaced, "/healthz");

    let ids: std::collections::HashSet<_> = requests.iter().map(|(id, ..)| id).collect();
    assert_eq!(
        ids.len(),
        requests.len(),
        "request ids are unique: {requests:?}"
    );

    let log = server.stop().await;
    let lines: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &log {
        for secret in [&user_cookie, &xsrf, &http_body, &socket_body] {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
    for (id, route, status) in &requests {
        let finished: Vec<_> = lines
            .iter()
            .filter(|l| l["message"] == "finished" && l["span"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(finished.len(), 1, "one line for request {id}: {finished:?}");
        assert_eq!(finished[0]["span"]["route"], route.as_str());
        assert_eq!(finished[0]["status"], *status);
        assert!(finished[0]["latency_ms"].is_number());
    }
    // The socket's own lines keep the id of the request that opened it.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "socket closed by client"
                && l["span"]["route"] == "/a/message/socket"),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_theme_directory_replaces_the_built_in_files() {
    let theme = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["templates", "static"] {
        std::fs::create_dir(theme.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(source.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), theme.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    let css = "body { background: #123456; }\n";
    std::fs::write(theme.path().join("static/chat.css"), css).unwrap();
    let builtin = TestApp::spawn().await;
    let builtin_page = builtin.login(None).await.page().await;
    let dir = theme.path().to_owned();
    let app = TestApp::spawn_with(|s| s.server.assets_dir = Some(dir)).await;
    let user = app.login(None).await;
    let page = user.page().await;
    let css_link = link(&page, "/static/chat.css?v=");
    // A changed file changes the link, so browsers fetch it at once.
    assert_ne!(css_link, link(&builtin_page, "/static/chat.css?v="));
    let response = user.get(&css_link).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("etag"));
    assert_eq!(response.text().await.unwrap(), css);
    user.say_ok("themed").await;
}

#[tokio::test]
async fn a_missing_or_incomplete_theme_directory_stops_the_start_naming_it() {
    let theme = tempfile::tempdir().unwrap();
    std::fs::create_dir(theme.path().join("static")).unwrap();
    let missing = theme.path().join("no-such-theme");
    for (dir, named) in [
        (missing.clone(), "no-such-theme".to_owned()),
        (theme.path().to_path_buf(), "templates/".to_owned()),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatdemo"))
            .args(["--port", "0"])
            .env("CHATDEMO_SERVER__ASSETS_DIR", &dir)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&*dir.to_string_lossy()) && stderr.contains(&named),
            "{stderr}"
        );
    }
}
