//! nginx from `deploy/nginx.conf` in front of two instances, for the tests that need the
//! balancer (the browser test and the fault test). Without nginx they say they were
//! skipped, unless `NGINX_TESTS=required` (as in CI).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`, or panics naming `what`.
pub async fn wait_listening(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// nginx from `deploy/nginx.conf`, its ports replaced, in a directory of its own; killed by
/// its PID when dropped.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    pub fn available() -> bool {
        let found = Command::new("nginx").arg("-v").output().is_ok();
        if !found {
            assert!(
                std::env::var("NGINX_TESTS").as_deref() != Ok("required"),
                "NGINX_TESTS=required is set but nginx is missing"
            );
            eprintln!("skipping the balancer test: install nginx to run it");
        }
        found
    }

    pub async fn start(upstreams: [u16; 2]) -> Self {
        let port = free_port();
        let shipped = include_str!("../../deploy/nginx.conf");
        let config = shipped
            .replace("127.0.0.1:8881", &format!("127.0.0.1:{}", upstreams[0]))
            .replace("127.0.0.1:8882", &format!("127.0.0.1:{}", upstreams[1]))
            .replace("listen 127.0.0.1:8080", &format!("listen 127.0.0.1:{port}"));
        assert_ne!(
            config, shipped,
            "the shipped config has the ports the test replaces"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("temp")).unwrap();
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        wait_listening(port, "nginx", Duration::from_secs(10)).await;
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The upstream port of every logged request to `path`.
    pub fn upstreams_of(&self, path: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter(|line| {
                line.contains(&format!(" {path} ")) || line.contains(&format!(" {path}?"))
            })
            .filter_map(|line| line.split("upstream=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}
