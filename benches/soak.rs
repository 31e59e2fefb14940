//! Soak test for the chat room: WebSocket and long-poll clients follow the room for a long
//! time while messages arrive at a steady rate and a share of the clients reconnect every
//! minute (each from its own cursor). Every minute it prints the server's resident memory,
//! the heap its allocator holds and has handed out (from `/metrics`, where the server can
//! count them), open descriptors, held polls and open sockets; at the end it checks that,
//! after the warm-up (a sixth of the run), each stayed within the tolerance of its value
//! then, and that every client got every message exactly once, in order, through all its
//! reconnects.
//!
//! `cargo bench --bench soak -- --url http://127.0.0.1:8888 --server-pid PID --minutes 30`
//! (`benches/soak.sh` starts the server and runs this). Loopback only; it stops by itself.

// A measuring tool, not the server: an unexpected failure should stop the run with its
// message, which is what `unwrap` does.
#![allow(clippy::unwrap_used)]

#[path = "client/mod.rs"]
mod client;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use rand::Rng;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use client::{check_loopback, encode, login, login_many, read_proc, socket_request, Http, User};

/// Bytes in a MiB, for the table.
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(about = "Soak test: steady traffic and reconnects, resources sampled each minute")]
struct Args {
    /// Server base URL; must be on loopback.
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    url: String,
    /// The server's process id (memory and descriptors are read from /proc).
    #[arg(long)]
    server_pid: u32,
    /// WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    ws: usize,
    /// Long-poll clients.
    #[arg(long, default_value_t = 1000)]
    polls: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Share of the clients that reconnect each minute.
    #[arg(long, default_value_t = 0.10)]
    churn: f64,
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Largest allowed change of each figure after the warm-up, as a fraction.
    #[arg(long, default_value_t = 0.05)]
    tolerance: f64,
    /// Minutes of warm-up (the allocator and the reconnect pattern settling): the figures
    /// are compared with the sample at its end. Default: a sixth of the run, at least 1.
    #[arg(long)]
    warmup_minutes: Option<u64>,
}

#[derive(Deserialize)]
struct Batch {
    messages: Vec<Wire>,
    #[serde(default)]
    reset: bool,
}

#[derive(Deserialize)]
struct Wire {
    id: String,
    body: String,
}

/// What one client saw: the sequence numbers of the soak's messages, in arrival order.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    resets: usize,
    reconnects: usize,
}

impl Seen {
    fn record(&mut self, text: &[u8], cursor: &mut String) {
        let Ok(batch) = serde_json::from_slice::<Batch>(text) else {
            return;
        };
        self.resets += usize::from(batch.reset);
        for message in &batch.messages {
            if let Some(seq) = message
                .body
                .strip_prefix("soak ")
                .and_then(|s| s.parse().ok())
            {
                self.seqs.push(seq);
            }
        }
        if let Some(last) = batch.messages.last() {
            cursor.clone_from(&last.id);
        }
    }
}

/// A client: follows the room from its cursor; when told to (`churn`), drops its
/// connection and comes back from the same cursor at once.
async fn run_client(
    url: String,
    socket: bool,
    user: User,
    mut cursor: String,
    churn: Arc<Notify>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    while !stop.load(Relaxed) {
        if socket {
            follow_socket(&url, &user, &mut cursor, &churn, &stop, &seen).await;
        } else {
            follow_polls(&url, &user, &mut cursor, &churn, &stop, &seen).await;
        }
        seen.lock().unwrap().reconnects += 1;
    }
}

async fn follow_socket(
    url: &str,
    user: &User,
    cursor: &mut String,
    churn: &Notify,
    stop: &AtomicBool,
    seen: &Mutex<Seen>,
) {
    let request = socket_request(url, user, cursor);
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(request).await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    loop {
        tokio::select! {
            frame = tokio::time::timeout(Duration::from_secs(1), ws.next()) => match frame {
                Err(_) => {}
                Ok(Some(Ok(WsMessage::Text(text)))) => seen.lock().unwrap().record(text.as_bytes(), cursor),
                Ok(Some(Ok(_))) => {}
                Ok(_) => return,
            },
            () = churn.notified() => return,
        }
        if stop.load(Relaxed) {
            return;
        }
    }
}

