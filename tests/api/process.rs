//! The real binary as a separate process: startup on the embedded config, SIGTERM, and
//! 10,000 concurrent held polls (a separate process, so client and server sockets do not
//! share one open-file limit).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::helpers::{client, TestApp};

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    /// Every line the server has written to stdout and stderr so far.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary on a free port with `env` set, and reads the port from its log.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Self {
        let cwd = std::env::current_dir().unwrap();
        Self::start_with(Path::new(env!("CARGO_BIN_EXE_chatdemo")), &cwd, env).await
    }

    /// Starts `binary` in the working directory `cwd`, on a free port, with `env` set.
    pub(crate) async fn start_with(binary: &Path, cwd: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["--port", "0"])
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // As in `TestApp`: presence notices only where a test asks for them.
            .env("CHATDEMO_PRESENCE__NOTICES", "false")
            // As in `TestApp`: every client is 127.0.0.1.
            .env("CHATDEMO_SECURITY__LOGIN_BURST", "1000000")
            .env("CHATDEMO_ROOM__ADDRESS_BURST", "1000000")
            .env("CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "1000000000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut port_tx = Some(port_tx);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdout_log = log.clone();
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(port) = logged_port(&line) {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
                stdout_log.lock().unwrap().push(line);
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr_log = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                stderr_log.lock().unwrap().push(line);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
            .await
            .expect("the server logs its port")
            .unwrap_or_else(|_| panic!("the server exited: {:?}", log.lock().unwrap()));
        Self { child, port, log }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: an instance that stalls (paused, swapped out)
    /// and then carries on.
    pub(crate) fn pause(&self, stop: bool) {
        let signal = if stop { "-STOP" } else { "-CONT" };
        let done = std::process::Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(done.success(), "signal to the server");
    }

    pub(crate) fn terminate(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: the process dies without a word to anyone.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for the exit; the log is complete afterwards.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        self.terminate();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
        // The readers see end-of-file right after the exit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = self.log.lock().unwrap().clone();
        log
    }
}

/// The port in the "listening" line, in text (`port=N`) or JSON (`"port":N`) format.
fn logged_port(line: &str) -> Option<u16> {
    let rest = line
        .split("port=")
        .nth(1)
        .or_else(|| line.split("\"port\":").nth(1))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Logs in through the real server and returns (cookie header, xsrf token).
pub(crate) async fn login(server: &Server) -> (String, String) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = client(jar.clone());
    let response = http.get(server.url("/auth/login")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    use reqwest::cookie::CookieStore;
    let cookies = jar.cookies(&server.url("/").parse().unwrap()).unwrap();
    let cookies = cookies.to_str().unwrap().to_owned();
    let xsrf = cookies
        .split("; ")
        .find_map(|c| c.strip_prefix("_xsrf="))
        .unwrap()
        .to_owned();
    (cookies, xsrf)
}

pub(crate) fn raw_request(port: u16, path: &str, cookies: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookies}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `count` long polls, each on a connection of its own, sent and not read: 50 per new
/// login, under the cap on one login's held polls and sockets.
pub(crate) async fn hold_polls(server: &Server, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let (cookies, xsrf) = login(server).await;
        let request = raw_request(
            server.port,
            "/a/message/updates",
            &cookies,
            &format!("_xsrf={xsrf}"),
        );
        let these = (count - streams.len()).min(50);
        streams.extend(send_requests(server.port, &request, these).await);
    }
    streams
}

/// `request` sent `count` times, each on a connection of its own; nothing is read.
pub(crate) async fn send_requests(port: u16, request: &str, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn sigterm_answers_held_polls_and_exits_within_seconds() {
    let mut server = Server::start(&[]).await;
    let (cookies, xsrf) = login(&server).await;
    let http = reqwest::Client::new();
    let poll = http
        .post(server.url("/a/message/updates"))
        .header("Cookie", &cookies)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("_xsrf={xsrf}"))
        .send();
    let poll = tokio::spawn(poll);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.terminate();
    let response = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the held poll is answered on shutdown, not after 25 s")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"messages":[]}"#);
    let status = tokio::time::timeout(Duration::from_secs(8), server.child.wait())
        .await
        .expect("the process exits within a few seconds")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn shutdown_in_process_releases_held_polls() {
    let app = TestApp::spawn().await;
    let user = app.login(None).await;
    let held: Vec<_> = (0..20)
        .map(|_| {
            let user_client = user.client.clone();
            let url = app.url("/a/message/updates");
            let xsrf = user.xsrf();
            tokio::spawn(async move {
                user_client
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(format!("_xsrf={xsrf}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        })
        .collect();
    app.wait_for_metric("chatdemo_waiting_polls", 20, Duration::from_secs(5))
        .await;
    let started = Instant::now();
    app.shutdown.shutdown().await;
    for poll in held {
        assert_eq!(poll.await.unwrap(), r#"{"messages":[]}"#);
    }
    tokio::time::timeout(Duration::from_secs(5), app.server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_bad_configuration_stops_the_start_naming_the_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatdemo"))
        .env("CHATDEMO_ROOM__CACHE_SIZE", "many")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("room.cache_size"), "{stderr}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatdemo"))
        .env("CHATDEMO_SECURITY__COOKIE_SECRET", "short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("64"));

    // Values that once got past: a worker count that panicked, a limit that let a
    // 100,000-character post through. Each is refused with exit 2, naming its key.
    for (variable, value, key) in [
        ("CHATDEMO_SERVER__WORKERS", "100000", "server.workers"),
        (
            "CHATDEMO_ROOM__MAX_MESSAGE_CHARS",
            "999999999999999999",
            "room.max_message_chars",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatdemo"))
            .args(["--port", "0"])
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(key),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_held_polls_all_get_the_next_message_and_then_leave_nothing() {
    const POLLS: usize = 10_000;
    // A shorter hold than the default, so the re-polls' end is seen in the test's time;
    // 200 logins of 50 polls each (one login may hold 64), so more logins than the
    // shipped burst per address allows.
    let server = Server::start(&[
        ("CHATDEMO_ROOM__POLL_TIMEOUT_SECS", "20"),
        ("CHATDEMO_SECURITY__LOGIN_BURST", "1000"),
    ])
    .await;
    let started = Instant::now();
    let streams = hold_polls(&server, POLLS).await;
    let (cookies, xsrf) = login(&server).await;
    let metrics = || async {
        reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics()
        .await
        .contains(&format!("chatdemo_waiting_polls {POLLS}"))
    {
        assert!(
            Instant::now() < deadline,
            "all polls held: {}",
            metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{POLLS} polls held after {:?}", started.elapsed());
    // The room is not stalled: a post goes through and every poll gets it.
    let post = raw_request(
        server.port,
        "/a/message/new",
        &cookies,
        &format!("body=to+all&_xsrf={xsrf}"),
    );
    let mut poster = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    poster.write_all(post.as_bytes()).await.unwrap();
    let mut answered = 0;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buffer.ends_with(b"]}") {
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed early");
                    buffer.extend_from_slice(&chunk[..n]);
                }
                String::from_utf8(buffer).unwrap()
            })
        })
        .collect();
    for reader in readers {
        let text = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .unwrap()
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("to all"), "{text}");
        answered += 1;
    }
    assert_eq!(answered, POLLS);

    // Now 10,000 polls that are abandoned: the server must not keep them.
    let abandoned = hold_polls(&server, POLLS).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics()
        .await
        .contains(&format!("chatdemo_waiting_polls {POLLS}"))
    {
        assert!(Instant::now() < deadline, "all polls held");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{POLLS} more polls held after {:?}", started.elapsed());
    drop(abandoned);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics().await.contains("chatdemo_waiting_polls 0") {
        assert!(
            Instant::now() < deadline,
            "abandoned polls are dropped: {}",
            metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_garbage_cookies_do_not_grow_the_server() {
    const REQUESTS: usize = 30_000;
    const TASKS: usize = 16;
    let server = Server::start(&[]).await;
    let pid = server.child.id().unwrap();
    let url = server.url("/");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Warm up the workers and the allocator first.
    for _ in 0..200 {
        http.get(&url).send().await.unwrap();
    }
    let before = rss_kib(pid);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (url, http) = (url.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for i in (task..REQUESTS).step_by(TASKS) {
                // Different every time, about 8 KiB: what an attacker would send.
                let garbage = format!("{i:08}{}", "Zm9vYmFy".repeat(1024));
                let response = http
                    .get(&url)
                    .header("Cookie", format!("user={garbage}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 302, "no login, so the login page");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "RSS went from {before} KiB to {after} KiB"
    );
    server.stop().await;
}

/// A script that runs the chatdemo binary under an open-file limit of `limit`.
fn under_file_limit(dir: &Path, limit: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("chatdemo-limited");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -n {limit}\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_chatdemo")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_file_limit_stalled_posts_get_503_before_descriptors_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let limited = under_file_limit(dir.path(), 256);
    // A limit above what the process can hold is refused at start, naming the key.
    let output = std::process::Command::new(&limited)
        .args(["--port", "0"])
        .env("CHATDEMO_SERVER__MAX_CONNECTIONS", "50000")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.max_connections"));

    // By default the limit is derived: 256 less room for the rest.
    let server = Server::start_with(&limited, dir.path(), &[]).await;
    let (cookies, _) = login(&server).await;
    let mut stalled = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", server.port)).await else {
            break;
        };
        let head = format!(
            "POST /a/message/new HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookies}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut first = [0u8; 12];
        // A refused one is answered at once; a stalled one waits for its body.
        if let Ok(Ok(12)) =
            tokio::time::timeout(Duration::from_millis(20), tcp.read_exact(&mut first)).await
        {
            assert_eq!(&first, b"HTTP/1.1 503", "refused, not failed");
            refused += 1;
        }
        stalled.push(tcp);
    }
    assert!(refused > 0, "the limit was reached");
    // The server still answers, quickly: no `Too many open files` hang.
    let health = tokio::time::timeout(Duration::from_secs(2), reqwest::get(server.url("/healthz")))
        .await
        .expect("/healthz answers within 2 s")
        .unwrap();
    assert!(matches!(health.status().as_u16(), 200 | 503));
    drop(stalled);
    server.stop().await;
}
