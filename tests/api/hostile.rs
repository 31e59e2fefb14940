//! Hostile clients against the real binary, over raw TCP: what they did before and what
//! the server does now. Memory and descriptors are measured on the server's process.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::metric_at;
use crate::process::{hold_polls, login, rss_kib, Server};

/// A WebSocket handshake by hand; returns the stream right after the 101.
async fn upgrade(server: &Server, cookies: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let port = server.port;
    let request = format!(
        "GET /a/message/socket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Origin: http://127.0.0.1:{port}\r\nCookie: {cookies}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame header (`opcode`, payload length), mask zero.
fn frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![0x80 | opcode];
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=65535 => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Reads server frames until a close frame and returns its code.
async fn read_close_code(stream: &mut tokio::net::tcp::OwnedReadHalf) -> u16 {
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.unwrap()),
            127 => stream.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

async fn metric(server: &Server, name: &str) -> u64 {
    metric_at(&server.url(""), name).await
}

async fn wait_for_metric(server: &Server, name: &str, want: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let value = metric(server, name).await;
        if value == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {value}, not {want}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sockets of `port`'s server side in the kernel's table in state `state` (hex, as in
/// /proc/net/tcp: 08 is CLOSE_WAIT).
fn server_sockets_in_state(port: u16, state: &str) -> usize {
    server_sockets(port, None, state)
}

/// The same, only those connected to the client port `peer` when given.
fn server_sockets(port: u16, peer: Option<u16>, state: &str) -> usize {
    let local = format!(":{port:04X}");
    let remote = peer.map(|p| format!(":{p:04X}"));
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|line| {
                    line.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .filter(|fields| {
            fields[1].ends_with(&local)
                && remote.as_ref().is_none_or(|r| fields[2].ends_with(r))
                && fields[3] == state
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_a_terabyte_is_refused_at_its_header_without_buffering() {
    let server = Server::start(&[]).await;
    let pid = server.pid();
    let (cookies, _) = login(&server).await;
    let before = rss_kib(pid);
    let (mut read, mut write) = upgrade(&server, &cookies).await.into_split();
    // Text frame, 2^40 bytes declared; then as many bytes as the server will take.
    write.write_all(&frame_header(0x1, 1 << 40)).await.unwrap();
    let streaming = tokio::spawn(async move {
        let chunk = vec![b'a'; 64 * 1024];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            match tokio::time::timeout(Duration::from_millis(200), write.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                // The server stopped reading: good, keep trying until the time is up.
                Err(_) => {}
            }
        }
    });
    let mut peak = before;
    let code = tokio::time::timeout(Duration::from_secs(2), async {
        let watch = async {
            loop {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            code = read_close_code(&mut read) => code,
            () = watch => unreachable!(),
        }
    })
    .await
    .expect("a close frame within 2 s");
    assert_eq!(code, 1009, "message too big");
    streaming.await.unwrap();
    peak = peak.max(rss_kib(pid));
    assert!(
        peak < before + 32 * 1024,
        "RSS went from {before} KiB to {peak} KiB"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_held_polls_are_released_within_two_seconds() {
    const POLLS: u64 = 300;
    let server = Server::start(&[]).await;
    let streams = hold_polls(&server, POLLS as usize).await;
    wait_for_metric(
        &server,
        "chatdemo_waiting_polls",
        POLLS,
        Duration::from_secs(10),
    )
    .await;
    // Every client gives up at once (a closed tab, a dropped fetch).
    drop(streams);
    let released =
        wait_for_metric(&server, "chatdemo_waiting_polls", 0, Duration::from_secs(2)).await;
    eprintln!("{POLLS} abandoned polls released after {released:?}");
    // And the server has closed its side of every one of them.
    let deadline = Instant::now() + Duration::from_secs(2) - released;
    while server_sockets_in_state(server.port, "08") > 0 {
        assert!(
            Instant::now() < deadline,
            "{} server sockets still in CLOSE_WAIT",
            server_sockets_in_state(server.port, "08")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The room still answers at once.
    let started = Instant::now();
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        200
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_pings_and_never_reads_is_dropped() {
    // Two ping intervals are 2 s here.
    let server = Server::start(&[("CHATDEMO_WEBSOCKET__PING_INTERVAL_SECS", "1")]).await;
    let (cookies, _) = login(&server).await;
    let stream = upgrade(&server, &cookies).await;
    wait_for_metric(
        &server,
        "chatdemo_connected_sockets",
        1,
        Duration::from_secs(2),
    )
    .await;
    let started = Instant::now();
    let (_read, mut write) = stream.into_split();
    // Pings with the largest payload, as fast as the server takes them; never a read.
    let mut ping = frame_header(0x9, 125);
    ping.extend_from_slice(&[b'p'; 125]);
    let pings: Vec<u8> = ping.repeat(256);
    let flood = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(Duration::from_millis(100), write.write_all(&pings)).await {
                Ok(Ok(())) | Err(_) => {}
                // Reset by the server: the test's point.
                Ok(Err(e)) => return e,
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("the connection is still open after 20 s");
            }
        }
    });
    let dropped = wait_for_metric(
        &server,
        "chatdemo_connected_sockets",
        0,
        Duration::from_secs(8),
    )
    .await;
    eprintln!("the non-reading client was dropped after {dropped:?}");
    let error = tokio::time::timeout(Duration::from_secs(5), flood)
        .await
        .expect("the connection is reset, so the flood's writes fail")
        .unwrap();
    eprintln!("the flood ended with: {error}");
    assert!(metric(&server, "chatdemo_slow_disconnects_total").await >= 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_reads_while_the_room_is_busy_is_dropped_not_kept() {
    let server = Server::start(&[("CHATDEMO_ROOM__RATE_BURST", "1000000")]).await;
    let (cookies, xsrf) = login(&server).await;
    let stream = upgrade(&server, &cookies).await;
    let client_port = stream.local_addr().unwrap().port();
    wait_for_metric(
        &server,
        "chatdemo_connected_sockets",
        1,
        Duration::from_secs(2),
    )
    .await;
    // Messages of 2,000 characters until the socket is gone; it reads nothing.
    let http = reqwest::Client::new();
    let body = format!("_xsrf={xsrf}&body={}", "y".repeat(2000));
    let started = Instant::now();
    while metric(&server, "chatdemo_connected_sockets").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still connected after 30 s"
        );
        for _ in 0..50 {
            let response = http
                .post(server.url("/a/message/new"))
                .header("Cookie", &cookies)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    eprintln!("dropped after {:?}", started.elapsed());
    // And the server let go of the connection itself, not just of its task.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server_sockets(server.port, Some(client_port), "01") > 0 {
        assert!(
            Instant::now() < deadline,
            "the server still holds the connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    server.stop().await;
}

/// Finding 1 of the second attack: the cache filled with the most expensive messages (200
/// of 1,994 `"`, six bytes each in their `html`), then 300 clients each ask for all of it
/// (a cursor the room never issued gets the whole cache with `reset`) and read nothing.
/// Each answer was copied whole into its connection's buffer (995 MB for 300), and a
/// request stopped counting against the connection limit once its handler returned, so
/// with a limit of 150 all 300 were let in. Now the answers are written from the room's
/// shared bytes, each counts until written, and each is cut at the write deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_nobody_reads_cost_little_count_until_written_and_are_cut() {
    const CLIENTS: usize = 300;
    const LIMIT: usize = 150;
    let server = Server::start(&[
        ("CHATDEMO_ROOM__RATE_BURST", "1000"),
        ("CHATDEMO_ROOM__ADDRESS_BURST", "1000"),
        ("CHATDEMO_SERVER__MAX_CONNECTIONS", &LIMIT.to_string()),
        ("CHATDEMO_SERVER__WRITE_TIMEOUT_SECS", "3"),
    ])
    .await;
    let pid = server.pid();
    let mut logins = Vec::new();
    for _ in 0..10 {
        logins.push(login(&server).await);
    }
    let http = reqwest::Client::new();
    let (cookies, xsrf) = &logins[0];
    let quotes = "\"".repeat(1994);
    for _ in 0..200 {
        let response = http
            .post(server.url("/a/message/new"))
            .header("Cookie", cookies)
            .form(&[("body", quotes.as_str()), ("_xsrf", xsrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let poll = |(cookies, xsrf): &(String, String)| {
        crate::process::raw_request(
            server.port,
            "/a/message/updates",
            cookies,
            &format!("_xsrf={xsrf}&cursor=never-issued-1-0"),
        )
    };
    // One client that does read: the whole answer, its size, and the allocator warmed.
    let whole = http
        .post(server.url("/a/message/updates"))
        .header("Cookie", cookies)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("_xsrf={xsrf}&cursor=never-issued-1-0"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(whole > 3_000_000, "the whole cache is {whole} bytes");
    let before = rss_kib(pid);

    // They send, read the status line, and read no more.
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket
            .connect(([127, 0, 0, 1], server.port).into())
            .await
            .unwrap();
        let request = poll(&logins[i % logins.len()]);
        stream.write_all(request.as_bytes()).await.unwrap();
        clients.push(stream);
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for mut stream in clients {
        let mut status = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut status))
            .await
            .expect("a status line")
            .unwrap();
        match &status {
            b"HTTP/1.1 200" => admitted.push(stream),
            b"HTTP/1.1 503" => refused += 1,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
    let peak = rss_kib(pid);
    eprintln!(
        "{} answers being written, {refused} refused; RSS {before} -> {peak} KiB",
        admitted.len()
    );
    assert!(admitted.len() <= LIMIT, "{} let in", admitted.len());
    assert!(
        peak < before + 64 * 1024,
        "RSS went from {before} KiB to {peak} KiB"
    );
    // While they are written, they hold their slots ...
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        503
    );
    // ... until the deadline cuts them: then the server is free again.
    let freed = loop {
        if reqwest::get(server.url("/healthz")).await.unwrap().status() == 200 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(8), "still full");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("slots free again {freed:?} after the requests");
    assert!(
        freed >= Duration::from_secs(3),
        "freed before the deadline: {freed:?}"
    );
    // Each was cut (reset, or closed short), unless the kernel had taken it whole before
    // the deadline: then it was written (and the connection is kept alive, or closed by
    // the keep-alive timer). None may still be open with part of its answer unread.
    for mut stream in admitted {
        let mut got = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
        let whole_answer = got.len() + 12 >= whole;
        assert!(
            whole_answer || end.is_ok(),
            "still open {} bytes into an answer of {whole}",
            got.len()
        );
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 16 * 1024,
        "RSS went from {before} KiB to {after} KiB after the cut"
    );
    server.stop().await;
}
