//! A real `redis-server` for one test: its own temporary directory, a Unix socket (no port
//! races), append-only with every write synced (so a SIGKILL loses nothing acknowledged),
//! stopped by its PID. Without `redis-server` the tests that need it say they were skipped,
//! unless `REDIS_TESTS=required` (as in CI), where that is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh server, or `None` (after saying so) when `redis-server` is not installed.
    pub async fn start(test: &str) -> Option<Self> {
        if !redis_server_installed(test) {
            return None;
        }
        let mut server = Self {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch().await;
        Some(server)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL instances use.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts the server on this directory's data (what a restart after a crash does).
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..200 {
            if self.client().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not come up");
    }

    /// A plain connection for the test's own commands.
    pub async fn client(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // Answers only once the data set is loaded.
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(conn)
    }

    /// Runs one command and returns its reply.
    pub async fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut conn = self.client().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }

    /// How many entries of the room `prefix`'s log carry `body`.
    pub async fn copies_in_log(&self, prefix: &str, body: &str) -> usize {
        let entries: redis::streams::StreamRangeReply = self
            .command(&["XRANGE", &format!("{prefix}:log"), "-", "+"])
            .await;
        entries
            .ids
            .iter()
            .filter(|entry| entry.get::<String>("body").as_deref() == Some(body))
            .count()
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: a stalled server that keeps every connection
    /// open and answers nothing, then carries on.
    pub fn pause(&self, stop: bool) {
        let child = self.child.as_ref().expect("running");
        let signal = if stop { "-STOP" } else { "-CONT" };
        let done = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(done.success(), "signal to redis-server");
    }

    /// SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `redis-server` is installed; if not, says that `test` was skipped (or fails,
/// with `REDIS_TESTS=required`).
pub fn redis_server_installed(test: &str) -> bool {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("REDIS_TESTS").as_deref() != Ok("required"),
        "REDIS_TESTS=required is set but redis-server is missing"
    );
    eprintln!("skipped {test}: redis-server is not installed (apt-get install redis-server)");
    false
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
