//! What the load tools share (`fanout` and `soak`): just enough HTTP/1.1 for this
//! protocol, logins, and the server's CPU and memory from /proc.

// Each tool uses its own part of this.
#![allow(dead_code)]

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// A logged-in user: the Cookie header to send and the XSRF token.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) cookie: String,
    pub(crate) xsrf: String,
}

/// One keep-alive HTTP/1.1 connection, just enough HTTP for this protocol.
pub(crate) struct Http {
    reader: BufReader<TcpStream>,
    host: String,
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) cookies: Vec<String>,
    pub(crate) body: Vec<u8>,
}

impl Http {
    pub(crate) async fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: &str,
        body: &str,
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !cookie.is_empty() {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if method == "POST" {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.reader.get_mut().write_all(head.as_bytes()).await?;

        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        let mut cookies = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::other("connection closed in headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("set-cookie") {
                cookies.push(value.split(';').next().unwrap_or("").to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(std::io::Error::other("chunked answers are not expected"));
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(Response {
            status,
            cookies,
            body,
        })
    }
}

pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) async fn login(addr: &str, name: &str) -> User {
    let mut http = Http::connect(addr).await.expect("connect for login");
    let response = http
        .request("GET", &format!("/auth/login?name={}", encode(name)), "", "")
        .await
        .expect("login");
    assert_eq!(response.status, 302, "login answers a redirect");
    let cookie = response.cookies.join("; ");
    let xsrf = response
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("_xsrf="))
        .expect("an _xsrf cookie")
        .trim_matches('"')
        .to_owned();
    User { cookie, xsrf }
}

pub(crate) async fn login_many(addr: &str, prefix: &str, count: usize) -> Vec<User> {
    let limit = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (addr, name, limit) = (addr.to_owned(), format!("{prefix}{i}"), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                login(&addr, &name).await
            })
        })
        .collect();
    let mut users = Vec::with_capacity(count);
    for task in tasks {
        users.push(task.await.unwrap());
    }
    users
}

pub(crate) struct Proc {
    pub(crate) cpu_secs: f64,
    pub(crate) rss_kib: u64,
    /// The most the process has had resident (`VmHWM`).
    pub(crate) peak_kib: u64,
}

pub(crate) fn read_proc(pid: Option<u32>) -> Option<Proc> {
    let path = pid.map_or("self".to_owned(), |p| p.to_string());
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{path}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(rss_kib);
    // Linux reports CPU time in clock ticks of 1/100 s on every platform this runs on.
    Some(Proc {
        cpu_secs: ticks / 100.0,
        rss_kib,
        peak_kib,
    })
}

pub(crate) fn check_loopback(url: &str) {
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or("");
    assert!(
        host == "localhost" || host.starts_with("127.") || host == "[::1]",
        "the load generator only targets loopback, not {host}"
    );
}

/// The upgrade request of `user`'s WebSocket on the server at `url`, from `cursor`.
pub(crate) fn socket_request(url: &str, user: &User, cursor: &str) -> Request {
    let ws_url = url.replacen("http", "ws", 1);
    let mut request = format!("{ws_url}/a/message/socket?cursor={}", encode(cursor))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Cookie", user.cookie.parse().unwrap());
    request.headers_mut().insert("Origin", url.parse().unwrap());
    request
}
