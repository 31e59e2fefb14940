//! A post whose write reached Redis but whose answer was lost on the way back (the
//! connection dropped in between) is retried with its idempotency key: stored once, and
//! acknowledged with the id it was stored under. The loss is made by a proxy between the
//! instance and a real `redis-server`, which cuts the connection instead of passing on the
//! first answer of the post script.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::helpers::{page_cursor, TestApp};
use crate::redis_server::RedisServer;

/// How the post script's answer starts: `{'ok', '<id>'}` in RESP.
const POST_ANSWER: &[u8] = b"*2\r\n$2\r\nok\r\n";

/// Passes every connection through to `upstream`; while `armed`, the first answer of the
/// post script is not passed on: both sides of that connection are closed instead.
async fn proxy(listener: UnixListener, upstream: PathBuf, armed: Arc<AtomicBool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let upstream = upstream.clone();
        let armed = armed.clone();
        tokio::spawn(async move {
            let Ok(server) = UnixStream::connect(&upstream).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let requests = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n) = server_read.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                let chunk = &buffer[..n];
                let is_post_answer = chunk.windows(POST_ANSWER.len()).any(|w| w == POST_ANSWER);
                if is_post_answer && armed.swap(false, Relaxed) {
                    // The write happened; its answer is lost with the connection.
                    break;
                }
                if client_write.write_all(chunk).await.is_err() {
                    break;
                }
            }
            requests.abort();
        });
    }
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("proxy.sock")
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_post_whose_answer_was_lost_is_stored_once_and_acknowledged() {
    let Some(redis) = RedisServer::start("a_post_whose_answer_was_lost").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(socket_in(dir.path())).unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let upstream = PathBuf::from(redis.url().trim_start_matches("redis+unix://"));
    tokio::spawn(proxy(listener, upstream, armed.clone()));
    let url = format!("redis+unix://{}", socket_in(dir.path()).display());
    let app = TestApp::spawn_with(move |s| {
        s.store.backend = chatdemo::config::Backend::Redis;
        s.store.redis_url = url;
        s.store.key_prefix = "lost".into();
    })
    .await;
    let user = app.login(None).await;
    let reader = app.login(None).await;
    let cursor = page_cursor(&reader.page().await);
    user.say_ok("before").await;

    armed.store(true, Relaxed);
    let said = user.say_ok("the lost answer").await;
    assert!(!armed.load(Relaxed), "the answer really was cut off");

    // Once in Redis, under the id the poster was given.
    let log: redis::streams::StreamRangeReply =
        redis.command(&["XRANGE", "lost:log", "-", "+"]).await;
    let bodies: Vec<String> = log
        .ids
        .iter()
        .map(|entry| entry.get::<String>("body").unwrap())
        .collect();
    assert_eq!(bodies, ["before", "the lost answer"]);
    assert!(
        said.id.ends_with(&log.ids[1].id),
        "{} vs {}",
        said.id,
        log.ids[1].id
    );
    // And once for a reader.
    let seen = tokio::time::timeout(Duration::from_secs(10), reader.follow_polls(cursor, 2))
        .await
        .expect("the reader gets both");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], said.id);
}