async fn follow_polls(
    url: &str,
    user: &User,
    cursor: &mut String,
    churn: &Notify,
    stop: &AtomicBool,
    seen: &Mutex<Seen>,
) {
    let addr = url.trim_start_matches("http://");
    let Ok(mut http) = Http::connect(addr).await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    while !stop.load(Relaxed) {
        let body = format!("_xsrf={}&cursor={}", encode(&user.xsrf), encode(cursor));
        let answer = tokio::select! {
            answer = http.request("POST", "/a/message/updates", &user.cookie, &body) => answer,
            // A reconnect (or the end): the held poll is dropped with its connection.
            () = churn.notified() => return,
        };
        match answer {
            Ok(response) if response.status == 200 => {
                seen.lock().unwrap().record(&response.body, cursor);
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
    }
}

/// One minute's figures from the server.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rss_kib: u64,
    /// The allocator's own counts from `/metrics`, where the server has them (glibc): what
    /// it has taken from the kernel, and what is handed out. Resident memory climbs towards
    /// the first as untouched pages get written, so these tell a leak from that.
    heap_mapped: Option<u64>,
    heap_in_use: Option<u64>,
    fds: u64,
    waiting_polls: u64,
    sockets: u64,
}

/// The server's figures now. Every message answers every held poll, which comes straight
/// back, so a single reading of the held polls catches some in flight: the gauges are the
/// highest of 20 readings over a second.
async fn sample(url: &str, pid: u32) -> Sample {
    let addr = url.trim_start_matches("http://");
    let mut http = Http::connect(addr).await.unwrap();
    let (mut waiting_polls, mut sockets) = (0, 0);
    let (mut heap_mapped, mut heap_in_use) = (None, None);
    for _ in 0..20 {
        let metrics = http.request("GET", "/metrics", "", "").await.unwrap();
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        let metric = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        waiting_polls = waiting_polls.max(metric("chatdemo_waiting_polls").unwrap_or(0));
        sockets = sockets.max(metric("chatdemo_connected_sockets").unwrap_or(0));
        (heap_mapped, heap_in_use) = (
            metric("chatdemo_heap_mapped_bytes"),
            metric("chatdemo_heap_in_use_bytes"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Sample {
        rss_kib: read_proc(Some(pid)).map_or(0, |p| p.rss_kib),
        heap_mapped,
        heap_in_use,
        fds,
        waiting_polls,
        sockets,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    check_loopback(&args.url);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = args.url.trim_start_matches("http://").to_owned();
    let clients = args.ws + args.polls;
    eprintln!("logging in {clients} clients ...");
    let users = login_many(&addr, "soak", clients).await;
    let poster = login(&addr, "soak-poster").await;
    // Everyone starts from the same place: the page's cursor right now.
    let mut http = Http::connect(&addr).await.unwrap();
    let page = http.request("GET", "/", &poster.cookie, "").await.unwrap();
    let page = String::from_utf8_lossy(&page.body).into_owned();
    let start = page
        .split("data-cursor=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let mut churns = Vec::with_capacity(clients);
    let mut seen = Vec::with_capacity(clients);
    let mut tasks = Vec::with_capacity(clients);
    for (i, user) in users.into_iter().enumerate() {
        let churn = Arc::new(Notify::new());
        let record = Arc::new(Mutex::new(Seen::default()));
        tasks.push(tokio::spawn(run_client(
            args.url.clone(),
            i < args.ws,
            user,
            start.clone(),
            churn.clone(),
            stop.clone(),
            record.clone(),
        )));
        churns.push(churn);
        seen.push(record);
    }
    // Let them connect before the clock starts.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Posting and churn end first; the clients get a few seconds more to drain.
    let quiet = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let posting = {
        let (addr, posted, stop, rate) = (addr.clone(), posted.clone(), quiet.clone(), args.rate);
        tokio::spawn(async move {
            let mut http = Http::connect(&addr).await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            while !stop.load(Relaxed) {
                tick.tick().await;
                let seq = posted.load(Relaxed);
                let body = format!("_xsrf={}&body=soak%20{seq}", encode(&poster.xsrf));
                let response = http
                    .request("POST", "/a/message/new", &poster.cookie, &body)
                    .await;
                match response {
                    Ok(r) if r.status == 200 => {
                        posted.fetch_add(1, Relaxed);
                    }
                    Ok(r) => panic!("post refused: {}", r.status),
                    Err(_) => http = Http::connect(&addr).await.unwrap(),
                }
            }
        })
    };
    let churning = {
        let (churns, stop) = (churns.clone(), quiet.clone());
        let per_minute = (args.churn * clients as f64).max(1.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(60.0 / per_minute));
            tick.tick().await;
            while !stop.load(Relaxed) {
                tick.tick().await;
                let pick = rand::rng().random_range(0..churns.len());
                churns[pick].notify_one();
            }
        })
    };

    println!("minute  rss_MiB  heap_MiB  in_use_MiB    fds  waiting_polls  sockets  posted");
    let started = Instant::now();
    let mut samples = Vec::new();
    for minute in 0..=args.minutes {
        let due = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(due.into()).await;
        let s = sample(&args.url, args.server_pid).await;
        let mib =
            |bytes: Option<u64>| bytes.map_or("-".into(), |b| format!("{:.1}", b as f64 / MIB));
        println!(
            "{minute:>6}  {:>7.1}  {:>8}  {:>10}  {:>5}  {:>13}  {:>7}  {:>6}",
            s.rss_kib as f64 / 1024.0,
            mib(s.heap_mapped),
            mib(s.heap_in_use),
            s.fds,
            s.waiting_polls,
            s.sockets,
            posted.load(Relaxed)
        );
        samples.push(s);
    }
    quiet.store(true, Relaxed);
    posting.await.unwrap();
    churning.await.unwrap();
    let total = posted.load(Relaxed);
    // The last messages reach everyone within a few seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Relaxed);
    for churn in &churns {
        churn.notify_one();
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    // Delivery: every client, every message, once, in order, through every reconnect.
    let mut bad = 0;
    let mut reconnects = 0;
    for (i, record) in seen.iter().enumerate() {
        let record = record.lock().unwrap();
        reconnects += record.reconnects;
        let expected: Vec<u64> = (0..total).collect();
        if record.seqs != expected || record.resets > 0 {
            bad += 1;
            if bad <= 5 {
                let first_wrong = record.seqs.iter().zip(&expected).position(|(a, b)| a != b);
                eprintln!(
                    "client {i}: {} of {total} messages, first difference at {first_wrong:?}, {} resets",
                    record.seqs.len(),
                    record.resets
                );
            }
        }
    }
    println!("{total} messages; {reconnects} reconnects; {bad} of {clients} clients with a gap, a repeat or a reset");

    // Flat after the warm-up: each figure within the tolerance of its value then.
    let warmup = args.warmup_minutes.unwrap_or((args.minutes / 6).max(1));
    let baseline = (warmup as usize).min(samples.len() - 1);
    let steady = &samples[baseline..];
    let mut flat = true;
    for (name, value) in [
        (
            "rss",
            (|s: &Sample| Some(s.rss_kib)) as fn(&Sample) -> Option<u64>,
        ),
        ("heap_mapped", |s| s.heap_mapped),
        ("heap_in_use", |s| s.heap_in_use),
        ("fds", |s| Some(s.fds)),
        ("waiting_polls", |s| Some(s.waiting_polls)),
        ("sockets", |s| Some(s.sockets)),
    ] {
        // The heap figures are missing where the server cannot count them (not glibc).
        let Some(first) = value(&steady[0]).map(|v| v as f64) else {
            println!("{name}: not reported by the server");
            continue;
        };
        let worst = steady
            .iter()
            .map(|s| (value(s).unwrap_or(0) as f64 - first).abs() / first.max(1.0))
            .fold(0.0, f64::max);
        let ok = worst <= args.tolerance;
        flat &= ok;
        println!(
            "{name}: at most {:.1}% from minute {baseline} ({})",
            worst * 100.0,
            if ok { "flat" } else { "NOT flat" }
        );
    }
    if bad > 0 || !flat {
        std::process::exit(1);
    }
}
