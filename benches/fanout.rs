//! Load generator for the chat room (chatdemo or the Tornado reference): logs in separate
//! users, opens N WebSocket receivers and M long-poll receivers that follow their cursors,
//! posts K messages from P posters at a given rate (or as fast as possible), and reports
//! delivery correctness, latency per transport, throughput, POST round trips, and the
//! server's CPU and memory (read from /proc for `--server-pid`).
//!
//! `cargo bench --bench fanout -- --url http://127.0.0.1:8888 --ws 100 --polls 100 \
//!     --messages 1000 --server-pid PID`
//! `--idle SECS` instead holds the connections that long and reports memory and CPU per
//! idle connection. `--storm SECS` is a join storm: the WebSocket receivers connect evenly
//! over SECS while the messages are posted, and the report adds the notices the room got
//! (entries and the logins they count), the server's peak RSS, and latency counted only for
//! messages posted after a receiver connected (earlier ones reach it as a replay). It talks
//! to loopback only and always stops by itself.

// A measuring tool, not the server: an unexpected failure should stop the run with its
// message, which is what `unwrap` does.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "client/mod.rs"]
mod client;

use clap::Parser;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::Semaphore;

use client::{check_loopback, encode, login_many, read_proc, socket_request, Http, Proc, User};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Parser, Debug, Clone)]
#[command(about = "Fan-out load generator for the chat room")]
struct Args {
    /// Server base URL; must be on loopback.
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    url: String,
    /// WebSocket receivers.
    #[arg(long, default_value_t = 100)]
    ws: usize,
    /// Long-poll receivers.
    #[arg(long, default_value_t = 100)]
    polls: usize,
    /// Messages to post in all.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Posting rate in messages per second over all posters; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Posters (each a separate user).
    #[arg(long, default_value_t = 1)]
    posters: usize,
    /// The server's process id, for CPU and memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A second instance of the same room (a shared store): receivers and posters
    /// alternate between `--url` and this one.
    #[arg(long)]
    url2: Option<String>,
    /// The second instance's process id; CPU and memory are the two added up.
    #[arg(long)]
    server_pid2: Option<u32>,
    /// The shared store's process (redis-server), for its CPU over the same window as
    /// the server's.
    #[arg(long)]
    store_pid: Option<u32>,
    /// Hold the connections this many seconds and report idle costs instead of posting.
    #[arg(long)]
    idle: Option<u64>,
    /// Name for the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Append the report as one JSON line to this file.
    #[arg(long)]
    json: Option<String>,
    /// Give up waiting for deliveries this long after the last post.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
    /// A join storm: connect the WebSocket receivers evenly over this many seconds while
    /// posting (long-poll receivers are not used).
    #[arg(long)]
    storm: Option<f64>,
}

#[derive(Deserialize)]
struct Batch {
    messages: Vec<WireMessage>,
}

#[derive(Deserialize)]
struct WireMessage {
    id: String,
    body: String,
    #[serde(default)]
    kind: String,
    /// Notices: how many logins one counts.
    count: Option<u64>,
}

/// A delivery that was a replay (posted before its receiver connected): no latency.
const REPLAYED: u64 = u64::MAX;

/// What one receiver saw: (poster, sequence, latency in µs) per delivery.
#[derive(Default)]
struct Seen {
    deliveries: Vec<(u32, u32, u64)>,
    /// When it connected (µs on the shared clock): messages due before are replays.
    connected_us: u64,
    /// `join`/`leave` entries, and the logins they count.
    notices: usize,
    noticed: u64,
}

struct Shared {
    base: Instant,
    received: AtomicUsize,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// Parses a frame or poll answer and records each bench message it carries.
fn record(shared: &Shared, seen: &mut Seen, text: &[u8], cursor: &mut String) {
    let batch: Batch = match serde_json::from_slice(text) {
        Ok(batch) => batch,
        Err(_) => return, // error frames and the like
    };
    let now = shared.now_us();
    for message in &batch.messages {
        if matches!(message.kind.as_str(), "join" | "leave") {
            seen.notices += 1;
            seen.noticed += message.count.unwrap_or(1);
            continue;
        }
        let mut parts = message.body.splitn(4, ':');
        let (Some("b"), Some(poster), Some(seq), Some(sent)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue; // the warm-up message
        };
        let (Ok(poster), Ok(seq), Ok(sent)) = (
            poster.parse(),
            seq.parse(),
            sent.split(' ').next().unwrap_or("").parse::<u64>(),
        ) else {
            continue;
        };
        let latency = if sent >= seen.connected_us {
            now.saturating_sub(sent)
        } else {
            REPLAYED
        };
        seen.deliveries.push((poster, seq, latency));
        shared.received.fetch_add(1, Relaxed);
    }
    if let Some(last) = batch.messages.last() {
        cursor.clone_from(&last.id);
    }
}

async fn ws_receiver(
    url: String,
    shared: Arc<Shared>,
    user: User,
    cursor: String,
    ready: Arc<AtomicUsize>,
    connecting: tokio::sync::OwnedSemaphorePermit,
) -> Seen {
    let request = socket_request(&url, &user, &cursor);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("socket opens");
    drop(connecting);
    ready.fetch_add(1, Relaxed);
    let mut seen = Seen {
        connected_us: shared.now_us(),
        ..Seen::default()
    };
    let mut cursor = cursor;
    let mut stop = shared.stop.subscribe();
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => record(&shared, &mut seen, text.as_bytes(), &mut cursor),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = stop.changed() => break,
        }
    }
    seen
}

async fn poll_receiver(
    url: String,
    shared: Arc<Shared>,
    user: User,
    cursor: String,
    ready: Arc<AtomicUsize>,
) -> Seen {
    let addr = url.trim_start_matches("http://").to_owned();
    let mut http = Http::connect(&addr).await.expect("poll connection");
    let mut seen = Seen::default();
    let mut cursor = cursor;
    let mut stop = shared.stop.subscribe();
    let mut first = true;
    loop {
        let body = format!("_xsrf={}&cursor={}", encode(&user.xsrf), encode(&cursor));
        if first {
            ready.fetch_add(1, Relaxed);
            first = false;
        }
        let answer = tokio::select! {
            answer = http.request("POST", "/a/message/updates", &user.cookie, &body) => answer,
            _ = stop.changed() => break,
        };
        match answer {
            Ok(response) if response.status == 200 => {
                record(&shared, &mut seen, &response.body, &mut cursor)
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match Http::connect(&addr).await {
                    Ok(fresh) => http = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    seen
}

impl Args {
    /// The instance the `i`th receiver or poster talks to.
    fn url_for(&self, i: usize) -> &str {
        match (&self.url2, i % 2) {
            (Some(second), 1) => second,
            _ => &self.url,
        }
    }
}

/// CPU and memory of the server, both instances added up when there are two.
fn read_servers(args: &Args) -> Option<Proc> {
    let first = read_proc(Some(args.server_pid?))?;
    let Some(pid) = args.server_pid2 else {
        return Some(first);
    };
    let second = read_proc(Some(pid))?;
    Some(Proc {
        cpu_secs: first.cpu_secs + second.cpu_secs,
        rss_kib: first.rss_kib + second.rss_kib,
        peak_kib: first.peak_kib + second.peak_kib,
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

#[derive(Default)]
struct Check {
    expected: usize,
    received: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    latencies_us: Vec<u64>,
}

impl Check {
    /// "expected N received N lost N duplicated N out-of-order N", for the printed report.
    fn counts(&self) -> String {
        format!(
            "expected {} received {} lost {} duplicated {} out-of-order {}",
            self.expected, self.received, self.lost, self.duplicated, self.out_of_order
        )
    }
}

fn check(seen: &[Seen], posted_per_poster: &[u32]) -> Check {
    let mut result = Check::default();
    let total: usize = posted_per_poster.iter().map(|&n| n as usize).sum();
    for receiver in seen {
        result.expected += total;
        result.received += receiver.deliveries.len();
        let mut got: HashMap<(u32, u32), usize> = HashMap::new();
        let mut last_seq: HashMap<u32, u32> = HashMap::new();
        for &(poster, seq, latency) in &receiver.deliveries {
            *got.entry((poster, seq)).or_default() += 1;
            if let Some(&previous) = last_seq.get(&poster) {
                if seq <= previous {
                    result.out_of_order += 1;
                }
            }
            last_seq.insert(poster, seq);
            if latency != REPLAYED {
                result.latencies_us.push(latency);
            }
        }
        result.duplicated += got
            .values()
            .filter(|&&n| n > 1)
            .map(|&n| n - 1)
            .sum::<usize>();
        let unique = got
            .keys()
            .filter(|(p, s)| posted_per_poster.get(*p as usize).is_some_and(|&n| *s < n))
            .count();
        result.lost += total - unique;
    }
    result.latencies_us.sort_unstable();
    result
}

/// Starts the posters: `--messages` in all, split between them, at `--rate` (or flat out),
/// each message's body `b:<poster>:<seq>:<due µs>`. Returns their tasks, how many each
/// posts, and the POST round trips (µs) as they come.
#[allow(clippy::type_complexity)]
fn spawn_posters(
    args: &Arc<Args>,
    shared: &Arc<Shared>,
    posters: Vec<User>,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Vec<u32>,
    Arc<Mutex<Vec<u64>>>,
) {
    let per_poster = args.messages.div_ceil(args.posters.max(1));
    let round_trips = Arc::new(Mutex::new(Vec::with_capacity(args.messages)));
    let mut poster_tasks = Vec::new();
    let mut posted_per_poster = Vec::new();
    for (p, user) in posters.into_iter().enumerate() {
        let count = per_poster.min(args.messages.saturating_sub(p * per_poster)) as u32;
        posted_per_poster.push(count);
        let addr = args.url_for(p).trim_start_matches("http://").to_owned();
        let (shared, round_trips) = (shared.clone(), round_trips.clone());
        let interval =
            (args.rate > 0.0).then(|| Duration::from_secs_f64(args.posters as f64 / args.rate));
        poster_tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(&addr).await.unwrap();
            let start = tokio::time::Instant::now();
            let start_us = shared.now_us();
            for seq in 0..count {
                // At a fixed rate, latency counts from when the message was due, not
                // from when a busy server let us send it (no coordinated omission).
                let due_us = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(start + interval * seq).await;
                        start_us + (interval * seq).as_micros() as u64
                    }
                    None => shared.now_us(),
                };
                let sent = shared.now_us();
                let text = format!("b:{p}:{seq}:{due_us}");
                let body = format!("body={}&_xsrf={}", encode(&text), encode(&user.xsrf));
                let response = http
                    .request("POST", "/a/message/new", &user.cookie, &body)
                    .await
                    .expect("post");
                assert_eq!(
                    response.status,
                    200,
                    "post: {}",
                    String::from_utf8_lossy(&response.body)
                );
                round_trips.lock().unwrap().push(shared.now_us() - sent);
            }
        }));
    }
    (poster_tasks, posted_per_poster, round_trips)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Arc::new(Args::parse());
    check_loopback(&args.url);
    if let Some(second) = &args.url2 {
        check_loopback(second);
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = args.url.trim_start_matches("http://").to_owned();
    let (stop, _) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        received: AtomicUsize::new(0),
        stop,
    });

    let server_start = read_servers(&args);
    let posters = login_many(&addr, "poster", args.posters.max(1)).await;
    let ws_users = login_many(&addr, "ws", args.ws).await;
    let poll_users = login_many(&addr, "poll", args.polls).await;

    // Every receiver starts from the same known cursor, so none can miss the first message.
    let mut warm = Http::connect(&addr).await.unwrap();
    let warm_body = format!("body=warm-up&_xsrf={}", encode(&posters[0].xsrf));
    let warm_up = warm
        .request("POST", "/a/message/new", &posters[0].cookie, &warm_body)
        .await
        .unwrap();
    assert_eq!(
        warm_up.status,
        200,
        "warm-up post: {}",
        String::from_utf8_lossy(&warm_up.body)
    );
    let cursor = serde_json::from_slice::<WireMessage>(&warm_up.body)
        .unwrap()
        .id;

    let ready = Arc::new(AtomicUsize::new(0));
    let rss_before = read_servers(&args);
    let connect_started = Instant::now();
    let mut ws_tasks = Vec::new();
    let connect_limit = Arc::new(Semaphore::new(256));
    // In a storm the receivers connect evenly over its length, while the posters post.
    let pace = args
        .storm
        .map(|secs| Duration::from_secs_f64(secs / args.ws.max(1) as f64));
    let storm_start = tokio::time::Instant::now();
    for (i, user) in ws_users.into_iter().enumerate() {
        let (url, shared, cursor, ready, limit) = (
            args.url_for(i).to_owned(),
            shared.clone(),
            cursor.clone(),
            ready.clone(),
            connect_limit.clone(),
        );
        ws_tasks.push(tokio::spawn(async move {
            if let Some(pace) = pace {
                tokio::time::sleep_until(storm_start + pace * i as u32).await;
            }
            let connecting = limit.acquire_owned().await.unwrap();
            ws_receiver(url, shared, user, cursor, ready, connecting).await
        }));
    }
    if let Some(storm_secs) = args.storm {
        storm(
            &args, &shared, ws_tasks, posters, &ready, storm_secs, rss_before,
        )
        .await;
    }
    while ready.load(Relaxed) < args.ws {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_ws = read_servers(&args);
    let mut poll_tasks = Vec::new();
    for (i, user) in poll_users.into_iter().enumerate() {
        let (url, shared, cursor, ready) = (
            args.url_for(i).to_owned(),
            shared.clone(),
            cursor.clone(),
            ready.clone(),
        );
        poll_tasks.push(tokio::spawn(poll_receiver(
            url, shared, user, cursor, ready,
        )));
    }
    while ready.load(Relaxed) < args.ws + args.polls {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last polls reach the server and be held.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_all = read_servers(&args);
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let receivers = args.ws + args.polls;

    let mut report = serde_json::Map::new();
    report.insert("label".into(), args.label.clone().into());
    report.insert("ws".into(), args.ws.into());
    report.insert("polls".into(), args.polls.into());
    if let (Some(before), Some(ws), Some(all)) = (&rss_before, &rss_ws, &rss_all) {
        let per_ws = (ws.rss_kib as f64 - before.rss_kib as f64) / args.ws.max(1) as f64;
        let per_poll = (all.rss_kib as f64 - ws.rss_kib as f64) / args.polls.max(1) as f64;
        report.insert("rss_before_kib".into(), before.rss_kib.into());
        report.insert("rss_connected_kib".into(), all.rss_kib.into());
        report.insert("rss_per_ws_kib".into(), per_ws.into());
        report.insert("rss_per_poll_kib".into(), per_poll.into());
        println!(
            "[{}] connected {} ws + {} polls in {connect_secs:.1} s; server RSS {} -> {} KiB ({per_ws:.1} KiB/ws, {per_poll:.1} KiB/poll)",
            args.label, args.ws, args.polls, before.rss_kib, all.rss_kib
        );
    }
    let _ = server_start;

    if let Some(idle_secs) = args.idle {
        let cpu_before = read_servers(&args);
        let own_before = read_proc(None);
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let cpu_after = read_servers(&args);
        let own_after = read_proc(None);
        if let (Some(b), Some(a)) = (&cpu_before, &cpu_after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            let per_conn_us = cpu * 1e6 / receivers.max(1) as f64 / idle_secs as f64;
            report.insert("idle_secs".into(), idle_secs.into());
            report.insert("idle_server_cpu_secs".into(), cpu.into());
            report.insert("idle_cpu_us_per_conn_per_sec".into(), per_conn_us.into());
            report.insert("rss_after_idle_kib".into(), a.rss_kib.into());
            println!(
                "[{}] idle {idle_secs} s: server CPU {cpu:.2} s ({per_conn_us:.2} µs per connection per second), RSS {} KiB",
                args.label, a.rss_kib
            );
        }
        if let (Some(b), Some(a)) = (own_before, own_after) {
            report.insert("loadgen_cpu_secs".into(), (a.cpu_secs - b.cpu_secs).into());
        }
    } else {
        let cpu_before = read_servers(&args);
        let store_before = args.store_pid.and_then(|pid| read_proc(Some(pid)));
        let own_before = read_proc(None);
        let started = Instant::now();
        let (poster_tasks, posted_per_poster, round_trips) = spawn_posters(&args, &shared, posters);
        for task in poster_tasks {
            task.await.unwrap();
        }
        let posting_secs = started.elapsed().as_secs_f64();
        let expected = args.messages * receivers;
        let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
        while shared.received.load(Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delivery_secs = started.elapsed().as_secs_f64();
        let cpu_after = read_servers(&args);
        let store_after = args.store_pid.and_then(|pid| read_proc(Some(pid)));
        let own_after = read_proc(None);
        let _ = shared.stop.send(true);
        let mut ws_seen = Vec::new();
        for task in ws_tasks {
            ws_seen.push(task.await.unwrap());
        }
        let mut poll_seen = Vec::new();
        for task in poll_tasks {
            poll_seen.push(task.await.unwrap());
        }
        let ws = check(&ws_seen, &posted_per_poster);
        let polls = check(&poll_seen, &posted_per_poster);
        let received = ws.received + polls.received;
        let mut round_trips = round_trips.lock().unwrap().clone();
        round_trips.sort_unstable();

        println!(
            "[{}] {} messages to {} ws + {} polls: posted in {posting_secs:.2} s, delivered in {delivery_secs:.2} s, {:.0} deliveries/s",
            args.label,
            args.messages,
            args.ws,
            args.polls,
            received as f64 / delivery_secs
        );
        for (name, c) in [("ws", &ws), ("poll", &polls)] {
            if c.expected == 0 {
                continue;
            }
            let l = &c.latencies_us;
            println!(
                "[{}]   {name:>4}: {}; latency ms p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
                args.label,
                c.counts(),
                percentile(l, 50.0),
                percentile(l, 90.0),
                percentile(l, 99.0),
                percentile(l, 99.9),
                percentile(l, 100.0)
            );
            let mut t = serde_json::Map::new();
            for (key, value) in [
                ("expected", c.expected),
                ("received", c.received),
                ("lost", c.lost),
                ("duplicated", c.duplicated),
                ("out_of_order", c.out_of_order),
            ] {
                t.insert(key.into(), value.into());
            }
            for (key, p) in [
                ("p50_ms", 50.0),
                ("p90_ms", 90.0),
                ("p99_ms", 99.0),
                ("p999_ms", 99.9),
                ("max_ms", 100.0),
            ] {
                t.insert(key.into(), percentile(l, p).into());
            }
            report.insert(format!("{name}_stats"), t.into());
        }
        let mut all_latencies: Vec<u64> = ws
            .latencies_us
            .iter()
            .chain(&polls.latencies_us)
            .copied()
            .collect();
        all_latencies.sort_unstable();
        report.insert("p99_ms".into(), percentile(&all_latencies, 99.0).into());
        report.insert("messages".into(), args.messages.into());
        report.insert(
            "deliveries_per_sec".into(),
            (received as f64 / delivery_secs).into(),
        );
        report.insert("lost".into(), (ws.lost + polls.lost).into());
        report.insert(
            "duplicated".into(),
            (ws.duplicated + polls.duplicated).into(),
        );
        report.insert(
            "out_of_order".into(),
            (ws.out_of_order + polls.out_of_order).into(),
        );
        report.insert(
            "post_rtt_p50_ms".into(),
            percentile(&round_trips, 50.0).into(),
        );
        report.insert(
            "post_rtt_p99_ms".into(),
            percentile(&round_trips, 99.0).into(),
        );
        println!(
            "[{}]   POST round trip ms p50 {:.1} p99 {:.1}",
            args.label,
            percentile(&round_trips, 50.0),
            percentile(&round_trips, 99.0)
        );
        if let (Some(b), Some(a)) = (store_before, store_after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            let per_delivery = cpu * 1e6 / received.max(1) as f64;
            report.insert("store_cpu_secs".into(), cpu.into());
            report.insert("store_cpu_us_per_delivery".into(), per_delivery.into());
            println!(
                "[{}]   store CPU {cpu:.2} s = {per_delivery:.2} µs per delivered message",
                args.label
            );
        }
        if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            let per_delivery = cpu * 1e6 / received.max(1) as f64;
            report.insert("server_cpu_secs".into(), cpu.into());
            report.insert("server_cpu_us_per_delivery".into(), per_delivery.into());
            report.insert("rss_after_kib".into(), a.rss_kib.into());
            println!(
                "[{}]   server CPU {cpu:.2} s = {per_delivery:.2} µs per delivered message; RSS after {} KiB",
                args.label, a.rss_kib
            );
        }
        if let (Some(b), Some(a)) = (own_before, own_after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            report.insert("loadgen_cpu_secs".into(), cpu.into());
            println!("[{}]   load generator CPU {cpu:.2} s", args.label);
        }
    }
    let _ = shared.stop.send(true);
    finish(&args, report)
}

/// Writes the report (`--json`) and exits: 1 if any delivery was lost, repeated or out of
/// order. Receivers still open end with the process.
fn finish(args: &Args, report: serde_json::Map<String, serde_json::Value>) -> ! {
    let faults = ["lost", "duplicated", "out_of_order"]
        .iter()
        .filter_map(|key| report.get(*key).and_then(serde_json::Value::as_u64))
        .sum::<u64>();
    if let Some(path) = &args.json {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{}", serde_json::Value::Object(report)).unwrap();
    }
    if faults > 0 {
        eprintln!(
            "[{}] FAILED: {faults} lost, duplicated or out-of-order deliveries",
            args.label
        );
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// The join storm (`--storm SECS`): the receivers are connecting (paced by the caller) while
/// the posters post; reports delivery, the latency of live deliveries, the notices, and the
/// server's CPU and peak RSS over the whole storm, then exits.
async fn storm(
    args: &Arc<Args>,
    shared: &Arc<Shared>,
    ws_tasks: Vec<tokio::task::JoinHandle<Seen>>,
    posters: Vec<User>,
    ready: &AtomicUsize,
    storm_secs: f64,
    before: Option<Proc>,
) -> ! {
    let started = Instant::now();
    let own_before = read_proc(None);
    let (poster_tasks, posted_per_poster, _) = spawn_posters(args, shared, posters);
    let mut last_report = Instant::now();
    while ready.load(Relaxed) < args.ws {
        if last_report.elapsed() > Duration::from_secs(2) {
            println!(
                "[{}]   {} of {} connected",
                args.label,
                ready.load(Relaxed),
                args.ws
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    for task in poster_tasks {
        task.await.unwrap();
    }
    let expected = args.messages * args.ws;
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    while shared.received.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = read_servers(args);
    let own_after = read_proc(None);
    // The last arrivals' notice comes within a second or two of them (folded).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = shared.stop.send(true);
    let mut seen = Vec::new();
    for task in ws_tasks {
        seen.push(task.await.unwrap());
    }
    let c = check(&seen, &posted_per_poster);
    let l = &c.latencies_us;
    // The first receiver connected first and follows from before the storm: it saw every
    // notice the storm made.
    let (notices, noticed) = seen.first().map_or((0, 0), |s| (s.notices, s.noticed));
    let mut report = serde_json::Map::new();
    report.insert("label".into(), args.label.clone().into());
    report.insert("ws".into(), args.ws.into());
    report.insert("polls".into(), 0.into());
    report.insert("storm_secs".into(), storm_secs.into());
    report.insert("connect_secs".into(), connect_secs.into());
    report.insert("messages".into(), args.messages.into());
    report.insert("expected".into(), c.expected.into());
    report.insert("received".into(), c.received.into());
    report.insert("lost".into(), c.lost.into());
    report.insert("duplicated".into(), c.duplicated.into());
    report.insert("out_of_order".into(), c.out_of_order.into());
    report.insert("live_deliveries".into(), l.len().into());
    report.insert("p50_ms".into(), percentile(l, 50.0).into());
    report.insert("p99_ms".into(), percentile(l, 99.0).into());
    report.insert("max_ms".into(), percentile(l, 100.0).into());
    report.insert("notice_entries".into(), notices.into());
    report.insert("notices_counted".into(), noticed.into());
    report.insert(
        "notice_entries_per_sec".into(),
        (notices as f64 / connect_secs).into(),
    );
    println!(
        "[{}] storm: {} ws in {connect_secs:.1} s, {} messages: {}; live latency ms p50 {:.1} p99 {:.1} max {:.1} ({} live)",
        args.label,
        args.ws,
        args.messages,
        c.counts(),
        percentile(l, 50.0),
        percentile(l, 99.0),
        percentile(l, 100.0),
        l.len()
    );
    println!(
        "[{}]   notices: {notices} entries counting {noticed} logins ({:.2} entries/s over the storm)",
        args.label,
        notices as f64 / connect_secs
    );
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = a.cpu_secs - b.cpu_secs;
        report.insert("server_cpu_secs".into(), cpu.into());
        report.insert("rss_before_kib".into(), b.rss_kib.into());
        report.insert("peak_rss_kib".into(), a.peak_kib.into());
        println!(
            "[{}]   server CPU {cpu:.2} s over {secs:.1} s; RSS {} KiB before, peak {} KiB",
            args.label, b.rss_kib, a.peak_kib
        );
    }
    if let (Some(b), Some(a)) = (own_before, own_after) {
        report.insert("loadgen_cpu_secs".into(), (a.cpu_secs - b.cpu_secs).into());
    }
    finish(args, report)
}
